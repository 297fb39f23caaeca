"""transformers image models as frame backbones: any local model folder (``--backbone hf``) and the
cards whose network is a transformers model (``dinov2-b14``, ``siglip-b16``).

transformers (the ``hf`` extra) supplies the model definitions and reads their weights
(``from_pretrained`` of the family's own class, offline: transformers 5 renames old key layouts
on load, which only it knows). A folder's ``config.json`` names the architecture (a ``config.json``
asking for custom code is refused by :func:`fsv.pipeline.hf_folder.read_config` first); every
weight the model has must come from the folder; the preprocessing is read from
``preprocessor_config.json`` and done by fsv
(:func:`processor_preprocess`), as the image processor does it: PIL's resampling, the short side
resized with the long side truncated, centre crop offsets floored, ``rescale_factor``, mean / std.

=========================  =================================  ===============================  ==========================
``model_type``             model                              ``features`` (pooled)            ``grid``
=========================  =================================  ===============================  ==========================
clip, clip_vision_model    ``CLIPVisionModelWithProjection``  ``image_embeds`` (projected)     patch tokens after CLS
siglip, siglip_vision_...  ``SiglipVisionModel``              ``pooler_output`` (MAP head)     every token
dinov2                     ``Dinov2Model``                    ``pooler_output`` (normed CLS)   patch tokens after CLS
dinov2_with_registers      ``Dinov2WithRegistersModel``       ``pooler_output``                after CLS and registers
=========================  =================================  ===============================  ==========================

The grid is ``last_hidden_state``'s patch tokens as ``[D, h, w]`` (for SigLIP and DINOv2 that state
is post-LayerNormed; for CLIP it is not: each as transformers returns it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fsv.errors import FsvInputError
from fsv.pipeline.hf_folder import read_config, read_json


@dataclass(frozen=True)
class Family:
    """How one ``model_type`` is built and read: the transformers class, the config key holding the
    vision config in a two-tower folder, and the output that is the pooled feature."""

    model_class: str
    vision_key: str | None
    pooled: str


FAMILIES: dict[str, Family] = {
    "clip": Family("CLIPVisionModelWithProjection", "vision_config", "image_embeds"),
    "clip_vision_model": Family("CLIPVisionModelWithProjection", None, "image_embeds"),
    "siglip": Family("SiglipVisionModel", "vision_config", "pooler_output"),
    "siglip_vision_model": Family("SiglipVisionModel", None, "pooler_output"),
    "dinov2": Family("Dinov2Model", None, "pooler_output"),
    "dinov2_with_registers": Family("Dinov2WithRegistersModel", None, "pooler_output"),
}


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as e:
        raise FsvInputError("transformers models need the hf extra: pip install 'fsv[hf]'") from e
    return transformers


def family_of(config: dict[str, Any], where: Path) -> Family:
    kind = str(config.get("model_type"))
    if kind not in FAMILIES:
        raise FsvInputError(
            f"{where / 'config.json'}: model_type {kind!r} is not an image model fsv reads; it reads {', '.join(FAMILIES)}"
        )
    return FAMILIES[kind]


def vision_config(config: dict[str, Any], family: Family) -> dict[str, Any]:
    """The vision tower's settings (``vision_config`` of a two-tower folder, else the config)."""
    return dict(config.get(family.vision_key) or {}) if family.vision_key else config


@dataclass(frozen=True)
class HFShapes:
    """What a folder's model gives: the pooled feature's size and the grid ``(D, h, w)``."""

    pooled: int
    grid: tuple[int, int, int]


