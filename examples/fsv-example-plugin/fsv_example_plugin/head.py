"""``example-proto``: prototypes of a learned projection of the time-averaged features, scored by
negative squared Euclidean distance (ProtoNet with a projection), registered as fsv registers its
own heads."""

from __future__ import annotations

import torch
from torch import nn

from fsv.heads.models import HeadOutput, RecognitionHead, register_head

PRESET = {
    "optimizer": "adam",
    "lr": 1e-3,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "episodes_per_update": 1,
    "train_episodes": 2000,
    "lr_milestones": [],
    "lr_gamma": 0.1,
    "val_every": 500,
    "checkpoint_every": 100,
    "projection_dim": 64,
}


@register_head(
    "example-proto",
    preset=PRESET,
    description="example plugin: ProtoNet on a learned projection of the time-averaged features",
)
class ExampleProto(RecognitionHead):
    view = "pooled"

    def __init__(self, feature_dim: int, seq_len: int = 8, projection_dim: int = 64) -> None:
        super().__init__()
        self.proj = nn.Linear(feature_dim, projection_dim)

    def forward(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int) -> HeadOutput:
        s, q = self.proj(support.mean(1)), self.proj(query.mean(1))  # [N, P], [Q, P]
        protos = torch.stack([s[support_labels == c].mean(0) for c in range(way)])
        return HeadOutput(-torch.cdist(q, protos).pow(2))
