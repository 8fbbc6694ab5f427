"""Named models. Names from a workflow or the command line are looked up here, never used as paths."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import echo
from .protocol import ARModel, ModelInfo

DEFAULT_MODEL = "toy-shapes-256"  # bundled, offline; 256 tokens: the paper's shortest regime


@dataclass
class ModelEntry:
    info: ModelInfo
    loader: Callable[..., ARModel]
    """``loader(models_dir=None, device=None, dtype=None, download=False, progress=None) -> ARModel``."""
    files: list[dict[str, Any]] = field(default_factory=list)
    """Files it needs: ``{"repo_id": ..., "filename": ..., "size": bytes or None}`` (for UIs and errors)."""


_REGISTRY: dict[str, ModelEntry] = {}
_populated = False


def register(entry: ModelEntry) -> None:
    _REGISTRY[entry.info.name] = entry


FAMILIES = ("scalingar_core.models.toy.model", "scalingar_core.models.llamagen.presets", "scalingar_core.models.janus.presets",
            "scalingar_core.models.simplear.presets")


def _families():
    for module in FAMILIES:
        try:
            yield __import__(module, fromlist=["register_models"])
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue  # that family is not part of this build (a broken import inside it still raises)
            raise


def _populate() -> None:
    # Lazy so importing the registry stays cheap; each family registers its own presets.
    global _populated
    if _populated:
        return
    for mod in _families():
        mod.register_models(register)
    _populated = True  # only once every family registered: a failure is raised again, not hidden


def names() -> list[str]:
    _populate()
    return sorted(_REGISTRY, key=lambda n: (n != DEFAULT_MODEL, n))


def model_help() -> str:
    """``--model`` help text: the default and every registered name."""
    return f"registered model name (default {DEFAULT_MODEL}): {', '.join(names())}"


def entry(name: str) -> ModelEntry:
    _populate()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {echo(name)}: known models are {', '.join(names())}")
    return _REGISTRY[name]


def load(name: str, image_size: int | None = None, **kwargs) -> ARModel:
    """Load a registered model by name (kwargs: models_dir, device, dtype, download, progress).

    ``image_size`` (px): for models that decode several sizes (their info lists ``image_sizes``); None = the
    model's own."""
    e = entry(name)
    if image_size is not None:
        if not e.info.extra.get("image_sizes"):
            raise ValueError(f"{name} decodes only {e.info.extra.get('image_size', 'its own')} px images: the image "
                             f"size is a setting of SimpleAR models; leave it at the model's default")
        kwargs["image_size"] = int(image_size)
    return e.loader(**kwargs)


def recognises(path) -> bool:
    """Whether a family can load the local file or folder ``path``, judged from its name and place (no weights
    are read; a model folder's small config.json may be): what a model list should offer. Each family answers
    through its ``match_file(path)``."""
    return any(getattr(mod, "match_file", lambda _: None)(path) is not None for mod in _families())


def load_checkpoint(path, **kwargs) -> ARModel:
    """Load a local checkpoint file whose family is detected from its contents (kwargs: device, dtype).

    ``path`` must come from a lookup (a file listed in a models folder), never from raw user text."""
    for mod in _families():
        loader = getattr(mod, "load_checkpoint", None)
        model = loader(path, **kwargs) if loader else None
        if model is not None:
            return model
    raise ValueError(f"{path}: not a checkpoint of a known family (LlamaGen/AR-GRPO GPT, toy-shapes, Janus-Pro or SimpleAR "
                     f"folder); "
                     f"use a registered preset name instead ({', '.join(names())})")
