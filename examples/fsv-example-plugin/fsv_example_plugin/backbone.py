"""``example-cnn``: a small frame CNN (two strided convolutions, global average pool, 32 features
per frame), registered as fsv registers its own backbones: a network per stream and a card."""

from __future__ import annotations

import torch
from torch import nn

from fsv.pipeline.backbones import BackboneCard, Network, Published, register_backbone
from fsv.pipeline.weights import load_state_dict


class ExampleCNN(nn.Module):
    """``(B, 3, 64, 64)`` normalised frames -> ``(B, 32)``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


register_backbone(
    BackboneCard(
        name="example-cnn",
        networks={"rgb": "example-cnn"},
        sampling={"kind": "tsn", "num_segments": 8, "mode": "center"},
        sampling_kinds=("tsn", "frames"),
        preprocess={
            "resize_short": 72,
            "crop": 64,
            "crop_mode": "center",
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        },
        field="features",
        dtype="float32",
        layers={"pooled": (32,)},
        published=Published("example-cnn-tsn8", "example-cnn (no published weights)"),
    ),
    {"example-cnn": Network(ExampleCNN, load_state_dict, ("example-cnn.pth",))},
)
