"""Few-shot common action localization episodes (Yang et al. 2020; CDC-CA, ICCV 2023, Sec. 4.1).

An episode is a query video and ``L`` trimmed support instances of one action class taken from
other videos; the task is to localize that class's instances in the query. Classes are split
80/10/10 into train/val/test by a fixed seed, so test classes are never seen in training.

* ``single`` instance: every action instance becomes a query of its own, cut from the end of the
  previous instance to the start of the next one in its video (one instance plus background);
  queries longer than ``max_query_frames`` frames (at ``frame_fps``) are dropped, as in the paper.
* ``multi`` instance: the query is the whole untrimmed video, with every instance of the class as
  ground truth (instances of other classes are background).

Training episode ``i`` depends only on ``(seed, i)``; val and test episodes are fixed by the class
split seed. Times are seconds throughout; :func:`episode_tensors` turns an episode into step
coordinates of the stored features.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from fsv.files import atomic_path, write_text_atomic
from fsv.errors import FsvInputError
from fsv.heads.data.videos import VideoBank, to_steps
from fsv.pipeline.manifests import Manifest

log = logging.getLogger(__name__)

COMMON = "common"


@dataclass(frozen=True)
class Instance:
    """One annotated action instance (seconds)."""

    video: str
    start: float
    end: float
    label: str


@dataclass(frozen=True)
class CommonEpisode:
    """A query window ``[window[0], window[1]]`` of ``video`` with ground truth ``gt`` (absolute
    seconds) and supports ``(video, start, end)``; ``leak`` marks episodes with a support cut from the
    query video itself (imported benchmarks only)."""

    key: str
    label: str
    video: str
    window: tuple[float, float]
    gt: tuple[tuple[float, float], ...]
    supports: tuple[tuple[str, float, float], ...]
    leak: bool = False

    def to_json(self) -> dict:
        return asdict(self)


def class_split(classes: Sequence[str], seed: int, test_classes: Sequence[str] | None = None) -> dict[str, str]:
    """class -> ``train``/``val``/``test``: 80/10/10 by a seeded permutation of the sorted classes
    (at least one class each when there are 3 or more). With ``test_classes`` (an imported
    benchmark's) those are the test classes and the rest split 8:1 into train and val."""
    names = sorted(classes)
    if test_classes is not None:
        fixed = set(test_classes)
        rest = [c for c in names if c not in fixed]
        order = [rest[i] for i in np.random.default_rng(seed).permutation(len(rest))]
        n_val = max(1, round(len(rest) / 9))
        return {
            **{c: "val" for c in order[:n_val]},
            **{c: "train" for c in order[n_val:]},
            **{c: "test" for c in fixed},
        }
    if len(names) < 3:
        raise FsvInputError(
            f"few-shot common localization splits classes 80/10/10 and needs at least 3 classes, got {len(names)}"
        )
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    n_val = n_test = max(1, round(0.1 * len(names)))
    return {
        **{c: "test" for c in order[:n_test]},
        **{c: "val" for c in order[n_test : n_test + n_val]},
        **{c: "train" for c in order[n_test + n_val :]},
    }


def manifest_instances(manifest: Manifest, available: set[str]) -> list[Instance]:
    """Every annotated instance of the videos with features, clipped to the video's duration."""
    out = []
    for r in manifest:
        if r.video_id not in available:
            continue
        for s in r.segments:
            end = min(s.end, r.duration) if r.duration else s.end
            if end > s.start:
                out.append(Instance(r.video_id, s.start, end, s.label))
    return out


@dataclass(frozen=True)
class Query:
    """A query candidate: window and the ground truth of its class inside it."""

    label: str
    video: str
    window: tuple[float, float]
    gt: tuple[tuple[float, float], ...]


def make_queries(
    instances: Sequence[Instance], durations: dict[str, float], mode: str, max_seconds: float
) -> list[Query]:
    """Single-instance: one query per instance (previous instance's end to next one's start);
    multi-instance: one query per (video, class). ``max_seconds`` drops longer single queries."""
    by_video: dict[str, list[Instance]] = defaultdict(list)
    for inst in instances:
        by_video[inst.video].append(inst)
    queries = []
    dropped = 0
    for video, items in sorted(by_video.items()):
        items.sort(key=lambda x: (x.start, x.end))
        duration = durations[video]
        if mode == "multi":
            for label in sorted({i.label for i in items}):
                queries.append(
                    Query(label, video, (0.0, duration), tuple((i.start, i.end) for i in items if i.label == label))
                )
            continue
        for k, inst in enumerate(items):
            lo = max((i.end for i in items[:k] if i.end <= inst.start), default=0.0)
            hi = min((i.start for i in items[k + 1 :] if i.start >= inst.end), default=duration)
            overlapping = [i for j, i in enumerate(items) if j != k and i.start < inst.end and i.end > inst.start]
            if overlapping:
                dropped += 1
                continue
            if hi - lo > max_seconds:
                dropped += 1
                continue
            queries.append(Query(inst.label, video, (lo, hi), ((inst.start, inst.end),)))
    if dropped:
        log.info(
            "%d single-instance queries dropped (longer than %.0f s, or overlapping another instance)",
            dropped,
            max_seconds,
        )
    return queries


class CommonEpisodes:
    """Episodes of one class split (``train``, ``val`` or ``test``)."""

    def __init__(
        self, queries: Sequence[Query], instances: Sequence[Instance], classes: set[str], shot: int, split: str
    ) -> None:
        self.shot = shot
        self.split = split
        self.supports: dict[str, list[Instance]] = defaultdict(list)
        for inst in instances:
            if inst.label in classes:
                self.supports[inst.label].append(inst)
        usable = []
        for q in queries:
            if q.label in classes and sum(i.video != q.video for i in self.supports[q.label]) >= shot:
                usable.append(q)
        if not usable:
            raise FsvInputError(
                f"no {split} query has {shot} support instances of its class in other videos; "
                f"{split} classes: {len(classes)}, instances: {sum(len(v) for v in self.supports.values())}"
            )
        self.by_class: dict[str, list[Query]] = defaultdict(list)
        for q in usable:
            self.by_class[q.label].append(q)
        self.classes = sorted(self.by_class)

    def episode(self, rng: np.random.Generator, key: str) -> CommonEpisode:
        """A random class, one of its queries and ``shot`` supports from other videos."""
        label = self.classes[int(rng.integers(len(self.classes)))]
        queries = self.by_class[label]
        q = queries[int(rng.integers(len(queries)))]
        pool = [i for i in self.supports[label] if i.video != q.video]
        picks = rng.choice(len(pool), self.shot, replace=False)
        sup = tuple((pool[k].video, pool[k].start, pool[k].end) for k in picks)
        return CommonEpisode(key, label, q.video, q.window, q.gt, sup)

    def fixed(self, count: int, seed: int) -> list[CommonEpisode]:
        """``count`` episodes fixed by ``seed`` (the same for every run with this class split)."""
        return [self.episode(np.random.default_rng([seed, i, 7]), f"{self.split}{i:05d}") for i in range(count)]


def kmeans(x: np.ndarray, k: int, seed: int, iterations: int = 50) -> np.ndarray:
    """Cluster ids ``[N]`` of ``x`` ``[N, D]`` by Lloyd's k-means with k-means++ seeding."""
    rng = np.random.default_rng(seed)
    x = x.astype(np.float64)
    k = min(k, len(x))
    centres = [x[rng.integers(len(x))]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1 / len(x))
        centres.append(x[rng.choice(len(x), p=p)])
        d2 = np.minimum(d2, ((x - centres[-1]) ** 2).sum(1))
    c = np.stack(centres)
    assign = np.zeros(len(x), dtype=np.int64)
    for it in range(iterations):
        dist = (x**2).sum(1)[:, None] - 2 * x @ c.T + (c**2).sum(1)[None]
        new = dist.argmin(1)
        if it and (new == assign).all():
            break
        assign = new
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c[j] = members.mean(0)
    return assign


def instance_feature(bank: VideoBank, video: str, start: float, end: float) -> np.ndarray:
    """Mean backbone feature ``[D]`` float32 of the steps covering ``[start, end]``."""
    i0, i1 = step_range(bank, video, start, end)
    return bank.features(video)[i0:i1].astype(np.float32).mean(0)


def pseudo_classes(
    bank: VideoBank, instances: Sequence[Instance], k: int, seed: int
) -> dict[tuple[str, float, float], int]:
    """Pseudo action class of each training instance: k-means (``k``, CDC-CA uses 160) over the
    instances' mean backbone features (Sec. 3.3)."""
    if not instances:
        return {}
    feats = np.stack([instance_feature(bank, i.video, i.start, i.end) for i in instances])
    ids = kmeans(feats, k, seed)
    return {(i.video, i.start, i.end): int(c) for i, c in zip(instances, ids, strict=True)}


def step_range(bank: VideoBank, video: str, start: float, end: float) -> tuple[int, int]:
    """Steps ``[i0, i1)`` overlapping ``[start, end]`` seconds (at least one step)."""
    spans = bank.step_spans(video)
    i0 = int(np.searchsorted(spans[:, 1], start, side="right"))
    i1 = int(np.searchsorted(spans[:, 0], end, side="left"))
    i0 = min(i0, len(spans) - 1)
    return i0, max(i1, i0 + 1)


def support_snippets(x: np.ndarray, n: int) -> np.ndarray:
    """A trimmed instance's steps ``[T, D]`` split uniformly into ``n`` snippets, each the mean of
    its steps (steps repeat when ``T < n``) -> ``[n, D]`` float32."""
    t = len(x)
    edges = np.linspace(0, t, n + 1)
    out = np.empty((n, x.shape[1]), dtype=np.float32)
    for j in range(n):
        lo = int(np.floor(edges[j]))
        hi = max(int(np.ceil(edges[j + 1])), lo + 1)
        out[j] = x[lo : min(hi, t)].astype(np.float32).mean(0)
    return out


@dataclass(frozen=True)
class Standardizer:
    """Per-dimension standardization of snippet features: ``(x - mean) / std``, ``mean`` and ``std``
    ``[D]`` float32 (``std`` floored at 1e-6 of its largest value, for constant dimensions)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, bank: VideoBank, videos: Sequence[str]) -> "Standardizer":
        """Mean and standard deviation of every step of ``videos`` (the caller's: the videos that hold
        training-class instances; no label is read, and a video holding only val or test classes is
        not), accumulated in float64 one video at a time."""
        if not videos:
            raise FsvInputError("feature standardization needs training videos with features")
        total, square = np.zeros(bank.dim), np.zeros(bank.dim)
        count = 0
        for video in videos:
            x = bank.features(video).astype(np.float64)
            total += x.sum(0)
            square += (x * x).sum(0)
            count += len(x)
        mean = total / count
        std = np.sqrt(np.maximum(square / count - mean * mean, 0.0))
        return cls(mean.astype(np.float32), np.maximum(std, 1e-6 * max(float(std.max()), 1e-12)).astype(np.float32))

    @classmethod
    def for_run(cls, bank: VideoBank, videos: Sequence[str], cache: Path | None) -> "Standardizer":
        """The statistics a run trains with: read from ``cache/standardize.npz`` when the run has
        written them (eval, predict and resumed training read the training's statistics, whatever
        the store holds by then), else fitted on ``videos`` and written there."""
        file = cache / "standardize.npz" if cache is not None else None
        if file is not None and file.is_file():
            try:
                with np.load(file, allow_pickle=False) as saved:
                    stats = cls(saved["mean"].astype(np.float32), saved["std"].astype(np.float32))
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
                raise FsvInputError(
                    f"{file}: unreadable standardization statistics ({type(e).__name__}); delete it and train the run again"
                ) from None
            if stats.mean.shape != (bank.dim,):
                raise FsvInputError(
                    f"{file} holds statistics of {stats.mean.shape[0]} features, the store's have {bank.dim}; this run was trained on other features"
                )
            return stats
        stats = cls.fit(bank, videos)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(file) as tmp:
                np.savez(tmp, mean=stats.mean, std=stats.std)
        return stats

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x [..., D]`` -> standardized float32."""
        return (x.astype(np.float32) - self.mean) / self.std


@dataclass
class CommonEpisodeTensors:
    """``query`` ``[T, D]``, ``supports`` ``[L, N_S, D]`` (float32), ``gt`` ``[G, 2]`` in query step
    coordinates, ``offset`` the query's first step in its video, ``pseudo`` ``[k]`` multi-hot or None,
    ``distractors`` ``[G', 2]`` the query's instances of other classes (step coordinates)."""

    query: torch.Tensor
    supports: torch.Tensor
    gt: torch.Tensor
    offset: int
    pseudo: torch.Tensor | None
    distractors: torch.Tensor


def episode_tensors(
    bank: VideoBank,
    ep: CommonEpisode,
    num_snippets: int,
    *,
    crop_steps: int | None = None,
    rng: np.random.Generator | None = None,
    pseudo: dict[tuple[str, float, float], int] | None = None,
    num_pseudo: int = 0,
    others: Sequence[tuple[float, float]] = (),
    standardize: Standardizer | None = None,
) -> CommonEpisodeTensors:
    """Features of an episode. With ``crop_steps`` (training) a query longer than that is cropped to
    a random window of ``crop_steps`` steps around one of its ground-truth instances. ``others``: the
    query video's instances of other classes (seconds), kept where they overlap the query.
    ``standardize``: applied to the query's and the supports' steps (before the supports' snippets
    are averaged)."""
    scale = standardize if standardize is not None else (lambda x: x.astype(np.float32))
    i0, i1 = step_range(bank, ep.video, *ep.window)
    spans = bank.step_spans(ep.video)
    gt = to_steps(np.asarray(ep.gt, dtype=np.float64).reshape(-1, 2), spans)
    distractors = to_steps(np.asarray(others, dtype=np.float64).reshape(-1, 2), spans)
    if crop_steps is not None and i1 - i0 > crop_steps and rng is not None:
        g = gt[int(rng.integers(len(gt)))]
        lo = int(np.clip(np.ceil(g[1]) - crop_steps, i0, i1 - crop_steps))
        hi = int(np.clip(np.floor(g[0]), lo, i1 - crop_steps))
        i0 = int(rng.integers(lo, hi + 1))
        i1 = i0 + crop_steps
    gt = np.clip(gt - i0, 0, i1 - i0)
    gt = gt[gt[:, 1] - gt[:, 0] > 1e-6]
    distractors = np.clip(distractors - i0, 0, i1 - i0)
    distractors = distractors[distractors[:, 1] - distractors[:, 0] > 1e-6]
    query = torch.from_numpy(scale(bank.features(ep.video)[i0:i1]))
    sups = []
    for video, s, e in ep.supports:
        a, b = step_range(bank, video, s, e)
        sups.append(support_snippets(scale(bank.features(video)[a:b]), num_snippets))
    hot = None
    if pseudo is not None and num_pseudo:
        hot = torch.zeros(num_pseudo)
        for video, s, e in ep.supports:
            if (video, s, e) in pseudo:
                hot[pseudo[(video, s, e)]] = 1.0
    return CommonEpisodeTensors(
        query,
        torch.from_numpy(np.stack(sups)),
        torch.from_numpy(gt.astype(np.float32)),
        i0,
        hot,
        torch.from_numpy(distractors.astype(np.float32)),
    )


def write_episodes(path: Path, episodes: Sequence[CommonEpisode]) -> None:
    """Episodes as JSON lines (for inspection and for other tools)."""
    write_text_atomic(path, "".join(json.dumps(e.to_json()) + "\n" for e in episodes))
