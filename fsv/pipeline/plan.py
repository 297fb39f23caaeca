"""What an extraction run computes: backbone, streams, sampling, preprocessing — and its feature spec.

An :class:`ExtractConfig` is built from a backbone's published defaults (:data:`DEFAULTS`) plus the
user's overrides; :meth:`ExtractConfig.spec` turns it into the :class:`FeatureSpec` the store is bound
to, so every choice that changes the numbers is recorded. :func:`plan_video` turns a video's real
frame timestamps into the frames to decode, the model's input units (single frames or snippets), the
time span of each feature step and the windows a long video is streamed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fsv.errors import FsvInputError
from fsv.pipeline.backbones.c3d import SPORTS1M_MEAN_BGR
from fsv.pipeline.sampling import resample_indices, snippet_starts, tsn_indices
from fsv.pipeline.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FeatureSpec,
    FieldSpec,
    step_spans,
)
from fsv.pipeline.weights import WeightsRef


@dataclass(frozen=True)
class BackboneDefaults:
    """A backbone's published protocol: sampling, preprocessing, output field and stream models."""

    sampling: dict[str, Any]
    preprocess: dict[str, Any]
    field: str
    shape: tuple[int, ...]
    dtype: str
    models: dict[str, str]  # stream -> model registry name
    sampling_kinds: tuple[str, ...]


