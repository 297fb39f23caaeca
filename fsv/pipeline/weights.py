"""Finding and reading backbone weights, for any backbone: a local path (a checkpoint file or a
transformers model folder) or the cache, checked by sha256, never unpickled unsafely.

Nothing here knows a particular backbone: which file names to look for and which weights ship in a
package come from the backbone's card (:mod:`fsv.pipeline.backbones`), which calls
:func:`find_weights`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from fsv.errors import FsvInputError
from fsv.safe_pickle.torchscript import is_torchscript, read_torchscript


@dataclass(frozen=True)
class WeightsRef:
    """Which weights a backbone runs with: a file and its sha256, or random with a seed."""

    name: str
    path: Path | None
    sha256: str | None
    seed: int | None = None

    def to_spec(self) -> dict:
        if self.path is None:
            return {"name": "random", "seed": self.seed}
        return {"name": self.name, "sha256": self.sha256}


def cache_dirs() -> list[Path]:
    """Where weights are looked for: ``$FSV_WEIGHTS``, ``~/.cache/fsv/weights``, torch hub's cache."""
    dirs = [Path(os.environ["FSV_WEIGHTS"])] if os.environ.get("FSV_WEIGHTS") else []
    dirs.append(Path.home() / ".cache" / "fsv" / "weights")
    dirs.append(Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints")
    return dirs


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_path(path: Path) -> str:
    """sha256 of a checkpoint file; for a model folder, of its config and weight files' names and
    hashes (so the folder's identity is its content, wherever it lies)."""
    if not path.is_dir():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(
        p for p in path.iterdir() if p.is_file() and (p.suffix in (".json", ".safetensors", ".bin", ".pth", ".pt"))
    ):
        h.update(f"{f.name}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def find_weights(
    network: str,
    weights: str | None,
    *,
    known_files: Sequence[str],
    packaged: Callable[[], Path | None] | None = None,
    allow_random_fallback: bool = False,
    option: str = "--weights",
) -> WeightsRef:
    """Weights for ``network``: ``weights`` is a path, ``random`` (explicit), or None (search
    :func:`cache_dirs` for ``known_files``, then ``packaged()``, weights inside an installed
    package); ``option`` is the command-line option that gives them (named in the messages).

    Without a file and without an explicit ``random`` this is an error naming where fsv looked —
    unless ``allow_random_fallback`` (the demo), which returns random weights, recorded as such.
    """
    if weights == "random":
        return WeightsRef("random", None, None, seed=0)
    if weights is not None:
        path = Path(weights).expanduser().resolve()  # absolute: a cluster job reads it from elsewhere
        if not path.exists():
            raise FsvInputError(f"{option} {path}: no such file or folder")
        return WeightsRef(path.name, path, sha256_path(path))
    for d in cache_dirs():
        for name in known_files:
            if (d / name).exists():
                return WeightsRef(name, d / name, sha256_path(d / name))
    found = packaged() if packaged is not None else None
    if found is not None:
        return WeightsRef(found.name, found, sha256_file(found))
    if allow_random_fallback:
        return WeightsRef("random", None, None, seed=0)
    looked = ", ".join(str(d) for d in cache_dirs())
    raise FsvInputError(
        f"no {network} weights found (looked in {looked} for {', '.join(known_files)}); pass {option} PATH, or {option} random"
    )


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a PyTorch checkpoint, loaded with ``weights_only=True`` (plain data, tensors and
    ``argparse.Namespace``, which training scripts save their options as); unwraps ``state_dict``
    / ``model`` / ``module`` containers and DataParallel's ``module.`` prefix."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # TSP and many training scripts save their args
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad or unsafe files
        raise FsvInputError(
            f"{path}: not a loadable PyTorch checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from e
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise FsvInputError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file: an 8-byte header length, a JSON header (name ->
    dtype, shape, byte range), the raw bytes; parsed here (no ``safetensors`` package needed)."""
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


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file in any format published weights use: ``.safetensors``, a
    TorchScript archive (read without running it) or a PyTorch pickle (:func:`load_state_dict`)."""
    if path.is_dir():
        raise FsvInputError(f"{path} is a folder; this backbone reads a checkpoint file")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if is_torchscript(path):
        return read_torchscript(path)
    return load_state_dict(path)
