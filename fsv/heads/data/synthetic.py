"""A synthetic few-shot benchmark in which temporal order and misalignment matter.

Every class performs the same ``subactions`` shared sub-actions, in a class-specific order (the
classes are distinct permutations), so a video's time-averaged features carry no class information
and an order-blind head (ProtoNet) stays near chance. Each video starts after a random offset of
background, gives its sub-actions random durations (speed varies) and ends with background; each
sub-action appears as a feature pattern at a random position of the 7x7 grid, in noise. Features
are written as ResNet-50-like grids ``[8, D, 7, 7]`` into a real store with a manifest, so the
benchmark runs the same loader, trainer and evaluation as real data.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsv.pipeline.manifests import Manifest, VideoRecord
from fsv.pipeline.spec import FeatureSpec, FieldSpec
from fsv.pipeline.store import FeatureStore


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and difficulty of the benchmark (defaults: a few seconds to write, tens of MB)."""

    dim: int = 64
    frames: int = 8
    subactions: int = 4
    classes: tuple[int, int, int] = (12, 6, 6)  # train / val / test
    videos_per_class: int = 20
    noise: float = 0.5
    max_offset: float = 0.25
    seed: int = 0


def _video(rng: np.random.Generator, order: tuple[int, ...], protos: np.ndarray, cfg: SyntheticConfig) -> np.ndarray:
    """``[frames, dim, 7, 7]`` float32 of one video of the class with sub-action ``order``."""
    start = rng.uniform(0, cfg.max_offset)
    end = 1.0 - rng.uniform(0, cfg.max_offset)
    weights = rng.uniform(0.5, 1.5, len(order))
    bounds = start + np.concatenate([[0], np.cumsum(weights) / weights.sum()]) * (end - start)
    t = (np.arange(cfg.frames) + 0.5) / cfg.frames
    x = rng.normal(0, cfg.noise, (cfg.frames, cfg.dim, 7, 7)).astype(np.float32)
    cy, cx = rng.integers(1, 6, 2)
    yy, xx = np.mgrid[0:7, 0:7]
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2.0).astype(np.float32)
    for f, tf in enumerate(t):
        k = np.searchsorted(bounds, tf, side="right") - 1
        if 0 <= k < len(order):
            x[f] += protos[order[k]][:, None, None] * blob
    return np.maximum(x, 0.0)  # post-ReLU, like layer4 grids


def write_synthetic(out: Path, cfg: SyntheticConfig = SyntheticConfig()) -> tuple[Manifest, FeatureStore]:
    """Write ``out/manifest.jsonl`` and the store ``out/store.zarr`` (resumes an existing store)."""
    rng = np.random.default_rng(cfg.seed)
    protos = rng.normal(0, 1, (cfg.subactions, cfg.dim)).astype(np.float32) * 2.0
    orders = list(itertools.permutations(range(cfg.subactions)))
    total = sum(cfg.classes)
    if total > len(orders):
        raise ValueError(f"{cfg.subactions} sub-actions give {len(orders)} orders, fewer than {total} classes")
    chosen = [orders[i] for i in rng.permutation(len(orders))[:total]]
    splits = ["train"] * cfg.classes[0] + ["val"] * cfg.classes[1] + ["test"] * cfg.classes[2]
    names = [f"order_{''.join(map(str, o))}" for o in chosen]
    records = [
        VideoRecord(f"{name}_{k:03d}", f"{name}/{k:03d}", name, split, fps=8.0, num_frames=cfg.frames, duration=1.0)
        for name, split in zip(names, splits, strict=True)
        for k in range(cfg.videos_per_class)
    ]
    manifest = Manifest("synthetic", records, names, "fewshot")
    out.mkdir(parents=True, exist_ok=True)
    manifest.write(out / "manifest.jsonl")
    manifest = Manifest.read(out / "manifest.jsonl")
    spec = FeatureSpec(
        name=f"synthetic-grid-{cfg.dim}",
        backbone="synthetic",
        weights={"name": "none"},
        sampling={"kind": "tsn", "num_segments": cfg.frames, "mode": "center"},
        fields={"grid": FieldSpec((cfg.dim, 7, 7), "float16")},
        extra={"config": {k: v for k, v in cfg.__dict__.items()}},
    )
    store = FeatureStore.create(out / "store.zarr", spec, manifest_sha256=manifest.sha256, dataset="synthetic")
    todo = [r for r in records if r.video_id not in store]
    if todo:
        spans = np.stack([np.arange(cfg.frames), np.arange(1, cfg.frames + 1)], axis=1) / cfg.frames
        with store.writer(manifest_sha256=manifest.sha256) as w:
            for i, r in enumerate(records):
                if r.video_id in store:
                    continue
                order = chosen[names.index(r.label)]
                x = _video(np.random.default_rng([cfg.seed, i]), order, protos, cfg)
                w.write(r.video_id, x, spans=spans, fps=8.0, num_frames=cfg.frames, duration=1.0)
    return manifest, FeatureStore.open(out / "store.zarr")
