"""Synthetic untrimmed videos with planted action instances, for localization tests and demos.

Every step of a video is background noise; an instance of class ``c`` adds the class's feature
pattern (a random direction scaled by ``amplitude``) plus a pattern shared by all classes (scaled by
``shared``: what makes an action an action, like motion in real features, so class-agnostic
actionness can transfer to unseen classes) to its steps, ramped at the edges. Each
video holds 1-3 instances of one or two classes. The features are ``[T, dim]`` snippet features
(half "RGB", half "flow" for two-stream heads) with real time spans, written into a real store with
a ``localization`` manifest (train / val / test videos), so the heads run the same loaders,
trainers, predictors and evaluation as on real data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsv.pipeline.manifests import Manifest, Segment, VideoRecord
from fsv.pipeline.spec import FeatureSpec, FieldSpec
from fsv.pipeline.store import FeatureStore


@dataclass(frozen=True)
class LocSyntheticConfig:
    """Sizes and difficulty (defaults: seconds to write, a few MB)."""

    dim: int = 64
    classes: int = 20
    videos: tuple[int, int, int] = (240, 40, 60)  # train / val / test
    steps: tuple[int, int] = (48, 96)
    step_seconds: float = 0.5
    instance_steps: tuple[int, int] = (6, 16)
    amplitude: float = 1.5
    shared: float = 1.0
    noise: float = 1.0
    seed: int = 0


def _video(rng: np.random.Generator, protos: np.ndarray, common: np.ndarray, cfg: LocSyntheticConfig) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """``[T, dim]`` float32 features and the planted ``(start_step, end_step, class)`` instances."""
    t = int(rng.integers(cfg.steps[0], cfg.steps[1] + 1))
    x = rng.normal(0, cfg.noise, (t, cfg.dim)).astype(np.float32)
    labels = rng.choice(len(protos), int(rng.integers(1, 3)), replace=False)
    planted: list[tuple[int, int, int]] = []
    for _ in range(int(rng.integers(1, 4))):
        n = int(rng.integers(cfg.instance_steps[0], cfg.instance_steps[1] + 1))
        for _attempt in range(20):
            s = int(rng.integers(0, t - n + 1))
            if all(s + n + 2 <= a or s >= b + 2 for a, b, _ in planted):
                c = int(rng.choice(labels))
                ramp = np.minimum(1.0, np.minimum(np.arange(1, n + 1), np.arange(n, 0, -1)) / 2.0)
                x[s:s + n] += ramp[:, None] * (cfg.amplitude * protos[c] + cfg.shared * common)[None]
                planted.append((s, s + n, c))
                break
    return x, sorted(planted)


def write_synthetic_localization(out: Path, cfg: LocSyntheticConfig = LocSyntheticConfig()) -> tuple[Manifest, FeatureStore]:
    """Write ``out/manifest.jsonl`` and ``out/store.zarr`` (resumes an existing store)."""
    rng = np.random.default_rng(cfg.seed)
    protos = rng.normal(0, 1, (cfg.classes, cfg.dim)).astype(np.float32)
    protos *= np.sqrt(cfg.dim) / np.linalg.norm(protos, axis=1, keepdims=True)
    common = rng.normal(0, 1, cfg.dim).astype(np.float32)
    common *= np.sqrt(cfg.dim) / np.linalg.norm(common)
    names = [f"action_{k:02d}" for k in range(cfg.classes)]
    splits = ["train"] * cfg.videos[0] + ["val"] * cfg.videos[1] + ["test"] * cfg.videos[2]
    videos = [_video(np.random.default_rng([cfg.seed, i]), protos, common, cfg) for i in range(len(splits))]
    records = []
    for i, (split, (x, planted)) in enumerate(zip(splits, videos, strict=True)):
        segs = tuple(Segment(s * cfg.step_seconds, e * cfg.step_seconds, names[c]) for s, e, c in planted)
        label = "|".join(sorted({names[c] for _, _, c in planted}))
        records.append(VideoRecord(f"loc_{i:04d}", f"videos/loc_{i:04d}.mp4", label, split, fps=1 / cfg.step_seconds, num_frames=len(x),
                                   duration=len(x) * cfg.step_seconds, segments=segs))
    manifest = Manifest("synthetic-loc", records, names, "localization")
    out.mkdir(parents=True, exist_ok=True)
    manifest.write(out / "manifest.jsonl")
    manifest = Manifest.read(out / "manifest.jsonl")
    spec = FeatureSpec(
        name=f"synthetic-snippets-{cfg.dim}",
        backbone="synthetic",
        weights={"name": "none"},
        sampling={"kind": "snippets", "step_seconds": cfg.step_seconds},
        fields={"features": FieldSpec((cfg.dim,), "float16")},
        extra={"config": {k: v for k, v in cfg.__dict__.items()}},
    )
    store = FeatureStore.create(out / "store.zarr", spec, manifest_sha256=manifest.sha256, dataset="synthetic-loc")
    if any(r.video_id not in store for r in records):
        with store.writer(manifest_sha256=manifest.sha256) as w:
            for r, (x, _) in zip(records, videos, strict=True):
                if r.video_id in store:
                    continue
                spans = np.stack([np.arange(len(x)), np.arange(1, len(x) + 1)], axis=1) * cfg.step_seconds
                w.write(r.video_id, x, spans=spans, fps=1 / cfg.step_seconds, num_frames=len(x), duration=len(x) * cfg.step_seconds)
    return manifest, FeatureStore.open(out / "store.zarr")
