"""Safe loading of LlamaGen / AR-GRPO weights (``docs/models.md``).

* ``.pt``/``.pth``/``.bin`` only through ``torch.load(weights_only=True)``: a file that pickles anything
  but tensors and plain containers is refused, never executed.
* ``.safetensors`` through ``safetensors``.
* Nesting ``model``/``module``/``state_dict``/``ema`` or a bare dict; prefixes ``module.``/``_orig_mod.``
  stripped; a combined file (AR-GRPO's ``gpt_model.*`` + ``vq_model.*``) routed to the GPT and the VQ;
  ``freqs_cis`` and KV-cache entries ignored.
* A mismatch raises one error with the missing, unexpected and wrongly shaped keys.
* A file that is not a checkpoint at all (an empty file, a Git LFS or git-annex pointer, an HTML error page or
  any other text a failed download leaves) is recognised from its first bytes and named as such.
"""
from __future__ import annotations

import contextlib
import pickle
import re
import struct
from pathlib import Path

import torch
import torch.nn as nn

from .. import files

WRAPPER_KEYS = ("model", "module", "state_dict", "ema")
STRIP_PREFIXES = ("module.", "_orig_mod.")
ROUTES = {"gpt_model.": "gpt", "vq_model.": "vq"}
_IGNORED = re.compile(r"(^|\.)(freqs_cis|causal_mask)$|(^|\.)kv_cache\.|(^|\.)(k_cache|v_cache)$")
SHOW = 5  # keys listed per category in a mismatch error


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used as it is (the message says why and what to do)."""


ORIGINAL_SUFFIXES = (".pt", ".pth", ".bin")


def _refetch_hint(path: Path, hint: str | None) -> str:
    """What to do about an unusable ``path``. A ``.safetensors`` beside the original it was converted from
    (which is read in its place only while it exists) is deleted or converted again: fetching helps nothing."""
    if path.suffix == ".safetensors":
        original = next((o for o in map(path.with_suffix, ORIGINAL_SUFFIXES) if o.is_file()), None)
        if original is not None:
            return (f"it is read instead of {original.name} beside it: delete it to use {original.name}, or convert "
                    f"again with `python -m scalingar_core convert {original} {path}`")
    return hint or f"delete {path} and fetch it again"


TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the number torch.save's legacy (non-zip) format pickles first


def _plain_pickle(path: Path) -> bool:
    """A pickle file not written by torch.save: its first pickled value is not torch's magic number."""
    import pickletools

    try:
        with open(path, "rb") as f:
            if f.read(1) != b"\x80":  # not a pickle (a zip archive: torch.save's usual format)
                return False
            f.seek(0)
            for op, arg, _ in pickletools.genops(f):
                if op.name not in ("PROTO", "FRAME"):
                    return arg != TORCH_LEGACY_MAGIC
    except (ValueError, EOFError, OSError):  # damaged bytes: torch.load names the damage
        return False
    return False


def _pickle_globals(path: Path, limit: int = 5) -> list[str]:
    """The Python objects a pickle file names (read opcode by opcode with pickletools, never unpickled)."""
    import pickletools

    found, strings = [], []
    with contextlib.suppress(ValueError, EOFError, OSError), open(path, "rb") as f:  # damaged: what was found
        for op, arg, _ in pickletools.genops(f):
            if op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
            if len(found) >= limit:
                break
    return list(dict.fromkeys(found))


# What torch's weights-only unpickler says when a file pickles something other than tensors (torch <= 2.5:
# "Unsupported global: GLOBAL x.y was not an allowed global"; later: "unsupported GLOBAL x.y whose module is
# blocked", "reduce for unrecognized function"). Anything else it raises means a damaged file.
_UNSAFE = re.compile(r"GLOBAL|reduce for unrecognized function|create new object", re.IGNORECASE)
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_TEXT = re.compile(rb"[\t\n\r\x20-\x7e\x80-\xff]*")


