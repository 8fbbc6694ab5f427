"""Janus-Pro as the engine's :class:`~scalingar_core.models.protocol.ARModel`, and loading it from a folder."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..checkpoints import load_module
from ..device import resolve_device, resolve_dtype
from ..hf_session import check_transformers as hf_check_transformers
from ..protocol import SamplingDefaults
from ..vq16 import VQConfig, decode_chunk, decoder_activation_bytes
from . import configs, weights
from .prompt import PromptFormat
from .session import JanusSession

# The model card's image-generation settings (and transformers' default guidance_scale 5).
JANUS_DEFAULTS = SamplingDefaults(cfg_scale=5.0, top_k=0, top_p=1.0, temperature=1.0)
PROMPT_TOKENS = 64  # prompt length the memory table assumes (chat turn included)


def check_transformers() -> None:
    hf_check_transformers("Janus-Pro")


class JanusGenerator(nn.Module):
    """The modules text-to-image runs, taken from a meta-device ``JanusForConditionalGeneration`` under
    transformers' own names: the Llama decoder, the generation embedding -> aligner (image token in), the
    generation head (image logits out) and the VQ decoder side. Nothing else is ever materialised."""

    def __init__(self, config):
        super().__init__()
        from transformers import JanusForConditionalGeneration

        with torch.device("meta"):
            full = JanusForConditionalGeneration(config).model
        self.config = config
        self.language_model = full.language_model
        self.generation_embeddings = full.generation_embeddings
        self.generation_aligner = full.generation_aligner
        self.generation_head = full.generation_head
        self.vqmodel = full.vqmodel
        del self.vqmodel.encoder, self.vqmodel.quant_conv  # image -> codes only: unused here

    def image_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """Image codes -> decoder input embeddings (``prepare_embeddings_for_image_generation``)."""
        return self.generation_aligner(self.generation_embeddings(tokens))

    def materialise_buffers(self, device) -> None:
        """Rebuild the rotary tables (non-persistent buffers: not in any checkpoint, still on meta)."""
        rope = type(self.language_model.rotary_emb)
        with torch.device("cpu"):  # fp32 tables computed from the config, as transformers' own init does
            self.language_model.rotary_emb = rope(config=self.language_model.config).to(device)


@dataclass
class JanusCondition:
    """What ``encode`` returns: the prompt and its conditional / unconditional token rows ``[L]``."""

    prompt: str
    ids: torch.Tensor
    uncond_ids: torch.Tensor


class JanusProModel:
    """A loaded Janus-Pro: the generator (any dtype) and the prompt format; 576 tokens at 384 px."""

    def __init__(self, name: str, generator: JanusGenerator, prompts: PromptFormat,
                 defaults: SamplingDefaults = JANUS_DEFAULTS):
        self.name = name
        self.generator = generator.eval()
        self.prompts = prompts
        self.defaults = defaults
        self.vocab_size = generator.config.vq_config.num_embeddings
        side = configs.grid_side(generator.config)
        self.grid = (side, side)
        self.image_size = configs.image_size(generator.config)

    @property
    def device(self) -> torch.device:
        return self.generator.language_model.embed_tokens.weight.device

    def torch_modules(self) -> dict[str, nn.Module]:
        return {"janus": self.generator}

    def encode(self, prompt: str) -> JanusCondition:
        ids = self.prompts.ids(str(prompt))
        return JanusCondition(prompt=str(prompt), ids=ids, uncond_ids=self.prompts.unconditional(ids))

    def start(self, condition, n: int, guidance: bool = True) -> JanusSession:
        if isinstance(condition, str):
            condition = self.encode(condition)
        return JanusSession(self.generator, condition.ids, condition.uncond_ids, n, self.grid[0] * self.grid[1],
                            guidance=guidance)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``[n, h*w]`` codes -> ``[n, 3, H, W]`` in [0, 1] through the VQ decoder, a few images at a time."""
        codes = torch.as_tensor(codes, device=self.device).long()
        out = [self.generator.vqmodel.decode(part) for part in codes.split(decode_chunk(self.image_size))]
        return ((torch.cat(out).float() + 1) / 2).clamp(0, 1)

    def memory_estimate(self, n: int) -> int:
        """Peak device bytes for ``n`` trajectories (see :func:`estimate_memory`)."""
        params = list(self.generator.parameters())
        counts = {"weights": sum(p.numel() for p in params)}  # what is loaded, not a rebuilt count
        return estimate_memory(self.generator.config, n, params[0].element_size(), params=counts)["total"]


# ---------------------------------------------------------------------------------------------------------
# Memory


def kv_cache_bytes(config, rows: int, positions: int, dtype_bytes: int = 2) -> int:
    t = config.text_config
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    return 2 * t.num_hidden_layers * rows * t.num_key_value_heads * head_dim * positions * dtype_bytes


