"""SimpleAR as the engine's :class:`~scalingar_core.models.protocol.ARModel`, loading it, and its memory."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..cosmos.decoder import DV8x16x16, CosmosConfig, CosmosDecoder, activation_bytes, decode_chunk, load_decoder
from ..device import resolve_device, resolve_dtype
from ..hf_session import check_transformers
from ..protocol import SamplingDefaults
from .prompt import SimpleARPrompt
from .session import SimpleARSession

# SimpleAR's evaluation scripts: CFG 6.0 (4.0 is only an argparse default), temperature 1, top-k 64,000 (all
# codes), top-p 1.
DEFAULTS = SamplingDefaults(cfg_scale=6.0, top_k=0, top_p=1.0, temperature=1.0)
IMAGE_SIZES = (256, 512, 768, 1024)
PIXELS_PER_TOKEN = 16
PROMPT_TOKENS = 48  # a prompt row's length the memory table assumes (frame included)
DECODER_CONFIG = DV8x16x16  # the image tokenizer of every released SimpleAR (tests swap in a tiny one)


def grid_side(image_size: int) -> int:
    """Tokens per side for ``image_size`` px (a multiple of 16; SimpleAR was trained at 256..1024)."""
    if int(image_size) <= 0 or int(image_size) % PIXELS_PER_TOKEN:
        raise ValueError(f"image size {image_size} px is not a positive multiple of {PIXELS_PER_TOKEN} px "
                         f"(SimpleAR writes one token per 16x16 px): use one of {', '.join(map(str, IMAGE_SIZES))}")
    return int(image_size) // PIXELS_PER_TOKEN


@dataclass
class SimpleARCondition:
    prompt: str
    ids: torch.Tensor
    uncond_ids: torch.Tensor


class SimpleARModel:
    """A loaded SimpleAR: transformers' ``Qwen2ForCausalLM``, its tokenizer and the Cosmos decoder."""

    def __init__(self, name: str, lm, prompts: SimpleARPrompt, decoder: CosmosDecoder, image_size: int = 1024,
                 defaults: SamplingDefaults = DEFAULTS):
        side = grid_side(image_size)
        self.name, self.lm, self.prompts, self.decoder = name, lm.eval(), prompts, decoder
        self.vocab_size = decoder.config.codebook_size
        vocab = lm.config.vocab_size
        if vocab < prompts.offset + self.vocab_size:
            raise ValueError(f"{name}: the language model has {vocab} token ids but its tokenizer ({prompts.offset}) "
                             f"plus {self.vocab_size} image codes need {prompts.offset + self.vocab_size}: the "
                             f"tokenizer and the weights come from different checkpoints")
        self.grid = (side, side)
        self.image_size = int(image_size)
        self.defaults = defaults

    @property
    def device(self) -> torch.device:
        return self.lm.get_input_embeddings().weight.device

    def torch_modules(self) -> dict:
        return {"simplear": self.lm, "cosmos": self.decoder}

    def encode(self, prompt: str) -> SimpleARCondition:
        return SimpleARCondition(str(prompt), self.prompts.ids(prompt), self.prompts.unconditional())

    def start(self, condition, n: int, guidance: bool = True) -> SimpleARSession:
        if isinstance(condition, str):
            condition = self.encode(condition)
        return SimpleARSession(self.lm, condition.ids, condition.uncond_ids, n, self.grid[0] * self.grid[1],
                               self.prompts.offset, self.vocab_size, guidance=guidance)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder.decode_codes(codes, self.grid)

    def memory_estimate(self, n: int) -> int:
        """Peak device bytes for ``n`` trajectories (see :func:`estimate_memory`), from the loaded weights."""
        params = list(self.lm.parameters())
        return estimate_memory(self.lm.config, n, self.image_size, params[0].element_size(),
                               params=sum(p.numel() for p in params))["total"]


# ---------------------------------------------------------------------------------------------------------
# Loading

LM_FILES = ("config.json", "tokenizer_config.json")


def lm_missing_files(folder: Path) -> list[str]:
    """Files of a SimpleAR language-model folder that are absent (the weight index decides the shards)."""
    missing = [f for f in LM_FILES if not (folder / f).is_file()]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing += [s for s in shards if not (folder / s).is_file()]
    elif not (folder / "model.safetensors").is_file():
        missing.append("model.safetensors (or model.safetensors.index.json and its shards)")
    return missing