def folder_shapes(config: dict[str, Any], preprocess: dict[str, Any], folder: Path) -> HFShapes:
    """Output sizes from ``config.json`` and the processor's output side (no model built)."""
    family = family_of(config, folder)
    vc = vision_config(config, family)
    width = int(vc.get("hidden_size", 768))
    patch = int(vc.get("patch_size", 16))
    pooled = (
        int(config.get("projection_dim") or vc.get("projection_dim") or width)
        if family.pooled == "image_embeds"
        else width
    )
    side = int(preprocess["crop"])
    return HFShapes(pooled, (width, side // patch, side // patch))


PIL_RESAMPLE = {2: "bilinear", 3: "bicubic"}


def processor_preprocess(folder: Path) -> dict[str, Any]:
    """fsv's preprocessing spec equal to the folder's image processor (``preprocessor_config.json``):
    ``size`` ``{"shortest_edge": n}`` (long side truncated) or ``{"height", "width"}``,
    ``resample`` (PIL's bilinear or bicubic), ``crop_size`` when ``do_center_crop`` (offsets
    floored), ``rescale_factor`` 1/255, ``image_mean`` / ``image_std`` when ``do_normalize``."""
    path = folder / "preprocessor_config.json"
    p = read_json(path)
    if not p.get("do_resize", True):
        raise FsvInputError(f"{path}: do_resize is false; fsv needs the processor to bring frames to one size")
    size = p.get("size", {"shortest_edge": 224})
    if isinstance(size, int):  # an old-style int: the short side (CLIP's, DINOv2's processors)
        size = {"shortest_edge": size}
    if "longest_edge" in size:
        raise FsvInputError(f"{path}: size {size} bounds the longest edge, which fsv does not reproduce")
    resample = int(p.get("resample", 3))
    if resample not in PIL_RESAMPLE:
        raise FsvInputError(
            f"{path}: resample {resample} (PIL's code) is not one fsv reproduces; it does 2 (bilinear) and 3 (bicubic)"
        )
    out: dict[str, Any] = {
        "interpolation": PIL_RESAMPLE[resample],
        "resampler": "pil",
        "geometry": "transformers",
        "crop_mode": "center",
    }
    if "shortest_edge" in size:
        out["resize_short"] = int(size["shortest_edge"])
    elif {"height", "width"} <= set(size):
        out["resize"] = [int(size["height"]), int(size["width"])]
    else:
        raise FsvInputError(f"{path}: size {size} is neither shortest_edge nor height/width")
    if p.get("do_center_crop", False):
        crop = p.get("crop_size", 224)
        crop = {"height": crop, "width": crop} if isinstance(crop, int) else crop
        if int(crop["height"]) != int(crop["width"]):
            raise FsvInputError(f"{path}: crop_size {crop} is not square")
        out["crop"] = int(crop["height"])
    elif "resize" in out and out["resize"][0] == out["resize"][1]:
        out["crop"] = out["resize"][0]
    else:
        raise FsvInputError(
            f"{path}: without a centre crop the frames keep their aspect; fsv needs square model inputs"
        )
    if abs(float(p.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-12 or not p.get("do_rescale", True):
        raise FsvInputError(f"{path}: rescale_factor {p.get('rescale_factor')} is not 1/255")
    if p.get("do_normalize", True):
        out["mean"] = [float(x) for x in p.get("image_mean", [0.5, 0.5, 0.5])]
        out["std"] = [float(x) for x in p.get("image_std", [0.5, 0.5, 0.5])]
    else:
        out["range"] = [0, 1]
    return out


class HFImageModel(nn.Module):
    """A transformers vision model with fsv's outputs: ``forward(frames[B, 3, H, W]) ->
    {"features": [B, pooled], "grid"?: [B, D, h, w]}``."""

    def __init__(self, model: nn.Module, family: Family, *, grid: bool = False) -> None:
        super().__init__()
        self.model = model
        self.family = family
        self.grid = grid

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(pixel_values=x)
        fields = {"features": getattr(out, self.family.pooled)}
        if self.grid:  # the patch tokens come last (after CLS and DINOv2's registers)
            patch = int(self.model.config.patch_size)
            h, w = x.shape[-2] // patch, x.shape[-1] // patch
            tokens = out.last_hidden_state[:, -h * w :]
            fields["grid"] = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)
        return fields


def model_config(config: dict[str, Any], family: Family) -> Any:
    """The family's transformers config object for a ``config.json`` dict (a two-tower folder's
    vision settings; CLIP's projection width is the top level's)."""
    tf = _transformers()
    kwargs = {
        k: v
        for k, v in vision_config(config, family).items()
        if k not in ("architectures", "model_type", "transformers_version")
    }
    if family.pooled == "image_embeds" and family.vision_key and config.get("projection_dim"):
        kwargs["projection_dim"] = config["projection_dim"]
    return getattr(tf, family.model_class).config_class(**kwargs)


def build_model(config: dict[str, Any], family: Family) -> nn.Module:
    """The family's transformers model from a config dict, randomly initialised (eval mode)."""
    return getattr(_transformers(), family.model_class)(model_config(config, family)).eval()


def load_folder(
    folder: Path,
    *,
    grid: bool = False,
    model_types: tuple[str, ...] | None = None,
    expect: dict[str, Any] | None = None,
) -> HFImageModel:
    """The folder's model with every one of its weights from the folder (the other tower's left
    out), read by transformers' ``from_pretrained`` of the family's own class, offline, with the
    config fsv checked (no custom code: :func:`fsv.pipeline.hf_folder.read_config`); a weight the
    folder lacks is an input error, not a random initialisation. A named card restricts the
    families (``model_types``) and the architecture (``expect``: its config's sizes)."""
    config = read_config(folder)
    family = family_of(config, folder)
    if model_types and config.get("model_type") not in model_types:
        raise FsvInputError(
            f"{folder}: model_type {config.get('model_type')!r} is not this backbone's ({', '.join(model_types)})"
        )
    vc = vision_config(config, family)
    for key, value in (expect or {}).items():
        if key != "model_type" and key in vc and vc[key] != value:
            raise FsvInputError(
                f"{folder / 'config.json'}: {key} is {vc[key]!r}, this backbone's is {value!r}; read it with --backbone hf"
            )
    cls = getattr(_transformers(), family.model_class)
    try:
        model, info = cls.from_pretrained(
            folder,
            config=model_config(config, family),
            local_files_only=True,
            trust_remote_code=False,
            output_loading_info=True,
        )
    except (OSError, ValueError, RuntimeError) as e:
        raise FsvInputError(
            f"{folder}: transformers could not read it as {family.model_class} ({str(e).splitlines()[0][:200]})"
        ) from e
    bad = list(info.get("missing_keys") or []) + [str(m) for m in info.get("mismatched_keys") or []]
    if bad:
        raise FsvInputError(
            f"{folder}: does not fit {family.model_class} ({len(bad)} weights missing or of another shape, e.g. {sorted(bad)[:3]})"
        )
    return HFImageModel(model.float().eval(), family, grid=grid).eval()
