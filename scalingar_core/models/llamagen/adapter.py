"""LlamaGen / AR-GRPO as the engine's :class:`~scalingar_core.models.protocol.ARModel`, and loading a preset."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from ...errors import echo
from ..checkpoints import CheckpointError, load_module, read_state_dicts
from ..device import resolve_device, resolve_dtype
from ..download import (
    ModelFileError,
    Progress,
    ensure_file,
    ensure_snapshot,
    fetch_command,
    local_copy,
    repo_folder,
)
from ..gpt import GPT, GPTConfig, kv_cache_bytes, param_count
from ..gpt_session import GPTSession
from ..protocol import SamplingDefaults
from ..vq16 import VQConfig, VQModel, decode_chunk, decoder_activation_bytes
from .presets import Preset
from .text_encoder import T5TextEncoder, clean_prompt, t5_xl_encoder_params


@dataclass
class LlamaGenCondition:
    """What ``encode`` returns: T5 features laid out on the model's padding side, or a class label."""

    prompt: str
    features: torch.Tensor | None = None  # [1, L, caption_dim]
    mask: torch.Tensor | None = None  # [1, L] bool
    label: int | None = None


@functools.lru_cache(maxsize=None)
def vq_param_count(cfg: VQConfig) -> int:
    with torch.device("meta"):  # shapes only, no memory
        return sum(t.numel() for t in VQModel(cfg).state_dict().values())


def estimate_memory(gpt: GPTConfig, n: int, dtype_bytes: int = 2, vq: VQConfig = VQConfig(),
                    image_size: int | None = None, text_encoder_bytes: int = 0,
                    text_encoder_resident: bool = True) -> dict[str, int]:
    """Device bytes for ``n`` trajectories (``2n`` CFG rows), by part.

    ``total`` is the peak: while decoding, weights + KV cache + activations + VQ (+ T5 if it stays on the
    device); while encoding a prompt, weights + VQ + T5. An offloaded T5 only counts in the second."""
    image_size = image_size or gpt.grid * vq.downsample
    rows = 2 * n
    parts = {
        "gpt_weights": param_count(gpt, with_buffers=True) * dtype_bytes,
        "kv_cache": kv_cache_bytes(gpt, rows, dtype_bytes),
        # prefill hidden states and FFN intermediates, plus a few fp32 logit copies in the sampler
        "activations": rows * gpt.cls_token_num * (4 * gpt.dim + 2 * gpt.ffn_hidden) * dtype_bytes
        + 4 * rows * gpt.vocab_size * 4,
        "vq_weights": vq_param_count(vq) * 4,
        "vq_decode": decoder_activation_bytes(vq, image_size, min(n, decode_chunk(image_size))),
        "text_encoder": text_encoder_bytes,
    }
    resident = parts["gpt_weights"] + parts["vq_weights"]
    decoding = resident + parts["kv_cache"] + parts["activations"] + parts["vq_decode"]
    parts["total"] = max(decoding + (text_encoder_bytes if text_encoder_resident else 0),
                         resident + text_encoder_bytes)
    return parts