def sniff(path: Path) -> str | None:
    """What ``path`` is when its first bytes show it is no checkpoint (None: it may be one)."""
    size = path.stat().st_size
    if size == 0:
        return "an empty file (0 bytes): a download that wrote nothing"
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return None  # a zip archive (torch.save) or a pickle (legacy torch.save)
    if size >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < size:
        return None  # a safetensors header
    if head.startswith(b"version https://git-lfs"):
        return (f"a Git LFS pointer ({size} bytes of text that stand for the real file, which was never "
                f"downloaded; in a git clone `git lfs pull` fetches it)")
    if b"/annex/objects/" in head:
        return f"a git-annex pointer ({size} bytes; in the annexed repository `git annex get` fetches the file)"
    lower = head.lstrip().lower()
    if lower.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")):
        return "an HTML page (an error or login page saved by a failed download)"
    if _TEXT.fullmatch(head):
        first = head.decode("utf-8", "replace").strip().splitlines()[0][:80] if head.strip() else ""
        kind = "JSON text" if lower.startswith((b"{", b"[")) else "a text file"
        return f"{kind} of {size} bytes starting {first!r}, not weights (what a failed download or a wrong file leaves)"
    return None


def read_file(path: str | Path, hint: str | None = None) -> dict:
    """The raw object of a checkpoint file (``hint``: how to get the file again, for error messages)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; {hint or 'check the path'}")
    what = sniff(path)
    if what is not None:
        raise CheckpointError(f"{path} is not a checkpoint: it is {what}; {_refetch_hint(path, hint)}")
    if path.suffix != ".safetensors" and _plain_pickle(path):
        # pickle.dump output, not torch.save's: torch's safe unpickler would call it "unsupported operand"
        names = _pickle_globals(path)
        what = f" naming {', '.join(names)}" if names else ""
        raise CheckpointError(f"refusing to load {path}: it is a plain Python pickle (written by pickle.dump, not "
                              f"torch.save){what}. ScalingAR never unpickles objects or runs code from a file; use "
                              f"the official checkpoint, or a .safetensors file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # SafetensorError is not importable under a stable name
            raise CheckpointError(f"checkpoint {path} is incomplete or corrupt ({exc}); "
                                  f"{_refetch_hint(path, hint)}") from exc
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        if not _UNSAFE.search(str(exc)):  # "Unsupported operand" and the like: damaged bytes
            raise CheckpointError(f"checkpoint {path} is incomplete or corrupt (it does not unpickle); "
                                  f"{_refetch_hint(path, hint)}") from exc
        found = _GLOBAL.findall(str(exc))
        what = f" (it references {', '.join(found)})" if found else ""
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled Python objects other than tensors{what}. ScalingAR "
            f"only reads weights (torch.load with weights_only=True) and never runs code from a file. Use the "
            f"official checkpoint, or re-save only its state dict as .safetensors on a machine you trust") from exc
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} is incomplete or corrupt ({type(exc).__name__}: {exc}); "
                              f"{_refetch_hint(path, hint)}") from exc


def unwrap(obj, path: str | Path = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint object (``model``/``module``/``state_dict``/``ema`` or bare)."""
    for _ in range(4):  # nested wrappers, e.g. {"state_dict": {"model": ...}}
        if not isinstance(obj, dict):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    keys = list(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"{path} holds no state dict: expected tensors at the top level or under one of "
                          f"{list(WRAPPER_KEYS)}, found {keys}")


def normalise_key(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in STRIP_PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def split_state_dict(sd: dict[str, torch.Tensor], default: str = "gpt") -> dict[str, dict[str, torch.Tensor]]:
    """Route keys to ``{"gpt": ..., "vq": ...}`` by prefix (unprefixed keys go to ``default``)."""
    parts: dict[str, dict[str, torch.Tensor]] = {"gpt": {}, "vq": {}}
    for key, value in sd.items():
        key = normalise_key(key)
        target = default
        for prefix, route in ROUTES.items():
            if key.startswith(prefix):
                key, target = normalise_key(key[len(prefix):]), route
                break
        if not _IGNORED.search(key):
            parts[target][key] = value
    return parts


def read_state_dicts(path: str | Path, default: str = "gpt", hint: str | None = None):
    """``{"gpt": sd, "vq": sd}`` from any supported file layout (one part may be empty)."""
    return split_state_dict(unwrap(read_file(path, hint), path), default)


def _describe_gpt(sd: dict[str, torch.Tensor]) -> str:
    """What a GPT state dict looks like (to say which preset a wrong file is)."""
    tok = sd.get("tok_embeddings.weight")
    if tok is None:
        return "no tok_embeddings.weight"
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"layers\.(\d+)\.", k))}
    kind = "t2i" if "cls_embedding.cap_proj.fc1.weight" in sd else (
        "c2i" if "cls_embedding.embedding_table.weight" in sd else "unknown type")
    return f"{kind}, dim {tok.shape[1]}, {len(layers)} layers, vocab {tok.shape[0]}"


