"""Synthetic untrimmed videos with planted action instances, for localization tests and demos.

Every step of a video is background noise; an instance of class ``c`` adds the class's feature
pattern (scaled by ``amplitude``) plus a pattern shared by all classes (scaled by ``shared``: what
makes an action an action, like motion in real features, so class-agnostic actionness can transfer
to unseen classes) to its steps, ramped at the edges. Each video holds 1-3 instances of one or two
classes. The features are ``[T, dim]`` snippet features (half "RGB", half "flow" for two-stream
heads) with real time spans, written into a real store with a ``localization`` manifest (train /
val / test videos), so the heads run the same loaders, trainers, predictors and evaluation as on
real data.

A family of distributions, for testing what was not tuned on (:data:`SUPPORT_GRID`):

* ``amplitude`` against ``shared``: how much of an instance tells its class apart, against what
  every action shares (in real C3D / I3D features the second can dominate);
* ``phases``: a class's pattern is one random direction (1) or changes over the instance, blended
  between ``phases`` directions from its start to its end (3: start, middle, end), as an action's
  appearance and motion do;
* ``drift``: the share of the background's variance that drifts slowly (a per-dimension AR(1)
  process with correlation time ``drift_steps``) instead of being white noise;
* ``render``: ``linear`` adds the parts as above; ``relu`` passes that latent signal through a fixed
  random linear map and a ReLU (non-negative, entangled features like a CNN's post-ReLU ``fc``
  layers: every feature vector then shares a positive mean, and class identity is no single
  direction), a second generator for held-out checks.

Every direction has norm ``sqrt(dim)``; the defaults (1 phase, no drift, linear) are the original
generator, draw for draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsv.errors import FsvInputError
from fsv.heads.data.benchmark import write_benchmark
from fsv.heads.data.common_episodes import CommonEpisode
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
    phases: int = 1  # directions a class's pattern blends between over an instance (1: constant)
    drift: float = 0.0  # share of the background variance that drifts slowly (0: white noise)
    drift_steps: float = 8.0  # correlation time of the drift, in steps
    render: str = "linear"  # ``linear`` or ``relu`` (a fixed random map and a ReLU over the latent signal)

    def __post_init__(self) -> None:
        if self.phases < 1:
            raise FsvInputError(f"phases must be at least 1, got {self.phases}")
        if not 0.0 <= self.drift <= 1.0 or self.drift_steps <= 0:
            raise FsvInputError(
                f"drift must be in [0, 1] and drift_steps positive, got {self.drift}, {self.drift_steps}"
            )
        if self.render not in ("linear", "relu"):
            raise FsvInputError(f"render must be linear or relu, got {self.render!r}")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of ``x [..., dim]`` scaled to norm ``sqrt(dim)``."""
    return (x * (np.sqrt(x.shape[-1]) / np.linalg.norm(x, axis=-1, keepdims=True))).astype(x.dtype)


def _pattern(phases: np.ndarray, n: int) -> np.ndarray:
    """A class's pattern over an ``n``-step instance ``[n, dim]``: its ``phases [K, dim]`` directions
    placed at the centres of ``K`` equal parts of the instance, linearly blended between them (the
    first and last held at the edges), each step renormalised to norm ``sqrt(dim)``."""
    if len(phases) == 1:
        return np.broadcast_to(phases[0], (n, phases.shape[1]))
    u = (np.arange(n) + 0.5) / n * len(phases) - 0.5  # position in phase units
    lo = np.clip(np.floor(u), 0, len(phases) - 1).astype(np.int64)
    hi = np.minimum(lo + 1, len(phases) - 1)
    w = np.clip(u - lo, 0.0, 1.0)[:, None]
    return _unit_rows((1 - w) * phases[lo] + w * phases[hi]).astype(np.float32)


