"""Opt-in ``torch.compile`` of the LlamaGen decode step (``GPT.decode_step`` with ``kv_len=None``).

The step has static shapes: the cache slot and the RoPE row are device tensors and attention covers the
whole static cache through a mask row, so one graph serves every step of a batch size. Pruning shrinks the
batch, and each batch size met gets its own graph (at most N per run, reused by later runs of the same
model). On CUDA the graphs are CUDA graphs (``mode="reduce-overhead"``): a 36-layer step is thousands of
small kernels, launch-bound in eager mode. CUDA graphs need fixed addresses, so the KV cache storage
belongs to the model, not to a session: every compiled session of a model reuses it, and only the newest
may step.
"""
from __future__ import annotations

import torch

from .gpt import GPT, KVCache

# Dynamo keeps at most this many graphs per function before it falls back to eager; one per batch size
# (up to N = 64 trajectories, each with its CFG twin) must fit. torch's default is 8.
RECOMPILE_LIMIT = 64


def compile_mode(device: torch.device) -> str | None:
    return "reduce-overhead" if device.type == "cuda" else None


class CompiledDecoder:
    """The compiled step of one GPT and the static cache storage its compiled sessions share."""

    def __init__(self, model: GPT, backend: str = "inductor"):
        self.model = model
        device = model.tok_embeddings.weight.device
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        mode = compile_mode(device) if backend == "inductor" else None  # tests trace with a cheap backend
        self.compiled = torch.compile(model.decode_step, fullgraph=True, dynamic=False, backend=backend, mode=mode)
        self.caches: list[KVCache] | None = None
        self.owner = None

    def claim(self, session, rows: int) -> list[KVCache]:
        """The shared caches, now owned by ``session`` (re-allocated if the model moved or changed dtype)."""
        w = self.model.tok_embeddings.weight
        if self.caches is None or self.caches[0].k.device != w.device or self.caches[0].k.dtype != w.dtype:
            self.caches = self.model.new_caches(rows)
        else:  # the mask hides unwritten slots, but 0 x NaN is NaN: leave nothing from the last run behind
            for cache in self.caches:
                cache.clear()
        self.owner = session
        return self.caches

    @staticmethod
    def mark_static(caches: list[KVCache]) -> None:
        """Tell CUDA graphs the cache views keep their addresses (no copy into the graph's own buffers)."""
        for cache in caches:
            torch._dynamo.mark_static_address(cache.k)
            torch._dynamo.mark_static_address(cache.v)

    def step(self, session, tokens, rope_pos, slot, caches, rope) -> torch.Tensor:
        if self.owner is not session:
            raise RuntimeError("a newer compiled session of this model took over its KV cache: compiled "
                               "decoding runs one session per model at a time")
        if tokens.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are no longer read
            return self.compiled(tokens, rope_pos, slot, caches, rope).clone()
        return self.compiled(tokens, rope_pos, slot, caches, rope)


def release_caches(model: GPT) -> None:
    """Free the static KV cache a compiled model keeps between runs (a host that shares the device with
    other models, like ComfyUI, calls this after each image; the next run re-records its CUDA graphs)."""
    decoder = model.__dict__.get("_compiled_decoder")
    if decoder is not None:
        decoder.caches, decoder.owner = None, None


def decoder_for(model: GPT) -> CompiledDecoder:
    """The model's compiled decoder, created on first use (compilation itself happens at the first step)."""
    decoder = model.__dict__.get("_compiled_decoder")
    if decoder is None:
        decoder = CompiledDecoder(model)
        model.__dict__["_compiled_decoder"] = decoder  # a plain attribute: not a submodule, not state
    return decoder