PICK_PRESET = "Pick the preset this file belongs to, or use the file the preset names."


def check_state_dict(module: nn.Module, sd: dict[str, torch.Tensor], expected: str, source: str,
                     optional: tuple[str, ...] = (), advice: str = PICK_PRESET) -> None:
    """Raise one :class:`CheckpointError` listing every difference between ``sd`` and ``module``'s keys
    (``advice``: the last line, what to do about it)."""
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = [k for k in want if k not in sd and k not in optional]
    unexpected = [k for k in sd if k not in want]
    shapes = [f"{k} {tuple(sd[k].shape)} (expected {want[k]})" for k in want
              if k in sd and tuple(sd[k].shape) != want[k]]
    if not (missing or unexpected or shapes):
        return
    lines = [f"{source} does not match {expected}:"]
    for name, items in (("missing", missing), ("unexpected", unexpected), ("wrongly shaped", shapes)):
        if items:
            more = f" ... and {len(items) - SHOW} more" if len(items) > SHOW else ""
            lines.append(f"  {len(items)} {name}: {', '.join(items[:SHOW])}{more}")
    if any(k.startswith("tok_embeddings") for k in list(want) + list(sd)):
        lines.append(f"  the file looks like: {_describe_gpt(sd)}")
    lines.append(f"  {advice}")
    raise CheckpointError("\n".join(lines))


def load_module(module: nn.Module, sd: dict[str, torch.Tensor], expected: str, source: str, device=None,
                dtype=None, optional: tuple[str, ...] = ()) -> nn.Module:
    """Check ``sd`` against ``module`` (built on the meta device or not), then assign its tensors cast to
    ``dtype`` (floating ones) on ``device``. Optional keys absent from ``sd`` are zero-filled."""
    check_state_dict(module, sd, expected, source, optional)
    device = torch.device(device or "cpu")
    own = module.state_dict()
    out = {}
    for key, ref in own.items():
        value = sd.pop(key) if key in sd else torch.zeros(ref.shape, dtype=ref.dtype)
        target = (dtype or ref.dtype) if value.is_floating_point() else value.dtype
        out[key] = value.to(device=device, dtype=target)
    module.load_state_dict(out, strict=True, assign=True)
    return module


def convert_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Write a ``.safetensors`` copy of ``src`` (any supported layout) for fast memory-mapped loads.

    Wrappers and ``module.``/``_orig_mod.`` prefixes are removed and ignorable entries dropped; a combined
    GPT+VQ file keeps its ``gpt_model.``/``vq_model.`` prefixes so it still routes. ``dst`` may be a folder
    (the file is named after ``src``). Returns the written path."""
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    if dst.is_dir():
        dst = dst / (src.stem + ".safetensors")
    if dst.suffix != ".safetensors":
        raise ValueError(f"convert target {dst} must end in .safetensors (or be an existing folder)")
    if dst.resolve() == src.resolve():
        raise ValueError(f"convert target {dst} is the source file")
    files.check_target(dst, "convert target")  # before the (long) read of the source
    parts = read_state_dicts(src)
    combined = bool(parts["vq"]) and bool(parts["gpt"])
    flat: dict[str, torch.Tensor] = {}
    for part, prefix in (("gpt", "gpt_model."), ("vq", "vq_model.")):
        for key, value in parts[part].items():
            # clone: safetensors refuses tensors that share storage (and mmap'd views)
            flat[(prefix if combined else "") + key] = value.detach().contiguous().clone()
    with files.atomic_path(dst) as tmp:  # never a half-written file under the final name, never over a device
        save_file(flat, str(tmp), metadata={"converted_from": src.name, "format": "pt"})
    return dst