def load_folder(folder: str | Path, decoder_path: str | Path, name: str, image_size: int = 1024, device=None,
                dtype=None, decoder_config: CosmosConfig | None = None,
                defaults: SamplingDefaults = DEFAULTS, hint: str = "fetch the model folder again") -> SimpleARModel:
    """A SimpleAR model from its Hugging Face folder (safetensors only) and a Cosmos ``decoder.jit``
    (``decoder_config``: default :data:`DECODER_CONFIG`; ``hint``: how to get missing files)."""
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    check_transformers("SimpleAR")
    folder, decoder_path = Path(folder), Path(decoder_path)
    grid_side(image_size)  # a bad size is refused before anything is read
    missing = lm_missing_files(folder)
    if missing:
        raise FileNotFoundError(f"{name}: {', '.join(missing)} missing in {folder}; {hint}")
    if not decoder_path.is_file():
        raise FileNotFoundError(f"{name}: the Cosmos decoder {decoder_path} is missing; fetch decoder.jit of "
                                f"nvidia/Cosmos-1.0-Tokenizer-DV8x16x16 into that folder")
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    prompts = SimpleARPrompt(AutoTokenizer.from_pretrained(str(folder)), folder / "tokenizer_config.json")
    lm = Qwen2ForCausalLM.from_pretrained(str(folder), dtype=dtype, use_safetensors=True).to(device)
    decoder = load_decoder(decoder_path, decoder_config or DECODER_CONFIG, device=device, dtype=dtype)
    return SimpleARModel(name, lm, prompts, decoder, image_size, defaults)


# ---------------------------------------------------------------------------------------------------------
# Memory


# The published Qwen2.5 instruct architectures SimpleAR starts from; the vocabulary is Qwen2.5's tokenizer
# (151,665) + SimpleAR's 7 special tokens + 64,000 codes (train.py resizes the embeddings to exactly that; the
# released config.json was not readable here: unverified).
VOCAB = 151_665 + 7 + 64_000
PUBLISHED = {
    "0.5B": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, tie_word_embeddings=True),
    "1.5B": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, tie_word_embeddings=True),
}


def published_config(size: str):
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=VOCAB, **PUBLISHED[size])


def preset_memory(size: str, n: int, image_size: int, dtype_bytes: int = 2) -> dict[str, int]:
    """Analytic peak bytes of SimpleAR-``size`` for ``n`` trajectories at ``image_size`` px (meta device)."""
    return estimate_memory(published_config(size), n, image_size, dtype_bytes)


def estimate_memory(config, n: int, image_size: int, dtype_bytes: int = 2, prompt_tokens: int = PROMPT_TOKENS,
                    params: int | None = None) -> dict[str, int]:
    """Device bytes of SimpleAR text-to-image with ``n`` trajectories (``2n`` CFG rows) at ``image_size``.

    Weights: the Qwen2 model (``params``, default counted on the meta device) and the Cosmos decoder. KV cache:
    ``2n`` rows x (prompt + image tokens). Activations: the full-vocabulary logits of every row in fp32 (the
    log-softmax needs them) and the decoding of one chunk of images."""
    if params is None:
        from transformers import Qwen2ForCausalLM

        with torch.device("meta"):
            params = sum(p.numel() for p in Qwen2ForCausalLM(config).parameters())
    from ..cosmos.decoder import weight_bytes

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    positions = prompt_tokens + grid_side(image_size) ** 2
    rows = 2 * n
    parts = {
        "weights": params * dtype_bytes + weight_bytes(DV8x16x16, dtype_bytes),
        "kv_cache": 2 * config.num_hidden_layers * rows * config.num_key_value_heads * head_dim * positions
        * dtype_bytes,
        "activations": 2 * prompt_tokens * (4 * config.hidden_size + 2 * config.intermediate_size) * dtype_bytes
        + 3 * rows * config.vocab_size * 4,
        "decode": activation_bytes(DV8x16x16, image_size, min(n, decode_chunk(DV8x16x16, image_size, dtype_bytes)),
                                   dtype_bytes),
    }
    parts["total"] = sum(parts.values())
    return parts
