"""What an extraction run computes: backbone, streams, sampling, preprocessing — and its feature spec.

An :class:`ExtractRecipe` is built from a backbone's card (:mod:`fsv.pipeline.backbones`) plus the
user's overrides; :meth:`ExtractRecipe.spec` turns it into the :class:`FeatureSpec` the store is bound
to, so every choice that changes the numbers is recorded. :func:`plan_video` turns a video's real
frame timestamps into the frames to decode, the model's input units (single frames or snippets), the
time span of each feature step and the windows a long video is streamed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fsv.errors import FsvInputError
from fsv.pipeline.backbones import DEFAULT_FLOW, BackboneCard, backbone_card, backbone_cards
from fsv.pipeline.flow import FLOW_METHODS
from fsv.pipeline.sampling import resample_indices, snippet_starts, tsn_indices
from fsv.pipeline.spec import FeatureSpec, step_spans
from fsv.pipeline.weights import WeightsRef


# fp32 is the reference; bf16 (CPU or CUDA) and fp16 (CUDA) autocast change the numbers and go into the spec
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ExtractRecipe:
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
    grid: bool = False
    recipe: str | None = None

    @property
    def card(self) -> BackboneCard:
        return backbone_card(self.backbone, self.weights.get("rgb"))

    def network(self, stream: str) -> str:
        """The network (a key of :data:`fsv.pipeline.backbones.NETWORKS`) that computes ``stream``."""
        return self.card.networks[stream]

    @property
    def unit_frames(self) -> int:
        """Frames per model input: 1 (frame backbones) or the snippet length."""
        return int(self.sampling["snippet"]) if self.sampling["kind"] == "snippets" else 1

    def spec(self) -> FeatureSpec:
        """The feature spec of this run (name for people, key from everything else)."""
        weights = {s: self.weights[s].to_spec() for s in self.streams}
        s = self.sampling
        if s["kind"] == "snippets":
            rate = "native" if s["fps"] == "native" else f"{float(s['fps']):g}"
            samp = f"{rate}fps-s{s['snippet']}x{s['stride']}"
        elif s["kind"] == "tsn":
            samp = f"tsn{s['num_segments']}"
        else:
            samp = "frames"
        method = (self.flow or {}).get("method", DEFAULT_FLOW["method"])
        default_recipe = next(iter(self.card.recipes), None)
        name = "-".join(
            [self.backbone, "+".join(self.streams), samp]
            + ([self.layer] if self.layer else [])
            + ([self.recipe] if self.recipe and self.recipe != default_recipe else [])
            + (["grid"] if self.grid else [])
            + ([method] if method != DEFAULT_FLOW["method"] else [])
            + ([self.precision] if self.precision != "fp32" else [])
        )
        extra = dict(self.extra)
        if self.precision != "fp32":  # reduced-precision features differ from fp32 ones (fp32 keys stay as they were)
            extra["precision"] = self.precision
        return self.card.feature_spec(
            name=name,
            streams=self.streams,
            weights=weights if len(weights) > 1 else next(iter(weights.values())),
            sampling=s,
            preprocess=self.preprocess,
            flow=self.flow,
            layer=self.layer,
            extra=extra,
            grid=self.grid,
        )


def make_recipe(
    backbone: str,
    *,
    streams: tuple[str, ...] = ("rgb",),
    weights: dict[str, WeightsRef],
    sampling: dict[str, Any] | None = None,
    ten_crop: bool = False,
    flow: dict[str, Any] | None = None,
    layer: str | None = None,
    precision: str = "fp32",
    recipe: str | None = None,
    grid: bool = False,
) -> ExtractRecipe:
    """Validate the user's choices against the backbone's card and fill in its defaults.

    ``recipe`` picks one of the card's published recipes (None: its defaults); ``sampling``
    entries then override key by key (e.g. ``{"fps": 30}``, or ``{"kind": "frames"}`` for
    per-frame ResNet-50 features). ``grid`` also stores the patch-token grid (transformers).
    """
    d = backbone_card(backbone, weights.get("rgb"))
    bad = [s for s in streams if s not in d.networks]
    if not streams or bad or len(set(streams)) != len(streams):
        raise FsvInputError(
            f"--streams {','.join(streams)} is not valid for {backbone}; it has {', '.join(d.networks)}"
        )
    if grid and d.grid is None:
        raise FsvInputError(
            f"--grid: {backbone} has no patch-token grid; the transformer backbones ({', '.join(n for n, c in backbone_cards().items() if c.grid)}) do"
        )
    samp, pre = d.recipe_choices(recipe)
    if sampling:
        if sampling.get("kind", samp["kind"]) != samp["kind"]:
            kind = sampling["kind"]
            if kind not in d.sampling_kinds:
                raise FsvInputError(f"{backbone} takes sampling {', '.join(d.sampling_kinds)}, not {kind}")
            samp = {"kind": kind}
        samp.update({k: v for k, v in sampling.items() if v is not None})
    if samp["kind"] == "snippets":
        for k in ("fps", "snippet", "stride"):
            if not (k == "fps" and samp[k] == "native") and float(samp[k]) <= 0:
                raise FsvInputError(f"sampling {k} must be positive, got {samp[k]}")
    if samp["kind"] == "tsn" and (int(samp["num_segments"]) <= 0 or samp.get("mode") not in ("center", "random")):
        raise FsvInputError("TSN sampling needs num_segments > 0 and mode center or random")
    if ten_crop:
        pre["crop_mode"] = "ten"
    if len(d.layers) > 1:
        layer = layer or d.default_layer
        if layer not in d.layers:
            raise FsvInputError(f"{backbone} layer must be one of {', '.join(d.layers)}, got {layer!r}")
    elif layer:
        several = ", ".join(n for n, c in backbone_cards().items() if len(c.layers) > 1)
        raise FsvInputError(f"--layer applies to {several} only, not {backbone}")
    missing = [s for s in streams if s not in weights]
    if missing:
        raise FsvInputError(f"no weights given for stream(s) {', '.join(missing)}")
    if precision not in PRECISIONS:
        raise FsvInputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    flow_cfg = None
    if "flow" in streams:
        flow_cfg = {**DEFAULT_FLOW, **(flow or {})}
        if flow_cfg["method"] not in FLOW_METHODS:
            raise FsvInputError(f"--flow must be one of {', '.join(FLOW_METHODS)}, got {flow_cfg['method']!r}")
    return ExtractRecipe(
        backbone,
        tuple(streams),
        dict(weights),
        samp,
        pre,
        flow_cfg,
        layer,
        precision,
        dict(d.spec_extra),
        grid=grid,
        recipe=recipe,
    )


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


def plan_video(
    recipe: ExtractRecipe,
    timestamps: np.ndarray,
    fps: float,
    *,
    window_frames: int = 256,
    rng: np.random.Generator | None = None,
) -> VideoPlan:
    """Sampling of one video from its real frame ``timestamps`` (seconds, ``(num_frames,)``).

    Raises :class:`FsvInputError` when the video is too short for one feature step.
    """
    n_src = len(timestamps)
    step = float(np.median(np.diff(timestamps))) if n_src > 1 else 1.0 / (fps or 25.0)
    duration = float(timestamps[-1]) + step if n_src else 0.0
    s = recipe.sampling
    if s["kind"] == "snippets":
        native = s["fps"] == "native"
        frames = (
            np.arange(n_src, dtype=np.int64)
            if native
            else resample_indices(timestamps, float(s["fps"]), duration, count=s.get("count", "floor"))
        )
        snippet, stride = int(s["snippet"]), int(s["stride"])
        starts = snippet_starts(len(frames), snippet, stride)
        if not len(starts):
            rate = "native" if native else f"{float(s['fps']):g}"
            raise FsvInputError(
                f"too short: {duration:.2f} s gives {len(frames)} frames at {rate} fps, fewer than one {snippet}-frame snippet"
            )
        if native:  # a snippet spans its frames' presentation times
            ends = np.append(timestamps[1:], duration)
            spans = np.minimum(np.stack([timestamps[starts], ends[starts + snippet - 1]], axis=1), duration)
        else:
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
