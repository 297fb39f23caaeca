"""R(2+1)D-34 (Tran et al. 2018) as TSP builds it (Alwassel et al. 2021), a clip feature extractor.

TSP's ``r2plus1d_34`` is torchvision's ``VideoResNet`` with basic blocks, (2+1)D convolutions, the
R(2+1)D stem and layers ``[3, 4, 6, 3]``, initialised from the IG-65M / Kinetics R(2+1)D-34 of
moabitcoin, with Caffe2's BatchNorm epsilon (1e-3, not PyTorch's 1e-5), and with TSP's own ``Conv2Plus1D``,
which takes its middle width from its own in / out channels where torchvision's takes the block's
(the second convolution of a stage's first block has 288 middle channels in TSP, 230 in
torchvision's ``r2plus1d_18`` layout: the IG-65M weights need TSP's). Parameter names match
torchvision's (``stem.0``, ``layer1.0.conv1.0.0``, ``layer1.0.conv1.1``, ``downsample.0``, ...),
so TSP's checkpoints load after their ``features.`` prefix is removed and their classifier heads
(``fc*``) dropped, as TSP's own ``extract_features.py`` drops them.

``forward(x)`` takes clips ``[B, 3, 16, 112, 112]`` (normalised) and returns the global average
pool of the last stage, ``[B, 512]``: TSP's features (its ``fc`` is an empty ``nn.Sequential``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fsv.pipeline.weights import read_checkpoint

# Kinetics normalisation of TSP (and torchvision's video models), inputs in 0..1
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
BN_EPS = 1e-3  # Caffe2's, set on every BatchNorm3d by TSP's r2plus1d_34


def midplanes(in_planes: int, out_planes: int) -> int:
    """Channels between the spatial and the temporal convolution: as many parameters as a full 3x3x3."""
    return (in_planes * out_planes * 3 * 3 * 3) // (in_planes * 3 * 3 + 3 * out_planes)


class Conv2Plus1D(nn.Sequential):
    """1x3x3 spatial convolution, BatchNorm, ReLU, 3x1x1 temporal convolution (the stride split
    between them)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1) -> None:
        mid = midplanes(in_planes, out_planes)
        super().__init__(
            nn.Conv3d(in_planes, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(mid, eps=BN_EPS),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, out_planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
        )


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            Conv2Plus1D(in_planes, planes, stride), nn.BatchNorm3d(planes, eps=BN_EPS), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(Conv2Plus1D(planes, planes), nn.BatchNorm3d(planes, eps=BN_EPS))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(
                nn.Conv3d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm3d(planes, eps=BN_EPS)
            )
            if stride != 1 or in_planes != planes
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + residual)


class R2Plus1D34(nn.Module):
    """``forward(clips[B, 3, T, 112, 112]) -> [B, 512]`` (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(45, eps=BN_EPS),
            nn.ReLU(inplace=True),
            nn.Conv3d(45, 64, (3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(64, eps=BN_EPS),
            nn.ReLU(inplace=True),
        )
        in_planes = 64
        for i, (planes, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1):
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return x.mean(dim=(2, 3, 4))


def read_tsp(path: Path) -> dict[str, torch.Tensor]:
    """R(2+1)D-34 weights from TSP's checkpoints (``{"model": {"features.*", "fc*"}}``) or a bare
    torchvision-named state dict (moabitcoin's IG-65M release); classifier heads dropped."""
    state = read_checkpoint(path)
    return {k.removeprefix("features."): v for k, v in state.items() if not k.split(".")[0].startswith("fc")}