class LlamaGenModel:
    """A loaded LlamaGen-family model: GPT (any dtype), VQ (fp32) and, for t2i, the T5 encoder."""

    def __init__(self, name: str, gpt: GPT, vq: VQModel, text_encoder: T5TextEncoder | None = None,
                 defaults: SamplingDefaults = SamplingDefaults(), padding_side: str = "left"):
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if gpt.config.vocab_size != vq.config.codebook_size:
            raise ValueError(f"GPT vocabulary {gpt.config.vocab_size} != VQ codebook {vq.config.codebook_size}")
        self.name = name
        self.gpt = gpt.eval()
        self.vq = vq.eval()
        self.text_encoder = text_encoder
        self.defaults = defaults
        self.padding_side = padding_side
        self.vocab_size = gpt.config.vocab_size
        self.grid = (gpt.config.grid, gpt.config.grid)
        self.compile_decode = False  # opt-in: torch.compile the static-shape decode step (see .compile)

    @property
    def device(self) -> torch.device:
        return self.gpt.tok_embeddings.weight.device

    def torch_modules(self) -> dict[str, torch.nn.Module]:
        """Every torch module this model uses (for frameworks that move weights between devices)."""
        mods = {"gpt": self.gpt, "vq": self.vq}
        if self.text_encoder is not None:
            mods["text_encoder"] = self.text_encoder.model
        return mods

    @property
    def model_type(self) -> str:
        return self.gpt.config.model_type

    def encode(self, prompt: str) -> LlamaGenCondition:
        cfg = self.gpt.config
        if cfg.model_type == "c2i":
            text = str(prompt).strip()
            if not text.isdigit() or not 0 <= int(text) < cfg.num_classes:
                raise ValueError(f"{self.name} is a class-to-image model: the prompt must be an ImageNet class id "
                                 f"0..{cfg.num_classes - 1} (e.g. '207' for golden retriever), got {echo(prompt)}")
            return LlamaGenCondition(prompt=text, label=int(text))
        if self.text_encoder is None:
            raise RuntimeError(f"{self.name} was loaded without its T5 text encoder, so it cannot encode prompts")
        if self.text_encoder.clean and not clean_prompt(str(prompt)):
            raise ValueError(f"the prompt {echo(prompt)} is empty after LlamaGen's caption cleaning (which drops "
                             f"URLs, HTML, @handles, CJK characters, file names and long numbers), so {self.name} "
                             f"would draw an unconditional image: describe the image in English words")
        feats, mask = self.text_encoder.encode([str(prompt)], padding_side=self.padding_side)
        return LlamaGenCondition(prompt=str(prompt), features=feats.to(self.device), mask=mask.to(self.device))

    def start(self, condition, n: int, guidance: bool = True) -> GPTSession:
        if isinstance(condition, str):
            condition = self.encode(condition)
        options = dict(guidance=guidance, compiled=self.compile_decode, inputs=self._inputs)
        if self.model_type == "c2i":
            return GPTSession(self.gpt, torch.tensor([condition.label]), n, **options)
        return GPTSession(self.gpt, condition.features.to(self.device), n, cond_mask=condition.mask.to(self.device),
                          **options)

    def _inputs(self, condition: LlamaGenCondition):
        """What a session admitting ``condition`` feeds the GPT: a class label, or T5 features with their mask."""
        if self.model_type == "c2i":
            return torch.tensor([condition.label]), None
        return condition.features.to(self.device), condition.mask.to(self.device)

    def release_decode_memory(self) -> None:
        """Free what compiled decoding keeps on the device between runs (its static KV cache)."""
        from ..compile import release_caches

        release_caches(self.gpt)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.vq.decode_codes(codes, self.grid)

    def memory_estimate(self, n: int, text_encoder: bool = True) -> int:
        """Peak device bytes for ``n`` trajectories: weights + KV cache (2n rows) + VQ + T5 (see
        :func:`estimate_memory`). ``text_encoder=False`` leaves T5 out (a host that manages it apart)."""
        te = self.text_encoder if text_encoder else None
        t5 = te.parameter_bytes() if te is not None else 0
        dtype_bytes = self.gpt.tok_embeddings.weight.element_size()
        return estimate_memory(self.gpt.config, n, dtype_bytes, self.vq.config, text_encoder_bytes=t5,
                               text_encoder_resident=te is not None and not te.offload)["total"]


# ---------------------------------------------------------------------------------------------------------
# Loading


def _local_or_fetch(repo_id: str, filename: str, models_dir, download: bool, progress) -> Path:
    """The file on disk (see ``local_copy``), else fetched when ``download``, else a clear error."""
    return local_copy(repo_id, filename, models_dir) or ensure_file(repo_id, filename, models_dir, download, progress)


