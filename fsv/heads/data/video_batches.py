"""Weakly-supervised temporal action localization data: video-level labels and training batches
with pairs of videos sharing a class.

Training batch ``i`` depends only on ``(seed, i)``: ``batch_videos`` videos of which at least
``min_pairs`` pairs share a class (W-TALC's sampling, which VQK-Net's query-similarity and
co-activity losses need), each cut to ``num_segments`` steps by random perturbation sampling (one
random step in each of ``num_segments`` equal intervals; shorter videos repeat steps).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fsv.errors import FsvInputError
from fsv.heads.data.videos import VideoBank
from fsv.pipeline.manifests import VideoRecord

log = logging.getLogger(__name__)


def video_labels(records: Sequence[VideoRecord], classes: Sequence[str]) -> np.ndarray:
    """Multi-hot ``[V, C]`` float32 of each video's labels (``label`` column and segment labels)."""
    col = {c: k for k, c in enumerate(classes)}
    out = np.zeros((len(records), len(classes)), dtype=np.float32)
    for i, r in enumerate(records):
        for name in set(r.labels) | {s.label for s in r.segments}:
            if name in col:
                out[i, col[name]] = 1.0
    return out


def perturb_indices(length: int, count: int, rng: np.random.Generator | None) -> np.ndarray:
    """``count`` step indices of a ``length``-step video: a random step per equal interval
    (``rng``) or the interval centres (``rng=None``); ``[count]`` int64."""
    edges = np.arange(count, dtype=np.float64) * length / count
    offset = rng.random(count) if rng is not None else np.full(count, 0.5)
    return np.clip(np.floor(edges + offset * length / count).astype(np.int64), 0, length - 1)


@dataclass
class WtalBatches:
    """Training batches over ``bank`` with labels ``[V, C]``."""

    bank: VideoBank
    labels: np.ndarray
    batch_videos: int
    min_pairs: int
    num_segments: int
    seed: int

    def __post_init__(self) -> None:
        labelled = np.flatnonzero(self.labels.sum(1) > 0)
        if len(labelled) < self.batch_videos:
            raise FsvInputError(f"{len(labelled)} labelled training videos; a batch needs {self.batch_videos}")
        self.videos = labelled
        self.by_class = {c: np.flatnonzero(self.labels[:, c] > 0) for c in range(self.labels.shape[1])}
        self.pairable = [c for c, v in self.by_class.items() if len(v) >= 2]
        if self.min_pairs and not self.pairable:
            raise FsvInputError("no class has two training videos; VQK-Net's pair losses need videos sharing a class")

    def rows(self, i: int) -> np.ndarray:
        """Bank rows of batch ``i`` ``[batch_videos]``: ``min_pairs`` pairs of distinct classes first."""
        rng = np.random.default_rng([self.seed, i, 0])
        chosen: list[int] = []
        for c in rng.permutation(self.pairable):
            if len(chosen) >= 2 * self.min_pairs:
                break
            free = [v for v in self.by_class[int(c)] if v not in chosen]
            if len(free) >= 2:
                chosen.extend(int(v) for v in rng.choice(free, 2, replace=False))
        rest = np.setdiff1d(self.videos, chosen)
        fill = self.batch_videos - len(chosen)
        chosen.extend(int(v) for v in rng.choice(rest, min(fill, len(rest)), replace=False))
        return np.asarray(chosen[: self.batch_videos], dtype=np.int64)

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[B, num_segments, D]`` float32 and labels ``[B, C]`` of batch ``i``."""
        rows = self.rows(i)
        rng = np.random.default_rng([self.seed, i, 1])
        x = np.stack(
            [
                self.bank.data[
                    self.bank.offsets[r] + perturb_indices(int(self.bank.lengths[r]), self.num_segments, rng)
                ]
                for r in rows
            ]
        )
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(self.labels[rows])
