"""``video-features``: the outputs of v-iashin/video_features (``on_extraction: save_numpy``).

Layout: one folder (``output/<feature_type>/``) with, per video ``<stem>`` (the video's file stem)::

    <stem>_<key>.npy            (T, D) float64: key rgb / flow for i3d, the feature type otherwise
    <stem>_fps.npy              0-d float64: the video's frame rate (OpenCV's)
    <stem>_timestamps_ms.npy    (T,) float64: when each step is, in ms

The spans come from the real timestamps. For i3d, a timestamp is where the last frame of the
step's window of ``stack_size`` frames (64 by default, step 64) ends, so a step spans
``[t - stack_size / fps, t]``; for frame-wise extractors (resnet, clip) a timestamp is the frame's
start, spanning ``[t, t + 1 / fps]``. A video whose timestamps and features disagree in length is
refused by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsv.errors import FsvInputError
from fsv.pipeline.formats.base import (
    FeatureFormat,
    Features,
    SourceVideo,
    VideoProblem,
    fresh_dir,
    published_spec,
    require_dir,
    snippet_steps,
)
from fsv.pipeline.manifests.model import Manifest, VideoRecord
from fsv.pipeline.spec import FeatureSpec

FPS, TIMESTAMPS = "fps", "timestamps_ms"
PROVENANCE = "v-iashin/video_features ({}), save_numpy outputs"


@dataclass(frozen=True)
class Extractor:
    """What one of video_features' extractors writes: its array ``keys`` (joined on the feature
    axis in this order), and whether a timestamp ends a window of ``window`` frames (None: it is
    a frame's start)."""

    keys: tuple[str, ...]
    window: int | None


def _spec(
    name: str,
    backbone: str,
    weights: str,
    dim: int,
    extractor: str,
    sampling: dict,
    streams: tuple[str, ...] = ("rgb",),
) -> FeatureSpec:
    return published_spec(
        name,
        backbone=backbone,
        weights=weights,
        sampling=sampling,
        dim=dim,
        streams=streams,
        provenance=PROVENANCE.format(extractor),
        flow={"method": "raft"} if "flow" in streams else None,
    )


I3D_SAMPLING = {"kind": "snippets", "fps": "native", "snippet": 64, "stride": 64}
SPECS = (
    _spec("video-features-i3d-rgbflow", "i3d", "kinetics400 (pytorch-i3d)", 2048, "i3d", I3D_SAMPLING, ("rgb", "flow")),
    _spec("video-features-i3d-rgb", "i3d", "kinetics400 (pytorch-i3d)", 1024, "i3d, streams rgb", I3D_SAMPLING),
    _spec(
        "video-features-resnet50",
        "resnet50",
        "imagenet (torchvision)",
        2048,
        "resnet, model_name resnet50",
        {"kind": "frames"},
    ),
    _spec(
        "video-features-clip-vit-b-32", "clip", "openai ViT-B/32", 512, "clip, model_name ViT-B/32", {"kind": "frames"}
    ),
)
EXTRACTORS = {
    "video-features-i3d-rgbflow": Extractor(("rgb", "flow"), 64),
    "video-features-i3d-rgb": Extractor(("rgb",), 64),
    "video-features-resnet50": Extractor(("resnet",), None),
    "video-features-clip-vit-b-32": Extractor(("clip",), None),
}


def extractor_of(spec: FeatureSpec) -> Extractor:
    """The extractor behind one of this format's spec presets."""
    try:
        return EXTRACTORS[spec.name]
    except KeyError:
        raise FsvInputError(
            f"the video-features format reads the specs {', '.join(EXTRACTORS)}, not {spec.name!r}"
        ) from None


def _load_video(folder: Path, stem: str, ex: Extractor) -> Features:
    """One video's arrays, joined in ``ex.keys`` order, with spans from its timestamps."""
    parts = []
    for key in ex.keys:
        path = folder / f"{stem}_{key}.npy"
        if not path.is_file():
            raise VideoProblem(f"{path}: missing (video {stem} has no {key!r} features)")
        parts.append(np.load(path, allow_pickle=False))
    fps = float(np.load(folder / f"{stem}_{FPS}.npy", allow_pickle=False))
    ts = np.load(folder / f"{stem}_{TIMESTAMPS}.npy", allow_pickle=False).astype(np.float64).ravel() / 1000.0
    lengths = {len(p) for p in parts} | {len(ts)}
    if len(lengths) != 1:
        raise VideoProblem(
            f"{folder}: video {stem} has {[len(p) for p in parts]} feature steps ({', '.join(ex.keys)}) but {len(ts)} timestamps; "
            "re-extract it"
        )
    x = np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
    start, end = (ts - ex.window / fps, ts) if ex.window else (ts, ts + 1.0 / fps)
    return Features({"": x}, spans=np.stack([np.maximum(start, 0.0), end], axis=1))


def read(source: Path, annotations: Path | None, spec: FeatureSpec) -> Iterator[SourceVideo]:
    """The videos of output folder ``source`` written by ``spec``'s extractor (found by their
    ``_timestamps_ms`` files)."""
    ex = extractor_of(spec)
    require_dir(source, "video_features outputs (<stem>_<key>.npy, <stem>_fps.npy, <stem>_timestamps_ms.npy)")
    stems = sorted(p.name[: -len(f"_{TIMESTAMPS}.npy")] for p in source.glob(f"*_{TIMESTAMPS}.npy"))
    if not stems:
        raise FsvInputError(
            f"{source}: no <stem>_{TIMESTAMPS}.npy files: not a video_features output folder "
            "(r21d / s3d / vggish outputs carry no timestamps; import them as a plain folder)"
        )
    for stem in stems:
        yield SourceVideo(
            stem, str(source / f"{stem}_{ex.keys[0]}.npy"), lambda record, stem=stem: _load_video(source, stem, ex)
        )


def export_extractor(spec: FeatureSpec) -> Extractor:
    """How a store of ``spec`` is written as video_features outputs: one of this format's presets as
    read; other snippet specs as i3d writes them (a key per stream, window = snippet); frame specs
    as frame-wise extractors (one key, the backbone's name)."""
    if spec.name in EXTRACTORS:
        return EXTRACTORS[spec.name]
    kind = spec.sampling.get("kind")
    if kind == "tsn":
        raise FsvInputError(
            f"spec {spec.name!r} samples TSN segments, which video_features outputs cannot express (no per-step times)"
        )
    # video_features names a frame-wise extractor's key by its family: "clip" for every CLIP model
    name = "clip" if spec.backbone.startswith("clip-") else spec.backbone
    keys = (
        spec.streams if len(spec.streams) > 1 else ((spec.streams or ("rgb",)) if spec.backbone == "i3d" else (name,))
    )
    return Extractor(tuple(keys), int(spec.sampling["snippet"]) if kind == "snippets" else None)


def write(store, manifest: Manifest, out: Path) -> list[Path]:
    """The store's videos as video_features writes them (float64 features split by key, a 0-d
    fps, timestamps in ms of each step's window end, or frame start for frame-wise specs)."""
    ex = export_extractor(store.spec)
    out = fresh_dir(out)
    ids = [r.video_id for r in manifest if r.video_id in store.index] or store.video_ids()
    stems = [Path(vid).name for vid in ids]
    if len(set(stems)) < len(stems):
        clash = next(s for s in stems if stems.count(s) > 1)
        raise FsvInputError(
            f"{store.path}: several videos share the file stem {clash!r}; video_features names files by stem alone"
        )
    written = []
    for vid in ids:
        stem = Path(vid).name
        x, spans, fps = (
            store.get(vid, field=store.spec.view_field("pooled")).astype(np.float64),
            store.spans(vid),
            store.entry(vid).fps,
        )
        if not fps:
            raise FsvInputError(f"{store.path}: video {vid} has no frame rate; video_features files need one")
        for key, part in zip(ex.keys, np.split(x, len(ex.keys), axis=-1), strict=True):
            written.append(out / f"{stem}_{key}.npy")
            np.save(written[-1], part)
        np.save(out / f"{stem}_{FPS}.npy", np.float64(fps))
        np.save(out / f"{stem}_{TIMESTAMPS}.npy", 1000.0 * (spans[:, 1] if ex.window else spans[:, 0]))
        written += [out / f"{stem}_{FPS}.npy", out / f"{stem}_{TIMESTAMPS}.npy"]
    return written


def expected_steps(record: VideoRecord, spec: FeatureSpec) -> float | None:
    """Window extractors: ``(N - 1 - stack) / step + 1`` windows (a window needs one frame past it for
    its last flow pair); frame-wise extractors are not checked (their rate may be resampled)."""
    if spec.sampling.get("kind") != "snippets":
        return None
    n = snippet_steps(record, spec)
    return None if n is None else max(n - 1 / int(spec.sampling["stride"]), 1.0)


FORMAT = FeatureFormat(
    name="video-features",
    source="a video_features output folder (output/<feature_type>/)",
    used_by="v-iashin/video_features (I3D, ResNet, CLIP, ...), used by many dense-captioning and TAL projects",
    time_base="real per-step timestamps (i3d: 64-frame windows every 64 frames at the video's fps)",
    specs=SPECS,
    read=read,
    write=write,
    expected_steps=expected_steps,
)