DEFAULTS: dict[str, BackboneDefaults] = {
    "resnet50": BackboneDefaults(
        sampling={"kind": "tsn", "num_segments": 8, "mode": "center"},
        preprocess={"resize_short": 256, "crop": 224, "crop_mode": "center", "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
        field="grid",
        shape=(2048, 7, 7),
        dtype="float16",
        models={"rgb": "resnet50"},
        sampling_kinds=("tsn", "frames"),
    ),
    "i3d": BackboneDefaults(
        sampling={"kind": "snippets", "fps": 25, "snippet": 16, "stride": 16},
        preprocess={"resize_short": 256, "crop": 224, "crop_mode": "center", "range": [-1, 1]},
        field="features",
        shape=(1024,),
        dtype="float32",
        models={"rgb": "i3d", "flow": "i3d-flow"},
        sampling_kinds=("snippets",),
    ),
    "c3d": BackboneDefaults(
        sampling={"kind": "snippets", "fps": 25, "snippet": 16, "stride": 16},
        preprocess={"resize": [128, 171], "crop": 112, "crop_mode": "center", "antialias": False, "channels": "bgr", "mean": list(SPORTS1M_MEAN_BGR)},
        field="features",
        shape=(4096,),
        dtype="float16",
        models={"rgb": "c3d"},
        sampling_kinds=("snippets",),
    ),
}
C3D_LAYER_DIMS = {"fc6": (4096,), "fc7": (4096,), "pool5": (8192,)}
# fp32 is the reference; bf16 (CPU or CUDA) and fp16 (CUDA) autocast change the numbers and go into the spec
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ExtractConfig:
    """One run's choices. ``weights`` maps each stream to the weights its model runs with."""

    backbone: str
    streams: tuple[str, ...]
    weights: dict[str, WeightsRef]
    sampling: dict[str, Any]
    preprocess: dict[str, Any]
    flow: dict[str, Any] | None = None
    layer: str | None = None
    precision: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def defaults(self) -> BackboneDefaults:
        return DEFAULTS[self.backbone]

    def model_name(self, stream: str) -> str:
        return self.defaults.models[stream]

    @property
    def unit_frames(self) -> int:
        """Frames per model input: 1 (frame backbones) or the snippet length."""
        return int(self.sampling["snippet"]) if self.sampling["kind"] == "snippets" else 1

    def field_shape(self) -> tuple[int, ...]:
        if self.backbone == "c3d":
            return C3D_LAYER_DIMS[self.layer or "fc6"]
        shape = self.defaults.shape
        return (shape[0] * len(self.streams), *shape[1:])

    def spec(self) -> FeatureSpec:
        """The feature spec of this run (name for people, key from everything else)."""
        d = self.defaults
        weights = {s: self.weights[s].to_spec() for s in self.streams}
        s = self.sampling
        if s["kind"] == "snippets":
            samp = f"{s['fps']:g}fps-s{s['snippet']}x{s['stride']}"
        elif s["kind"] == "tsn":
            samp = f"tsn{s['num_segments']}"
        else:
            samp = "frames"
        name = "-".join([self.backbone, "+".join(self.streams), samp] + ([self.layer] if self.layer else [])
                        + ([self.precision] if self.precision != "fp32" else []))
        extra = dict(self.extra)
        if self.precision != "fp32":  # reduced-precision features differ from fp32 ones (fp32 keys stay as they were)
            extra["precision"] = self.precision
        if len(self.streams) > 1:
            extra["layout"] = " then ".join(f"{st} ({d.shape[0]})" for st in self.streams)
        if self.layer:
            extra["layer"] = self.layer
        return FeatureSpec(
            name=name,
            backbone=self.backbone,
            weights=weights if len(weights) > 1 else next(iter(weights.values())),
            sampling=dict(s),
            fields={d.field: FieldSpec(self.field_shape(), d.dtype)},
            preprocess=dict(self.preprocess),
            flow=dict(self.flow) if "flow" in self.streams and self.flow else None,
            extra=extra,
        )


def make_config(
    backbone: str,
    *,
    streams: tuple[str, ...] = ("rgb",),
    weights: dict[str, WeightsRef],
    sampling: dict[str, Any] | None = None,
    ten_crop: bool = False,
    flow: dict[str, Any] | None = None,
    layer: str | None = None,
    precision: str = "fp32",
) -> ExtractConfig:
    """Validate the user's choices against the backbone's protocol and fill in its defaults.

    ``sampling`` entries override the defaults key by key (e.g. ``{"fps": 30}``, or
    ``{"kind": "frames"}`` for per-frame ResNet-50 features).
    """
    if backbone not in DEFAULTS:
        raise FsvInputError(f"unknown backbone {backbone!r}; choose one of {', '.join(DEFAULTS)}")
    d = DEFAULTS[backbone]
    bad = [s for s in streams if s not in d.models]
    if not streams or bad or len(set(streams)) != len(streams):
        raise FsvInputError(f"--streams {','.join(streams)} is not valid for {backbone}; it has {', '.join(d.models)}")
    samp = dict(d.sampling)
    if sampling:
        if sampling.get("kind", samp["kind"]) != samp["kind"]:
            kind = sampling["kind"]
            if kind not in d.sampling_kinds:
                raise FsvInputError(f"{backbone} takes sampling {', '.join(d.sampling_kinds)}, not {kind}")
            samp = {"kind": kind}
        samp.update({k: v for k, v in sampling.items() if v is not None})
    if samp["kind"] == "snippets":
        for k in ("fps", "snippet", "stride"):
            if float(samp[k]) <= 0:
                raise FsvInputError(f"sampling {k} must be positive, got {samp[k]}")
    if samp["kind"] == "tsn" and (int(samp["num_segments"]) <= 0 or samp.get("mode") not in ("center", "random")):
        raise FsvInputError("TSN sampling needs num_segments > 0 and mode center or random")
    pre = dict(d.preprocess)
    if ten_crop:
        pre["crop_mode"] = "ten"
    if backbone == "c3d":
        layer = layer or "fc6"
        if layer not in C3D_LAYER_DIMS:
            raise FsvInputError(f"C3D layer must be one of {', '.join(C3D_LAYER_DIMS)}, got {layer!r}")
    elif layer:
        raise FsvInputError(f"--layer applies to c3d only, not {backbone}")
    missing = [s for s in streams if s not in weights]
    if missing:
        raise FsvInputError(f"no weights given for stream(s) {', '.join(missing)}")
    if precision not in PRECISIONS:
        raise FsvInputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    flow_cfg = None
    if "flow" in streams:
        flow_cfg = {"method": "tvl1", "clip": 20.0, "quantize": False, **(flow or {})}
    return ExtractConfig(backbone, tuple(streams), dict(weights), samp, pre, flow_cfg, layer, precision)


@dataclass(frozen=True)
class VideoPlan:
    """A video's sampling: ``frames`` (M,) source frame indices to decode in order; feature step
    ``i`` is the model run on ``frames[starts[i] : starts[i] + unit]``; ``spans`` (n, 2) seconds;
    ``windows`` groups steps into ranges ``[a, b)`` decoded together (bounded memory)."""

    frames: np.ndarray
    starts: np.ndarray
    unit: int
    spans: np.ndarray
    windows: list[tuple[int, int]]
    duration: float


def plan_video(config: ExtractConfig, timestamps: np.ndarray, fps: float, *, window_frames: int = 256, rng: np.random.Generator | None = None) -> VideoPlan:
    """Sampling of one video from its real frame ``timestamps`` (seconds, ``(num_frames,)``).

    Raises :class:`FsvInputError` when the video is too short for one feature step.
    """
    n_src = len(timestamps)
    step = float(np.median(np.diff(timestamps))) if n_src > 1 else 1.0 / (fps or 25.0)
    duration = float(timestamps[-1]) + step if n_src else 0.0
    s = config.sampling
    if s["kind"] == "snippets":
        target = float(s["fps"])
        frames = resample_indices(timestamps, target, duration)
        snippet, stride = int(s["snippet"]), int(s["stride"])
        starts = snippet_starts(len(frames), snippet, stride)
        if not len(starts):
            raise FsvInputError(f"too short: {duration:.2f} s gives {len(frames)} frames at {target:g} fps, fewer than one {snippet}-frame snippet")
        spans = step_spans(s, len(starts), duration)
        unit = snippet
        per_window = max(1, window_frames // stride)
    elif s["kind"] == "tsn":
        frames = tsn_indices(n_src, int(s["num_segments"]), mode=s.get("mode", "center"), rng=rng)
        starts = np.arange(len(frames), dtype=np.int64)
        spans = step_spans(s, len(starts), duration)
        unit, per_window = 1, max(1, window_frames)
    else:
        frames = np.arange(n_src, dtype=np.int64)
        starts = frames.copy()
        ends = np.append(timestamps[1:], duration)
        spans = np.minimum(np.stack([timestamps, ends], axis=1), duration)
        unit, per_window = 1, max(1, window_frames)
    windows = [(a, min(a + per_window, len(starts))) for a in range(0, len(starts), per_window)]
    return VideoPlan(frames, starts, unit, spans, windows, duration)
