"""Untrimmed videos' snippet features with their time spans and annotations, read from stores.

A :class:`VideoBank` holds the features of many videos packed in one ``[sum T_i, D]`` float16 array
(several stores, e.g. I3D RGB and flow, concatenated along ``D``), the time span of each step in
seconds ``[sum T_i, 2]`` and each video's manifest record. Step coordinates are the bridge between
heads (which work in steps) and annotations (seconds): :func:`to_steps` and :func:`to_seconds`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsv.errors import FsvInputError
from fsv.pipeline.manifests import Manifest, VideoRecord
from fsv.pipeline.store import FeatureStore

log = logging.getLogger(__name__)

MMAP_ABOVE_BYTES = 2 << 30


@dataclass
class VideoBank:
    """``data`` ``[N, D]`` float16 (all videos' steps back to back), ``spans`` ``[N, 2]`` seconds,
    ``offsets``/``lengths`` ``[V]`` per video, ``records`` the videos' manifest rows."""

    data: np.ndarray
    spans: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    records: list[VideoRecord]

    def __post_init__(self) -> None:
        self.index = {r.video_id: i for i, r in enumerate(self.records)}

    @classmethod
    def load(
        cls, stores: Sequence[FeatureStore], records: Sequence[VideoRecord], *, cache: Path | None = None
    ) -> "VideoBank":
        """Read ``records``' videos from every store in one pass each. Stores are concatenated along
        the feature axis; when their step counts differ (flow has one pair fewer) each video keeps
        the shorter count and the first store's spans. With ``cache`` a bank larger than 2 GiB is
        written there as ``.npy`` and memory-mapped."""
        records = list(records)
        ids = [r.video_id for r in records]
        missing = sorted({v for s in stores for v in ids if v not in s})
        if missing:
            raise FsvInputError(
                f"{len(missing)} videos have no features in the store(s), e.g. {missing[:3]}; run fsv extract (or --retry-failed) first"
            )
        packs = []
        tag = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:12]
        for k, store in enumerate(stores):
            field = store.spec.view_field("pooled")
            est = sum(store.entry(v).length for v in ids) * int(np.prod(store.spec.fields[field].shape)) * 2
            mmap = cache / f"bank-{k}-{tag}.npy" if cache is not None and est > MMAP_ABOVE_BYTES else None
            if mmap is not None:
                mmap.parent.mkdir(parents=True, exist_ok=True)
            packs.append(store.load(ids, field=field, with_spans=k == 0, mmap_path=mmap))
        for p, s in zip(packs, stores, strict=True):
            if p.data.ndim != 2:
                raise FsvInputError(
                    f"store {s.path} holds features of shape {tuple(p.data.shape[1:])}; localization heads need snippet features [T, D]"
                )
        lengths = np.min(np.stack([p.lengths for p in packs]), axis=0)
        if len(packs) == 1:
            data, spans, offsets = packs[0].data, packs[0].spans, packs[0].offsets
        else:
            offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            data = np.empty((int(lengths.sum()), sum(p.data.shape[1] for p in packs)), dtype=np.float16)
            spans = np.empty((int(lengths.sum()), 2))
            for i, (o, n) in enumerate(zip(offsets, lengths, strict=True)):
                col = 0
                for p in packs:
                    d = p.data.shape[1]
                    data[o : o + n, col : col + d] = p.data[p.offsets[i] : p.offsets[i] + n]
                    col += d
                spans[o : o + n] = packs[0].spans[packs[0].offsets[i] : packs[0].offsets[i] + n]
        if (lengths == 0).any():
            empty = [ids[i] for i in np.flatnonzero(lengths == 0)][:3]
            raise FsvInputError(f"videos with no feature steps in the store, e.g. {empty}; re-extract them")
        log.info(
            "loaded %d videos, %d steps of %d features (%.1f MB)",
            len(ids),
            int(lengths.sum()),
            data.shape[1],
            data.nbytes / 1e6,
        )
        return cls(data, spans, offsets, lengths, records)

    @property
    def dim(self) -> int:
        return int(self.data.shape[1])

    def __len__(self) -> int:
        return len(self.records)

    def features(self, video_id: str) -> np.ndarray:
        """``[T, D]`` float16 view of one video's steps."""
        i = self.index[video_id]
        return self.data[self.offsets[i] : self.offsets[i] + self.lengths[i]]

    def step_spans(self, video_id: str) -> np.ndarray:
        """``[T, 2]`` seconds of one video's steps."""
        i = self.index[video_id]
        return self.spans[self.offsets[i] : self.offsets[i] + self.lengths[i]]


def to_steps(times: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Seconds -> continuous step coordinates of a video whose steps cover ``spans`` ``[T, 2]``:
    step ``t`` covers ``[t, t+1)``; times inside a step are placed linearly, times before the first
    step map to 0 and after the last to ``T``."""
    t = len(spans)
    knots_x = np.concatenate([spans[:, 0], spans[-1:, 1]])
    knots_y = np.arange(t + 1, dtype=np.float64)
    order = np.argsort(knots_x, kind="stable")
    return np.interp(np.asarray(times, dtype=np.float64), knots_x[order], knots_y[order])


def to_seconds(steps: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_steps`: continuous step coordinates in ``[0, T]`` -> seconds."""
    t = len(spans)
    knots_x = np.arange(t + 1, dtype=np.float64)
    knots_y = np.concatenate([spans[:, 0], spans[-1:, 1]])
    return np.interp(np.clip(np.asarray(steps, dtype=np.float64), 0, t), knots_x, knots_y)


@dataclass(frozen=True)
class SplitRoles:
    """Which manifest splits train, select models and test."""

    train: str
    val: str | None
    test: str


def split_roles(manifest: Manifest) -> SplitRoles:
    """The standard roles of a localization manifest's splits.

    ``train``/``val``/``test`` are used as named. THUMOS14 trains on ``validation`` and tests on
    ``test``; ActivityNet trains on ``training`` and tests on ``validation`` (its test labels are
    withheld). Without a named validation split the trainer carves one out of the training videos
    (never out of the test split)."""
    splits = set(manifest.splits)
    if {"train", "test"} <= splits:
        return SplitRoles("train", "val" if "val" in splits else None, "test")
    if {"validation", "test"} <= splits:
        return SplitRoles("validation", None, "test")
    if {"training", "validation"} <= splits:
        return SplitRoles("training", None, "validation")
    raise FsvInputError(
        f"manifest {manifest.path or manifest.dataset} has splits {sorted(splits)}; localization needs train/test, "
        "validation/test (THUMOS14) or training/validation (ActivityNet)"
    )


def carve_val(records: list[VideoRecord], fraction: float, seed: int) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """Split ``records`` into (train, val) with ``fraction`` of them in val, by a fixed seed."""
    if not 0 < fraction < 1:
        raise FsvInputError(f"val_fraction must be in (0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(len(records))
    n_val = max(1, int(round(fraction * len(records))))
    val = set(order[:n_val].tolist())
    return [r for i, r in enumerate(records) if i not in val], [r for i, r in enumerate(records) if i in val]
