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

from fsv.errors import FsvInputError
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
    classes_per_video: tuple[int, int] = (1, 2)
    instances: tuple[int, int] = (1, 3)
    every_class: bool = False  # each of a video's classes gets at least one instance (when room allows)
    held_out: int = 0  # the first ``held_out`` classes appear only in the test videos (a benchmark group)


def _video(rng: np.random.Generator, protos: np.ndarray, common: np.ndarray, cfg: LocSyntheticConfig,
           pool: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """``[T, dim]`` float32 features and the planted ``(start_step, end_step, class)`` instances, of
    classes drawn from ``pool``."""
    t = int(rng.integers(cfg.steps[0], cfg.steps[1] + 1))
    x = rng.normal(0, cfg.noise, (t, cfg.dim)).astype(np.float32)
    labels = rng.choice(pool, int(rng.integers(cfg.classes_per_video[0], cfg.classes_per_video[1] + 1)), replace=False)
    planted: list[tuple[int, int, int]] = []
    for k in range(int(rng.integers(cfg.instances[0], cfg.instances[1] + 1))):
        n = int(rng.integers(cfg.instance_steps[0], cfg.instance_steps[1] + 1))
        for _attempt in range(20):
            s = int(rng.integers(0, t - n + 1))
            if all(s + n + 2 <= a or s >= b + 2 for a, b, _ in planted):
                c = int(labels[k]) if cfg.every_class and k < len(labels) else int(rng.choice(labels))
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
    everyone, group = np.arange(cfg.classes), np.arange(cfg.held_out)
    rest = everyone[cfg.held_out:]
    pools = [everyone if not cfg.held_out else group if split == "test" else rest for split in splits]
    videos = [_video(np.random.default_rng([cfg.seed, i]), protos, common, cfg, pool) for i, pool in enumerate(pools)]
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


SUPPORT_CONTROL = LocSyntheticConfig(classes=40, held_out=6, classes_per_video=(2, 2), instances=(2, 4), every_class=True)
"""The support-control data: 40 classes, 6 of them only in the 60 test videos, every video holding
instances of two classes (so every query has a distractor)."""

CONTROLS = ("own", "distractor", "absent")
"""The three support sets of the support-control episodes (:func:`write_support_control`)."""


def write_support_control(out: Path, manifest: Manifest, *, supports: int = 5, seed: int = 0) -> dict[str, Path]:
    """Fixed multi-instance episodes over the manifest's ``test`` videos that hold two classes, written
    as three benchmark files (``out/<control>.json``, the layout ``fsv eval --benchmark`` reads) that
    differ only in their supports: ``own`` (the episode class's instances from other videos),
    ``distractor`` (the other class *in the query*) and ``absent`` (a test class not in the query).
    Each video gives one episode per class; the ground truth is always the episode class's
    instances, so a head that follows its supports scores far higher with ``own`` than with either
    control. -> control -> file."""
    from fsv.localization.benchmark import write_benchmark
    from fsv.localization.common import CommonEpisode

    test = [r for r in manifest if r.split == "test" and len({s.label for s in r.segments}) == 2]
    by_class: dict[str, list[tuple[str, float, float]]] = {}
    for r in test:
        for s in r.segments:
            by_class.setdefault(s.label, []).append((r.video_id, s.start, s.end))
    classes = sorted(by_class)
    if len(classes) < 3:
        raise FsvInputError(f"{manifest.path or manifest.dataset}: support control needs test videos holding two classes, of at least 3 "
                            f"classes in all; got {classes}")
    rng = np.random.default_rng(seed)

    def pick(label: str, video: str) -> tuple[tuple[str, float, float], ...]:
        pool = [i for i in by_class[label] if i[0] != video]
        return tuple(pool[k] for k in rng.choice(len(pool), supports, replace=len(pool) < supports))

    episodes: dict[str, list[CommonEpisode]] = {c: [] for c in CONTROLS}
    for r in test:
        present = sorted({s.label for s in r.segments})
        for label in present:
            other = present[1 - present.index(label)]
            absent = [c for c in classes if c not in present][int(rng.integers(len(classes) - 2))]
            gt = tuple((s.start, s.end) for s in r.segments if s.label == label)
            window = (0.0, float(r.duration))
            for control, support_class in zip(CONTROLS, (label, other, absent), strict=True):
                key = f"{control}{len(episodes[control]):05d}"
                episodes[control].append(CommonEpisode(key, label, r.video_id, window, gt, pick(support_class, r.video_id)))
    fps = float(test[0].fps or 1.0)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for control, eps in episodes.items():
        files[control] = out / f"{control}.json"
        write_benchmark(files[control], eps, fps, f"synthetic support control ({control} supports): multi-instance queries holding two classes")
    return files