def _background(rng: np.random.Generator, cfg: "LocSyntheticConfig", t: int) -> np.ndarray:
    """``[t, dim]`` background of standard deviation ``noise``: white, or with a ``drift`` share of
    its variance in a stationary AR(1) process of correlation time ``drift_steps``."""
    x = rng.normal(0, cfg.noise, (t, cfg.dim)).astype(np.float32)
    if not cfg.drift:
        return x
    rho = float(np.exp(-1.0 / cfg.drift_steps))
    shocks = rng.normal(0, cfg.noise, (t, cfg.dim))
    slow = np.empty_like(shocks)
    slow[0] = shocks[0]
    for k in range(1, t):
        slow[k] = rho * slow[k - 1] + np.sqrt(1 - rho**2) * shocks[k]
    return (np.sqrt(1 - cfg.drift) * x + np.sqrt(cfg.drift) * slow).astype(np.float32)


def _video(
    rng: np.random.Generator, protos: np.ndarray, common: np.ndarray, cfg: LocSyntheticConfig, pool: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """``[T, dim]`` float32 latent features and the planted ``(start_step, end_step, class)``
    instances, of classes drawn from ``pool``; ``protos [C, phases, dim]``."""
    t = int(rng.integers(cfg.steps[0], cfg.steps[1] + 1))
    x = _background(rng, cfg, t)
    labels = rng.choice(pool, int(rng.integers(cfg.classes_per_video[0], cfg.classes_per_video[1] + 1)), replace=False)
    planted: list[tuple[int, int, int]] = []
    for k in range(int(rng.integers(cfg.instances[0], cfg.instances[1] + 1))):
        n = int(rng.integers(cfg.instance_steps[0], cfg.instance_steps[1] + 1))
        for _attempt in range(20):
            s = int(rng.integers(0, t - n + 1))
            if all(s + n + 2 <= a or s >= b + 2 for a, b, _ in planted):
                c = int(labels[k]) if cfg.every_class and k < len(labels) else int(rng.choice(labels))
                ramp = np.minimum(1.0, np.minimum(np.arange(1, n + 1), np.arange(n, 0, -1)) / 2.0)
                x[s : s + n] += ramp[:, None] * (cfg.amplitude * _pattern(protos[c], n) + cfg.shared * common[None])
                planted.append((s, s + n, c))
                break
    return x, sorted(planted)


def write_synthetic_localization(
    out: Path, cfg: LocSyntheticConfig = LocSyntheticConfig()
) -> tuple[Manifest, FeatureStore]:
    """Write ``out/manifest.jsonl`` and ``out/store.zarr`` (resumes an existing store)."""
    rng = np.random.default_rng(cfg.seed)
    first = _unit_rows(rng.normal(0, 1, (cfg.classes, 1, cfg.dim)).astype(np.float32))
    common = _unit_rows(rng.normal(0, 1, cfg.dim).astype(np.float32))
    later = _unit_rows(rng.normal(0, 1, (cfg.classes, cfg.phases - 1, cfg.dim)).astype(np.float32))
    protos = np.concatenate([first, later], axis=1)  # [C, phases, dim]
    render = (
        (_unit_rows(rng.normal(0, 1, (cfg.dim, cfg.dim))) / np.sqrt(cfg.dim)).astype(np.float32)
        if cfg.render == "relu"
        else None
    )
    names = [f"action_{k:02d}" for k in range(cfg.classes)]
    splits = ["train"] * cfg.videos[0] + ["val"] * cfg.videos[1] + ["test"] * cfg.videos[2]
    everyone, group = np.arange(cfg.classes), np.arange(cfg.held_out)
    rest = everyone[cfg.held_out :]
    pools = [everyone if not cfg.held_out else group if split == "test" else rest for split in splits]
    videos = [_video(np.random.default_rng([cfg.seed, i]), protos, common, cfg, pool) for i, pool in enumerate(pools)]
    if render is not None:  # rows of ``render`` have unit norm: each output is a unit projection of the latent step
        videos = [(np.maximum(x @ render.T, 0.0).astype(np.float32), planted) for x, planted in videos]
    records = []
    for i, (split, (x, planted)) in enumerate(zip(splits, videos, strict=True)):
        segs = tuple(Segment(s * cfg.step_seconds, e * cfg.step_seconds, names[c]) for s, e, c in planted)
        label = "|".join(sorted({names[c] for _, _, c in planted}))
        records.append(
            VideoRecord(
                f"loc_{i:04d}",
                f"videos/loc_{i:04d}.mp4",
                label,
                split,
                fps=1 / cfg.step_seconds,
                num_frames=len(x),
                duration=len(x) * cfg.step_seconds,
                segments=segs,
            )
        )
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
                w.write(
                    r.video_id,
                    x,
                    spans=spans,
                    fps=1 / cfg.step_seconds,
                    num_frames=len(x),
                    duration=len(x) * cfg.step_seconds,
                )
    return manifest, FeatureStore.open(out / "store.zarr")


SUPPORT_CONTROL = LocSyntheticConfig(
    classes=40, held_out=6, classes_per_video=(2, 2), instances=(2, 4), every_class=True
)
"""The support-control data: 40 classes, 6 of them only in the 60 test videos, every video holding
instances of two classes (so every query has a distractor)."""

SIZES = {"large": (240, 40, 60), "small": (80, 20, 60)}
"""Train / val / test videos of the grid's two dataset sizes (about 14 and 5 training videos per
class); the 60 test videos give 120 episodes per support set either way."""


def grid_cell(
    amplitude: float, phased: bool, drift: bool, size: str, *, render: str = "linear", seed: int = 0
) -> tuple[str, LocSyntheticConfig]:
    """One cell of the support-control family: :data:`SUPPORT_CONTROL` with the class ``amplitude``
    (the shared actionness stays 1), 3 phases or a constant pattern, half the background variance
    drifting (correlation time 8 steps) or white noise, and a dataset ``size`` of :data:`SIZES`
    -> (name such as ``a0.5-phased-drift-small``, configuration)."""
    name = f"a{amplitude:g}-{'phased' if phased else 'const'}-{'drift' if drift else 'white'}-{size}" + (
        "" if render == "linear" else f"-{render}"
    )
    if seed:
        name += f"-s{seed}"
    cfg = LocSyntheticConfig(
        classes=SUPPORT_CONTROL.classes,
        held_out=SUPPORT_CONTROL.held_out,
        classes_per_video=SUPPORT_CONTROL.classes_per_video,
        instances=SUPPORT_CONTROL.instances,
        every_class=True,
        amplitude=amplitude,
        phases=3 if phased else 1,
        drift=0.5 if drift else 0.0,
        videos=SIZES[size],
        render=render,
        seed=seed,
    )
    return name, cfg


SUPPORT_GRID = dict(
    grid_cell(a, p, d, z) for a in (0.5, 1.0, 1.5) for p in (False, True) for d in (False, True) for z in SIZES
)
"""The support-control family (24 cells): class amplitude 0.5 / 1 / 1.5 of the shared actionness,
constant or phased class patterns, white or drifting background, large or small datasets.
``a1.5-const-white-large`` is :data:`SUPPORT_CONTROL` itself."""

HELD_OUT = dict(grid_cell(a, True, True, "small", render="relu", seed=7) for a in (0.75, 1.0))
"""Cells kept out of every tuning decision: the second (``relu``) generator, phased patterns over a
drifting background, small datasets, class amplitudes 0.75 and 1 and another seed."""

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
    test = [r for r in manifest if r.split == "test" and len({s.label for s in r.segments}) == 2]
    by_class: dict[str, list[tuple[str, float, float]]] = {}
    for r in test:
        for s in r.segments:
            by_class.setdefault(s.label, []).append((r.video_id, s.start, s.end))
    classes = sorted(by_class)
    if len(classes) < 3:
        raise FsvInputError(
            f"{manifest.path or manifest.dataset}: support control needs test videos holding two classes, of at least 3 "
            f"classes in all; got {classes}"
        )
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
                episodes[control].append(
                    CommonEpisode(key, label, r.video_id, window, gt, pick(support_class, r.video_id))
                )
    fps = float(test[0].fps or 1.0)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for control, eps in episodes.items():
        files[control] = out / f"{control}.json"
        write_benchmark(
            files[control],
            eps,
            fps,
            f"synthetic support control ({control} supports): multi-instance queries holding two classes",
        )
    return files