def load_preset(p: Preset, models_dir=None, device=None, dtype=None, download: bool = False,
                progress: Progress | None = None, offload_text_encoder: bool | None = None,
                gpt_path: str | Path | None = None) -> LlamaGenModel:
    """Load preset ``p`` from ``models_dir`` (downloading missing files only when ``download``).

    ``gpt_path`` names the GPT file directly (a local checkpoint) instead of looking it up.

    ``offload_text_encoder`` (default: on for accelerators) parks T5 on the CPU between prompts, so its
    2.4 GB never sit next to the KV cache."""
    device = resolve_device(device)
    if offload_text_encoder is None:
        offload_text_encoder = device.type != "cpu"
    dtype = resolve_dtype(dtype, device)
    problems: list[str] = []
    t5_folder = None
    if gpt_path is not None:
        gpt_path = Path(gpt_path)
    else:
        try:
            gpt_path = _local_or_fetch(p.repo_id, p.filename, models_dir, download, progress)
        except ModelFileError as exc:
            problems.append(str(exc))
    if p.text_encoder_repo:
        try:
            t5_folder = ensure_snapshot(p.text_encoder_repo, models_dir, p.text_encoder_patterns, ("config.json",),
                                        download, progress)
        except ModelFileError as exc:
            problems.append(str(exc))
    try:
        vq_path = _local_or_fetch(p.vq_repo_id, p.vq_filename, models_dir, download, progress)
    except ModelFileError as exc:
        problems.append(str(exc))
    if problems:
        raise ModelFileError(f"{p.name} cannot be loaded:\n- " + "\n- ".join(problems))

    hint = f"fetch it again with `{fetch_command(p.repo_id, p.filename, repo_folder(models_dir, p.repo_id))}`"
    parts = read_state_dicts(gpt_path, default="gpt", hint=hint)
    if parts["vq"]:
        raise CheckpointError(f"{gpt_path} also holds a VQ (vq_model.* keys), as AR-GRPO's checkpoints do: keep "
                              f"it in a folder with its config.json and load that folder or its preset "
                              f"(docs/models_ar_grpo.md)")
    vq_hint = f"fetch it again with `{fetch_command(p.vq_repo_id, p.vq_filename, vq_path.parent)}`"
    vq_sd, vq_source = read_state_dicts(vq_path, default="vq", hint=vq_hint)["vq"], str(vq_path)

    expected = f"preset {p.name} (GPT-{p.gpt.dim}d x {p.gpt.n_layer} layers, {p.gpt.model_type}, vocab " \
               f"{p.gpt.vocab_size})"
    with torch.device("meta"):
        gpt = GPT(p.gpt, init=False)
        vq = VQModel(p.vq)
    load_module(gpt, parts["gpt"], expected, str(gpt_path), device=device, dtype=dtype)
    load_module(vq, vq_sd, f"the VQ-16 tokenizer of preset {p.name}", vq_source, device=device,
                dtype=torch.float32, optional=("quantize.codebook_used",))
    del parts, vq_sd

    text_encoder = None
    if t5_folder is not None:
        text_encoder = load_text_encoder(t5_folder, p.name, p.gpt.caption_dim, p.gpt.cls_token_num, device, dtype,
                                         offload_text_encoder)  # 120 tokens for every release
    return LlamaGenModel(p.name, gpt, vq, text_encoder, p.defaults, p.padding_side)


def load_text_encoder(folder: Path, name: str, width: int, max_length: int, device: torch.device,
                      dtype: torch.dtype, offload: bool) -> T5TextEncoder:
    """The T5 encoder in ``folder`` for model ``name``, whose GPT reads ``width``-wide caption features."""
    # T5 in bf16 (fp16 overflows in T5); fp32 when the GPT runs in fp32
    t5_dtype = torch.float32 if dtype == torch.float32 else torch.bfloat16
    text_encoder = T5TextEncoder.from_pretrained(folder, device=device, dtype=t5_dtype, offload=offload,
                                                 max_length=max_length)
    if text_encoder.hidden_size != width:
        raise ValueError(f"text encoder in {folder} has width {text_encoder.hidden_size}, but {name} "
                         f"expects {width} (FLAN-T5-XL)")
    return text_encoder


def preset_memory(p: Preset, n: int, dtype_bytes: int = 2, offload_text_encoder: bool = True) -> dict[str, int]:
    """Analytic peak bytes of preset ``p`` for ``n`` trajectories (T5-XL encoder in bf16)."""
    t5 = t5_xl_encoder_params() * 2 if p.text_encoder_repo else 0
    return estimate_memory(p.gpt, n, dtype_bytes, p.vq, p.image_size, t5, not offload_text_encoder)
