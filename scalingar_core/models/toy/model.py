"""``toy-shapes-256`` and ``toy-shapes``: tiny text-to-image LlamaGen GPTs over the toy worlds, behind the
engine's model protocol.

Each is our LlamaGen GPT (``scalingar_core.models.gpt``) with a tiny t2i preset, conditioned through the
same caption-prefix path (caption features → ``cls_embedding.cap_proj`` → 8 prefix positions), a learned
null caption for classifier-free guidance, a raster-order token grid and the lossless patch codebook of
``tokenizer.py`` as its image tokenizer:

* ``toy-shapes-256`` (the default): 64×64 px, a 16×16 = 256-token grid, AR-GRPO-256's length, so the
  paper's step-based settings (W_0 = 32, Δ_rec = 32) sit in the regime the paper ran;
* ``toy-shapes``: 32×32 px, an 8×8 = 64-token grid; small and fast, kept for unit tests.

``scripts/train_toy.py --world NAME`` trains either; the weights ship in ``weights/NAME.safetensors``
(config, world, caption vocabulary and codebook checksum in its metadata) with a card ``weights/NAME.md``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..gpt import GPT, GPTConfig
from ..gpt_session import GPTSession
from ..protocol import ModelInfo, SamplingDefaults
from . import prompts as toy_prompts
from . import tokenizer
from .render import LARGE, SMALL, WORLDS, World, world_with
from .text import CAPTION_LEN, VOCAB, CaptionEncoder, tokenize

NAME = SMALL.name  # the 64-token model (historical name of this module's defaults)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# Each model's own sampling defaults, measured on its weights (see its card in weights/).
# toy-shapes, CFG 1.0: first-sample accuracy 0.62; 1.5 → 0.70, 2.5 → 0.55, so strong guidance hurts it (as
# the feasibility notes found); 2.5 is a stress setting.
MODEL_DEFAULTS = {
    SMALL.name: SamplingDefaults(cfg_scale=1.0, top_k=0, top_p=1.0, temperature=1.0),
    LARGE.name: SamplingDefaults(cfg_scale=1.0, top_k=0, top_p=1.0, temperature=1.0),
}
DEFAULTS = MODEL_DEFAULTS[SMALL.name]


def weights_file(world: World = SMALL) -> Path:
    return WEIGHTS_DIR / f"{world.name}.safetensors"


def train_command(world: World = SMALL) -> str:
    return f"nice -n 5 .venv/bin/python scripts/train_toy.py --world {world.name}"


WEIGHTS_FILE = weights_file(SMALL)
TRAIN_COMMAND = train_command(SMALL)


def default_config(world: World = SMALL) -> dict:
    """The tiny t2i preset of a world: GPT shape plus caption-encoder width."""
    caption_width = 64
    return {
        "gpt": {"dim": 192, "n_layer": 4, "n_head": 4, "vocab_size": tokenizer.vocab_size(world),
                "block_size": world.tokens, "cls_token_num": CAPTION_LEN, "caption_dim": caption_width,
                "null_caption_len": CAPTION_LEN, "model_type": "t2i"},
        "caption": {"width": caption_width, "heads": 2},
    }


def codebook_sha256(world: World = SMALL) -> str:
    return hashlib.sha256(tokenizer.codebook(world).tobytes()).hexdigest()


class ToyNet(torch.nn.Module):
    """Caption encoder + GPT: the trainable pair (``text.*`` and ``gpt.*`` in the weights file)."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        self.text = CaptionEncoder(config["caption"]["width"], config["caption"]["heads"])
        self.gpt = GPT(GPTConfig(**config["gpt"]))

    def caption_features(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text(ids)[0]

    def forward(self, ids: torch.Tensor, tokens: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[B, 64, V]``; rows with ``drop`` see the learned null caption."""
        feats = self.caption_features(ids)
        feats = torch.where(drop.view(-1, 1, 1), self.text.null[None].to(feats.dtype), feats)
        return self.gpt(feats, tokens)

    @torch.no_grad()
    def sync_null(self) -> None:
        """Copy the learned null caption into the GPT's ``uncond_embedding`` (what decoding sessions use)."""
        self.gpt.cls_embedding.uncond_embedding.copy_(self.text.null)


@dataclass
class ToyCondition:
    prompt: str
    ids: torch.Tensor  # [1, 8] word ids
    features: torch.Tensor  # [1, 8, caption_dim]
    spec: dict | None  # parsed prompt spec when the caption is in the toy grammar (for the checker)


class ToyShapesModel:
    """The engine's :class:`~scalingar_core.models.protocol.ARModel` for a toy world's model."""

    def __init__(self, net: ToyNet, world: World = SMALL):
        if net.gpt.config.block_size != world.tokens:
            raise ValueError(f"this network generates {net.gpt.config.block_size} tokens; the {world.name} world "
                             f"has {world.tokens}")
        self.net = net.eval()
        self.world = world
        self.name = world.name
        self.grid = (world.grid, world.grid)
        self.defaults = MODEL_DEFAULTS[world.name]
        self.vocab_size = net.gpt.config.vocab_size
        self.compile_decode = False  # opt-in: torch.compile the static-shape decode step

    @property
    def device(self) -> torch.device:
        return self.net.gpt.tok_embeddings.weight.device

    @torch.no_grad()
    def encode(self, prompt: str) -> ToyCondition:
        ids = tokenize(prompt).to(self.device)
        feats = self.net.caption_features(ids).to(self.net.gpt.tok_embeddings.weight.dtype)
        try:
            spec = toy_prompts.parse(prompt)
        except ValueError:
            spec = None  # words are known but not a caption form we can check; still generate
        return ToyCondition(prompt=prompt, ids=ids, features=feats, spec=spec)

    def start(self, condition: ToyCondition, n: int, guidance: bool = True) -> GPTSession:
        if not isinstance(condition, ToyCondition):
            raise TypeError(f"{self.name} needs a condition from its own encode(), got {type(condition).__name__}")
        return GPTSession(self.net.gpt, condition.features, n, guidance=guidance, compiled=self.compile_decode,
                          inputs=_inputs)

    def start_batch(self, conditions: list[ToyCondition], counts: list[int]) -> GPTSession:
        """One guided session for several runs (``engine.loop.generate_batch``): ``counts[i]`` trajectories of
        ``conditions[i]``, in order, in each half. Toy captions are never padded, so the rows share one mask."""
        for c in conditions:
            if not isinstance(c, ToyCondition):
                raise TypeError(f"{self.name} needs conditions from its own encode(), got {type(c).__name__}")
        rows = torch.cat([c.features.expand(k, -1, -1) for c, k in zip(conditions, counts)])
        return GPTSession(self.net.gpt, rows, rows.shape[0], compiled=self.compile_decode, inputs=_inputs)

    def release_decode_memory(self) -> None:
        """Free what compiled decoding keeps on the device between runs (its static KV cache)."""
        from ..compile import release_caches

        release_caches(self.net.gpt)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.dim() != 2 or codes.shape[1] != self.world.tokens:
            raise ValueError(f"{self.name} decodes [n, {self.world.tokens}] codes, got shape {tuple(codes.shape)}")
        return tokenizer.decode_torch(codes.cpu(), self.world).to(self.device)


def _inputs(condition: ToyCondition):
    """What a session admitting a toy condition feeds its GPT: caption features, never padded."""
    return condition.features, None


# ----------------------------------------------------------------------------- weights I/O

def world_of_net(net: ToyNet) -> World:
    return world_with("tokens", net.gpt.config.block_size)


def save_weights(net: ToyNet, path: str | Path = WEIGHTS_FILE, extra_meta: dict | None = None) -> Path:
    from safetensors.torch import save_file

    net.sync_null()
    world = world_of_net(net)
    state = {f"{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {"config": json.dumps(net.config), "vocab": json.dumps(list(VOCAB)), "world": world.name,
            "codebook_sha256": codebook_sha256(world), "format": "scalingar-toy-shapes/1"}
    meta.update({k: json.dumps(v) for k, v in (extra_meta or {}).items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)
    return path


def load_net(path: str | Path = WEIGHTS_FILE) -> ToyNet:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    world = WORLDS.get(path.name.removesuffix(".safetensors"), SMALL)
    retrain = train_command(world)
    if not path.is_file():
        raise FileNotFoundError(
            f"{world.name} weights not found at {path}. They ship with the repository; if they are missing, "
            f"train them on CPU with: {retrain}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "scalingar-toy-shapes/1" or "config" not in meta:
        raise ValueError(f"{path} is not a toy-shapes weights file (metadata 'format' missing or wrong); "
                         f"retrain with: {retrain}")
    world = WORLDS.get(meta.get("world", SMALL.name))  # files from before the 256-token world are 64-token
    if world is None:
        raise ValueError(f"{path} names an unknown toy world {meta.get('world')!r}: known {', '.join(WORLDS)}")
    if json.loads(meta.get("vocab", "[]")) != list(VOCAB):
        raise ValueError(f"{path} was trained with a different caption vocabulary; retrain with: {retrain}")
    if meta.get("codebook_sha256") != codebook_sha256(world):
        raise ValueError(f"{path} was trained with a different patch codebook (renderer changed); "
                         f"retrain with: {retrain}")
    net = ToyNet(json.loads(meta["config"]))
    state = load_file(str(path))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} does not match the toy-shapes network: missing keys {missing}, "
                         f"unexpected keys {unexpected}; retrain with: {retrain}")
    return net


def weights_metadata(path: str | Path = WEIGHTS_FILE) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) if k not in ("codebook_sha256", "format", "world") else v
                for k, v in (f.metadata() or {}).items()}


