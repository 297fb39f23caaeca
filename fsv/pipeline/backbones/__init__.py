"""Backbones by name; each builds a model whose weights come from :mod:`fsv.pipeline.weights`."""

from __future__ import annotations

import torch
from torch import nn

from fsv.errors import FsvInputError
from fsv.pipeline.backbones.resnet50 import ResNet50
from fsv.pipeline.weights import WeightsRef, load_state_dict

BACKBONES: dict[str, type[nn.Module]] = {"resnet50": ResNet50}


def create_backbone(name: str, weights: WeightsRef) -> nn.Module:
    """Backbone ``name`` in eval mode with ``weights`` loaded strictly (or seeded random init)."""
    cls = BACKBONES.get(name)
    if cls is None:
        raise FsvInputError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if weights.path is None:
        torch.manual_seed(weights.seed or 0)
        return cls().eval()
    model = cls()
    state = load_state_dict(weights.path)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise FsvInputError(f"{weights.path}: does not fit {name} ({str(e).splitlines()[-1].strip()})") from e
    if missing or unexpected:
        raise FsvInputError(
            f"{weights.path}: does not fit {name} (missing {len(missing)} keys, e.g. {missing[:3]}; unexpected {len(unexpected)}, e.g. {unexpected[:3]})"
        )
    return model.eval()