def estimate_memory(config, n: int, dtype_bytes: int = 2, prompt_tokens: int = PROMPT_TOKENS,
                    params: dict[str, int] | None = None) -> dict[str, int]:
    """Device bytes of text-to-image with ``n`` trajectories (``2n`` CFG rows), by part.

    Weights: the decoder, generation embedding/aligner/head and VQ decoder (``params``, default counted on a
    meta-device generator of ``config``); the SigLIP tower, its aligner, the text head and the VQ encoder are
    never loaded. KV cache: ``2n`` rows x (prompt + image tokens). Activations: the two-row prefill, fp32
    logit copies in the sampler, and the VQ decoding of one chunk of images."""
    if params is None:
        gen = JanusGenerator(config)
        params = {"weights": sum(p.numel() for p in gen.parameters())}
    side = configs.grid_side(config)
    t = config.text_config
    size = configs.image_size(config)
    vq = config.vq_config
    positions = prompt_tokens + side * side
    parts = {
        "weights": sum(params.values()) * dtype_bytes,
        "kv_cache": kv_cache_bytes(config, 2 * n, positions, dtype_bytes),
        "activations": 2 * prompt_tokens * (4 * t.hidden_size + 2 * t.intermediate_size) * dtype_bytes
        + 4 * 2 * n * vq.num_embeddings * 4,
        "vq_decode": decoder_activation_bytes(VQConfig(ch=vq.base_channels, ch_mult=tuple(vq.channel_multiplier)),
                                              size, min(n, decode_chunk(size))) * dtype_bytes // 4,
    }
    parts["total"] = sum(parts.values())
    return parts


def preset_memory(size: str, n: int, dtype_bytes: int = 2) -> dict[str, int]:
    """Analytic peak bytes of Janus-Pro-``size`` for ``n`` trajectories (published config, meta device)."""
    counts = configs.part_params(size)
    used = {k: v for k, v in counts.items() if k != "not_loaded"}
    return estimate_memory(configs.janus_config(size), n, dtype_bytes, params=used)


# ---------------------------------------------------------------------------------------------------------
# Loading


def read_config(folder: Path) -> tuple[str, dict]:
    """(layout, parsed config.json) of a Janus folder."""
    data = json.loads((folder / "config.json").read_text())
    return weights.layout(data), data


def config_from_original(data: dict, prompts: PromptFormat):
    """A transformers ``JanusConfig`` from an original ``deepseek-ai`` config.json (the fields text-to-image
    needs; the VQ is the fixed VQ-16 architecture the original code builds for ``gen_vision_config``)."""
    from transformers import JanusConfig

    lang = data["language_config"]
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta")
    text = {k: lang[k] for k in keys if k in lang}
    text.update(model_type="llama", pad_token_id=prompts.pad_id, bos_token_id=prompts.bos_id)
    params = lambda name: data.get(name, {}).get("params", {})  # noqa: E731
    image_size = params("vision_config").get("image_size", configs.IMAGE_SIZE)
    aligner, head, gen_vq = params("gen_aligner_config"), params("gen_head_config"), params("gen_vision_config")
    vq = dict(embed_dim=gen_vq.get("n_embed", 8), num_embeddings=gen_vq.get("image_token_size", configs.CODEBOOK),
              projection_dim=aligner.get("n_embed", text["hidden_size"]), num_hidden_layers=aligner.get("depth", 2),
              image_token_embed_dim=head.get("image_token_embed", text["hidden_size"]))
    vision = dict(image_size=image_size, patch_size=configs.PATCH, projection_dim=text["hidden_size"],
                  num_image_tokens=(image_size // configs.PATCH) ** 2)
    image_token = prompts.tokenizer.get_vocab().get("<image_placeholder>", configs.IMAGE_TOKEN_ID)
    return JanusConfig(text_config=text, vision_config=vision, vq_config=vq, image_token_id=image_token)


def load_folder(folder: str | Path, name: str, device=None, dtype=None, hint: str | None = None,
                defaults: SamplingDefaults = JANUS_DEFAULTS) -> JanusProModel:
    """Load a complete Janus-Pro folder of either layout (see :mod:`.weights`). ``hint`` says how to get
    the files again (for errors about corrupt files)."""
    from transformers import JanusConfig

    check_transformers()
    folder = Path(folder)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    kind, data = read_config(folder)
    prompts = PromptFormat.from_folder(folder, kind)
    config = JanusConfig.from_pretrained(str(folder)) if kind == "transformers" else config_from_original(data, prompts)
    sd = weights.read_weights(folder, kind, hint or f"fetch {folder} again")
    generator = JanusGenerator(config)
    t = config.text_config
    expected = (f"a Janus-Pro {kind}-layout checkpoint as its config.json describes ({t.num_hidden_layers} layers, "
                f"width {t.hidden_size}, {config.vq_config.num_embeddings} image codes)")
    load_module(generator, sd, expected, str(folder), device=device, dtype=dtype)
    generator.materialise_buffers(device)
    return JanusProModel(name, generator, prompts, defaults)
