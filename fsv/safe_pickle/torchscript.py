"""A TorchScript archive's tensors, read without running it (OpenAI's CLIP ``.pt`` files).

``torch.jit.load`` would compile and run an archive's code. :class:`TorchScriptTensors` unpickles
its ``data.pkl`` instead: every scripted class (``__torch__.*``) becomes an inert attribute holder,
tensors are rebuilt from the archive's storages (bounds checked), TorchScript's list tags are
plain lists, and any other global is refused by name. The classes it hands to the pickle are made
afresh for each archive, so a pickle that sets attributes on them reaches nothing else.

::

    state = read_torchscript(path)        # {"visual.conv1.weight": tensor, ...}
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fsv.errors import FsvInputError
from fsv.safe_pickle.arrays import FAILURES


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n for n in z.namelist())


class ScriptObject:
    """Stands for a scripted class of the archive (``__torch__.*``): its pickled state becomes plain
    attributes; nothing of the class's code exists or runs."""


@dataclass(frozen=True, slots=True)
class StorageType:
    """``torch.FloatStorage`` and its kin as a pickle names them: only the dtype."""

    dtype: torch.dtype


STORAGE_DTYPES = {
    f"{name}Storage": dtype
    for name, dtype in [
        ("Float", torch.float32),
        ("Half", torch.float16),
        ("BFloat16", torch.bfloat16),
        ("Double", torch.float64),
        ("Long", torch.int64),
        ("Int", torch.int32),
        ("Short", torch.int16),
        ("Char", torch.int8),
        ("Byte", torch.uint8),
        ("Bool", torch.bool),
    ]
}


def _plain_list(values: Any, *_: Any) -> list:
    """TorchScript's ``build_intlist`` / ``build_doublelist`` / ... and ``restore_type_tag``: the values themselves."""
    return list(values) if isinstance(values, (list, tuple)) else values


JIT_HELPERS = {
    name: _plain_list
    for name in ("build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "restore_type_tag")
}


class TorchScriptTensors(pickle.Unpickler):
    """Unpickles a TorchScript archive's ``data.pkl`` (see the module docstring)."""

    def __init__(self, file: io.BytesIO, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(file)
        self.archive = archive
        self.prefix = prefix
        self.storages: dict[str, torch.Tensor] = {}
        self.script_class = type("ScriptObject", (ScriptObject,), {})
        self.storage_types = {name: StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return self.script_class
        if module == "torch" and name in self.storage_types:
            return self.storage_types[name]
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self.rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch.jit._pickle" and name in JIT_HELPERS:
            return JIT_HELPERS[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only modules and tensors are allowed")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage" or not isinstance(storage_type, StorageType) or not isinstance(key, str):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        if key not in self.storages:
            raw = self.archive.read(f"{self.prefix}data/{key}")
            self.storages[key] = (
                torch.frombuffer(bytearray(raw), dtype=storage_type.dtype)
                if raw
                else torch.empty(0, dtype=storage_type.dtype)
            )
        return self.storages[key]

    @staticmethod
    def rebuild_tensor(
        storage: torch.Tensor, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
    ) -> torch.Tensor:
        """A copy of the view ``size`` / ``stride`` at ``offset`` of a storage, which must lie inside it."""
        if not isinstance(storage, torch.Tensor) or len(size) != len(stride):
            raise pickle.UnpicklingError("malformed tensor")
        if int(offset) < 0 or any(int(n) < 0 for n in size) or any(int(s) < 0 for s in stride):
            raise pickle.UnpicklingError("negative tensor offset, size or stride")
        numel = 1
        for n in size:
            numel *= int(n)
        if numel > storage.numel():  # a stride-0 view of a huge size would be copied into that much memory
            raise pickle.UnpicklingError(f"tensor of {numel} elements from a storage of {storage.numel()}")
        if numel and int(offset) + sum((int(n) - 1) * int(s) for n, s in zip(size, stride)) >= storage.numel():
            raise pickle.UnpicklingError("tensor reaches past its storage")
        return storage.as_strided(tuple(int(n) for n in size), tuple(int(s) for s in stride), int(offset)).clone()


def _flatten(obj: ScriptObject, prefix: str, out: dict[str, torch.Tensor], seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    for name, value in vars(obj).items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, ScriptObject):
            _flatten(value, f"{prefix}{name}.", out, seen)


def read_torchscript(path: str | Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive, named as its module's ``state_dict``
    names them (``visual.transformer.resblocks.0.attn.in_proj_weight``); anything else is an
    :class:`FsvInputError` naming the file."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            pkl = [n for n in z.namelist() if n.count("/") == 1 and n.split("/")[1] == "data.pkl"]
            if not pkl:
                raise ValueError("no data.pkl at the archive's top level")
            prefix = pkl[0][: -len("data.pkl")]
            root = TorchScriptTensors(io.BytesIO(z.read(pkl[0])), z, prefix).load()
            if not isinstance(root, ScriptObject):
                raise ValueError(f"the archive holds {type(root).__name__}, not a module")
            out: dict[str, torch.Tensor] = {}
            _flatten(root, "", out, set())
    except (*FAILURES, RuntimeError, RecursionError, zipfile.BadZipFile) as e:
        raise FsvInputError(
            f"{path}: not a readable TorchScript archive ({type(e).__name__}: {e}); nothing in it was run"
        ) from e
    return out