def loader(world: World):
    def load(models_dir=None, device=None, dtype=None, download=False, progress=None) -> ToyShapesModel:
        """Registry loader. The weights are bundled: ``models_dir`` and ``download`` are not used."""
        net = load_net(weights_file(world))
        if dtype is not None:
            net = net.to(dtype=dtype)
        return ToyShapesModel(net.to(device or "cpu"), world)
    return load


def register_models(register) -> None:
    from ..registry import ModelEntry

    for world, blurb in ((LARGE, "AR-GRPO-256's sequence length; the default"), (SMALL, "small and fast")):
        info = ModelInfo(
            name=world.name,
            description=f"Tiny bundled text-to-image LlamaGen GPT over {world.image_size}×{world.image_size} coloured "
                        f"shapes, {world.tokens} tokens ({blurb}; offline, CPU); captions like 'two red circles' "
                        "or 'a red circle left of a blue square'.",
            grid=(world.grid, world.grid),
            vocab_size=tokenizer.vocab_size(world),
            defaults=MODEL_DEFAULTS[world.name],
            extra={"image_size": world.image_size, "bundled": True,
                   "weights": f"scalingar_core/models/toy/weights/{world.name}.safetensors",
                   "vocabulary": list(VOCAB[1:]), "categories": list(toy_prompts.CATEGORIES)},
        )
        register(ModelEntry(info=info, loader=loader(world), files=[]))
