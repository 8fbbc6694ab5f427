"""Read the tensors of a TorchScript archive (``torch.jit.save``) without running anything from it.

NVIDIA publishes the Cosmos tokenizers only as TorchScript files, and its own loader calls ``torch.jit.load``,
which compiles and runs the archive's ``code/``. Here the archive is opened as the zip it is and only its
``data.pkl`` is unpickled, by an unpickler that resolves a short fixed list of names to our own inert
functions:

* ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_tensor`` / ``_rebuild_parameter``: a tensor view of a
  storage (built here with ``as_strided``, never by torch's own rebuild functions);
* ``torch.<Type>Storage``: the element type of a storage record; the bytes come from the archive's
  ``data/<key>`` entry (a persistent id);
* ``collections.OrderedDict`` and ``torch.jit._pickle.build_*list`` / ``restore_type_tag``: containers;
* ``__torch__.*`` (the scripted module classes): an inert :class:`Record` holding the attributes it was
  pickled with; nothing is imported or called.

Any other global is refused by name (:class:`UnsafeArchiveError`) before it can be used. ``code/``,
``constants.pkl`` and the debug tables are never read.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

from ..checkpoints import CheckpointError

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class UnsafeArchiveError(CheckpointError):
    """The archive's pickle names a global outside the allowed list (nothing of it was run)."""


class Record:
    """A scripted module (or other ``__torch__`` object) as plain data: its class name and attributes."""

    __slots__ = ("type_name", "attrs")

    def __init__(self, type_name: str):
        self.type_name = type_name
        self.attrs: dict = {}

    def __setstate__(self, state) -> None:  # the pickle's BUILD: a dict of attributes, stored, never run
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.type_name} state is a {type(state).__name__}, not a dict")
        self.attrs = dict(state)

    def __repr__(self) -> str:
        return f"Record({self.type_name}, {sorted(self.attrs)})"


def _record_class(type_name: str) -> type:
    """A class whose ``__new__`` (the pickle's NEWOBJ) makes an empty :class:`Record` named ``type_name``."""
    return type("ScriptObject", (), {"__new__": staticmethod(lambda cls, *a: Record(type_name))})


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    return storage.as_strided(tuple(size), tuple(stride), offset)


def _rebuild_parameter(data, requires_grad=False, _hooks=None):
    return data


def _same(value, *_ignored):
    return value


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch.jit._pickle", "restore_type_tag"): _same,
    **{("torch.jit._pickle", f"build_{kind}list"): _same for kind in ("int", "double", "bool", "tensor")},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, path: Path):
        super().__init__(io.BytesIO(data))
        self._zip, self._root, self._path = archive, root, path
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "__torch__" or module.startswith("__torch__."):
            return _record_class(f"{module}.{name}")
        raise UnsafeArchiveError(
            f"refusing {self._path}: its data.pkl references the Python global {module}.{name}, which a "
            f"TorchScript weight file never needs. ScalingAR reads only tensors from .jit files and never runs "
            f"code from them; use the official file")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"storage {key!r} has no storage type")
        key = str(key)
        if key not in self._storages:
            raw = self._zip.read(f"{self._root}/data/{key}")
            size = torch.empty((), dtype=dtype).element_size()
            if len(raw) != numel * size:
                raise pickle.UnpicklingError(f"storage {key} holds {len(raw)} bytes, expected {numel} x {size}")
            flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
            self._storages[key] = flat.view(dtype) if numel else torch.empty(0, dtype=dtype)
        return self._storages[key]


def _root(archive: zipfile.ZipFile, path: Path) -> str:
    tops = {n.split("/", 1)[0] for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1}
    if len(tops) != 1:
        raise CheckpointError(f"{path} is not a TorchScript archive (no single <name>/data.pkl inside)")
    return tops.pop()


def read_archive(path: str | Path) -> Record:
    """The root object of the TorchScript archive ``path``, as inert :class:`Record` s and tensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TorchScript file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a TorchScript archive (not a zip file); delete it and fetch it again")
    with zipfile.ZipFile(path) as archive:
        root = _root(archive, path)
        names = set(archive.namelist())
        if f"{root}/byteorder" in names and archive.read(f"{root}/byteorder").strip() != b"little":
            raise CheckpointError(f"{path} was saved on a big-endian machine; convert it there to .safetensors")
        try:
            obj = _Unpickler(archive.read(f"{root}/data.pkl"), archive, root, path).load()
        except UnsafeArchiveError:
            raise
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise CheckpointError(f"{path} is incomplete or corrupt ({type(exc).__name__}: {exc}); "
                                  f"delete it and fetch it again") from exc
    if not isinstance(obj, Record):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a scripted module")
    return obj


def flatten(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor reachable from ``obj`` under its dotted attribute path (what ``state_dict`` names it),
    including buffers registered as non-persistent (TorchScript pickles them too)."""
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix[:-1]] = obj
    elif isinstance(obj, Record):
        for key, value in obj.attrs.items():
            out.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            out.update(flatten(value, f"{prefix}{i}."))
    return out


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of the TorchScript file ``path`` by attribute path (contiguous copies, own memory)."""
    return {k: v.contiguous().clone() for k, v in flatten(read_archive(path)).items()}
