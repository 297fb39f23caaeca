"""Tensors out of the checkpoint file formats published weights come in, read without running code.

* ``.safetensors``: an 8-byte header length, a JSON header (name -> dtype, shape, byte range) and
  the raw tensor bytes; parsed here directly (no ``safetensors`` package needed).
* TorchScript archives (OpenAI's CLIP ``.pt`` files): a zip whose ``data.pkl`` pickles the module
  tree. ``torch.jit.load`` would compile and run the archive's code; :func:`read_torchscript`
  instead unpickles ``data.pkl`` with :class:`TorchScriptTensors`, which builds every scripted
  class as an inert attribute holder, rebuilds tensors from the archive's storages, and refuses
  every other global by name.
* PyTorch pickles (``torch.save``) and HF folders are read by :mod:`fsv.pipeline.weights`.

::

    state = read_safetensors(path)       # {name: tensor}
    state = read_torchscript(path)       # {"visual.conv1.weight": tensor, ...}
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from fsv.errors import FsvInputError

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file (copied out of the file, so it is not kept open)."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100 * 2**20:
                raise ValueError(f"header of {n} bytes")
            header = json.loads(f.read(n))
            body = f.read()
        out = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype = SAFETENSORS_DTYPES[entry["dtype"]]
            a, b = (int(x) for x in entry["data_offsets"])
            if not 0 <= a <= b <= len(body):
                raise ValueError(f"tensor {name} lies outside the file")
            flat = torch.frombuffer(bytearray(body[a:b]), dtype=dtype) if b > a else torch.empty(0, dtype=dtype)
            out[name] = flat.reshape([int(s) for s in entry["shape"]])
        return out
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, struct.error, json.JSONDecodeError) as e:
        raise FsvInputError(f"{path}: not a readable .safetensors file ({type(e).__name__}: {e})") from e


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n for n in z.namelist())


class ScriptObject:
    """Stands for any scripted class of the archive (``__torch__.*``): its pickled state becomes
    plain attributes, and nothing of the class's code exists or runs."""


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


STORAGE_TYPES = {
    f"{name}Storage": _StorageType(dtype)
    for name, dtype in [("Float", torch.float32), ("Half", torch.float16), ("BFloat16", torch.bfloat16), ("Double", torch.float64),
                        ("Long", torch.int64), ("Int", torch.int32), ("Short", torch.int16), ("Char", torch.int8), ("Byte", torch.uint8),
                        ("Bool", torch.bool)]
}


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any) -> torch.Tensor:
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


class TorchScriptTensors(pickle.Unpickler):
    """Unpickles a TorchScript archive's ``data.pkl``: scripted classes become :class:`ScriptObject`,
    tensors are rebuilt from the archive's ``data/`` entries; any other global is refused."""

    def __init__(self, file: io.BytesIO, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(file)
        self.archive = archive
        self.prefix = prefix
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return ScriptObject
        if module == "torch" and name in STORAGE_TYPES:
            return STORAGE_TYPES[name]
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only modules and tensors are allowed")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        if key not in self.storages:
            raw = self.archive.read(f"{self.prefix}data/{key}")
            self.storages[key] = torch.frombuffer(bytearray(raw), dtype=storage_type.dtype) if raw else torch.empty(0, dtype=storage_type.dtype)
        return self.storages[key]


def _flatten(obj: Any, prefix: str, out: dict[str, torch.Tensor], seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    for name, value in vars(obj).items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value.clone()
        elif isinstance(value, ScriptObject):
            _flatten(value, f"{prefix}{name}.", out, seen)


def read_torchscript(path: Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive, named as its module's ``state_dict``
    names them (``visual.transformer.resblocks.0.attn.in_proj_weight``)."""
    try:
        with zipfile.ZipFile(path) as z:
            pkl = [n for n in z.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
            if not pkl:
                raise ValueError("no data.pkl at the archive's top level")
            prefix = pkl[0][: -len("data.pkl")]
            root = TorchScriptTensors(io.BytesIO(z.read(pkl[0])), z, prefix).load()
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, AttributeError, IndexError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise FsvInputError(f"{path}: not a readable TorchScript archive ({type(e).__name__}: {e}); nothing in it was run") from e
    if not isinstance(root, ScriptObject):
        raise FsvInputError(f"{path}: the TorchScript archive holds {type(root).__name__}, not a module")
    out: dict[str, torch.Tensor] = {}
    _flatten(root, "", out, set())
    return out

