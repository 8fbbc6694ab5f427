"""FLAN-T5 caption features for LlamaGen text-to-image (``docs/models.md``).

T5 runs encoder-only through ``transformers``; prompts are cleaned as upstream cleans them (``captions``),
tokenized to exactly 120 slots
(``</s>`` counts as a valid token) and laid out on the GPT's padding side:

* ``left`` (LlamaGen): valid vectors rotated to the end, padding slots zeroed, mask ``[0..0, 1..1]``;
* ``right`` (AR-GRPO): T5's raw right-padded output, padding slots left as computed, mask ``[1..1, 0..0]``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from .captions import clean_prompt

MAX_LENGTH = 120


def to_left_padding(features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``features [B, L, D]`` / ``mask [B, L]`` -> valid vectors at the end, pads zeroed."""
    mask = mask.bool()
    L = mask.shape[1]
    valid = mask.sum(1)
    # row b: new slot j takes old slot (j + valid_b) mod L, so old 0..n-1 land on L-n..L-1
    src = (torch.arange(L, device=mask.device)[None] + valid[:, None]) % L
    out = torch.gather(features, 1, src[..., None].expand(-1, -1, features.shape[-1]))
    new_mask = torch.arange(L, device=mask.device)[None] >= (L - valid)[:, None]
    return out * new_mask[..., None].to(out.dtype), new_mask


class T5TextEncoder:
    """Encoder-only T5 + tokenizer. ``offload=True`` moves the weights to the CPU after every encode."""

    def __init__(self, model, tokenizer, device=None, max_length: int = MAX_LENGTH, offload: bool = False,
                 clean: bool = True):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.compute_device = torch.device(device) if device is not None else next(model.parameters()).device
        self.max_length = max_length
        self.offload = offload
        self.clean = clean
        self.model.to("cpu" if offload else self.compute_device)

    @property
    def device(self) -> torch.device:
        """Where encoding runs: the weights' device, unless offloading (then the compute device). Someone else
        (ComfyUI's model management) may move ``model``; encoding follows it."""
        return self.compute_device if self.offload else next(self.model.parameters()).device

    @classmethod
    def from_pretrained(cls, folder: str | Path, device=None, dtype=torch.bfloat16, **kwargs) -> "T5TextEncoder":
        """Load a local folder holding a T5 ``config.json``, weights and tokenizer files."""
        from transformers import AutoTokenizer, T5EncoderModel

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"no T5 text encoder in {folder} (config.json missing). Put the google/flan-t5-xl files there, "
                f"e.g. `huggingface-cli download google/flan-t5-xl --local-dir {folder}`, or load with download=True")
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = T5EncoderModel.from_pretrained(str(folder), **_dtype_kwarg(T5EncoderModel.from_pretrained, dtype))
        return cls(model, tokenizer, device=device, **kwargs)

    @property
    def hidden_size(self) -> int:
        return self.model.config.d_model

    def parameter_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.clean:
            prompts = [clean_prompt(p) for p in prompts]
        for p in prompts:
            count = len(self.tokenizer(p, add_special_tokens=True)["input_ids"])
            if count > self.max_length:
                warnings.warn(f"prompt is {count} T5 tokens; the last {count - self.max_length} were dropped "
                              f"(the model reads at most {self.max_length}): {p[:60]!r}...", stacklevel=3)
        enc = self.tokenizer(prompts, max_length=self.max_length, padding="max_length", truncation=True,
                             add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    @torch.no_grad()
    def encode(self, prompts: str | list[str], padding_side: str = "left") -> tuple[torch.Tensor, torch.Tensor]:
        """``prompts`` -> ``(features [B, max_length, d_model], mask [B, max_length] bool)`` on ``device``."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if isinstance(prompts, str):
            prompts = [prompts]
        ids, mask = self.tokenize(list(prompts))
        device = self.device
        ids, mask = ids.to(device), mask.to(device)
        if self.offload:
            self.model.to(device)
        try:
            feats = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        finally:
            if self.offload:
                self.model.to("cpu")
        if padding_side == "left":
            return to_left_padding(feats, mask)
        return feats, mask.bool()


def t5_xl_encoder_params() -> int:
    """Parameters of FLAN-T5-XL's encoder (shared embedding + 24 layers), for memory estimates."""
    d, ff, layers, vocab, heads, d_kv = 2048, 5120, 24, 32128, 32, 64
    attn = 4 * d * heads * d_kv
    block = attn + 3 * d * ff + 2 * d  # gated-GELU FFN (wi_0, wi_1, wo) + 2 layer norms
    return vocab * d + layers * block + heads * 32 + d  # + relative attention bias + final norm


def _dtype_kwarg(from_pretrained, dtype) -> dict:
    """transformers 4.56 renamed ``torch_dtype`` to ``dtype``; older releases (still common in ComfyUI
    installs) pass an unknown ``dtype`` on to the model constructor and fail."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}
