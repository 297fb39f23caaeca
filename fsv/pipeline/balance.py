"""Which videos each of ``N`` extraction shards does, so that the shards finish together.

Real datasets have long-tailed durations (THUMOS14 runs from 9 s to 28 min, ActivityNet
likewise), so taking every ``N``-th video leaves one shard with far more frames than the others,
and the slowest shard decides the wall time. ``by="cost"`` (the default) assigns videos by their
expected cost with the longest-processing-time rule: videos in decreasing cost, each to the
shard with the least planned cost so far (ties: the lower shard index, and manifest order between
equal costs). The plan depends only on the manifest and ``N``, so every shard, re-run and resume
computes the same one. ``by="stride"`` keeps every ``N``-th video from the ``i``-th.

A video's cost is its frame count: ``num_frames`` from the manifest, else ``duration × fps``, else
the duration at the manifest's median frame rate; videos that the manifest knows nothing about
are probed (their container headers are read, in parallel). Sampling that decodes a fixed
number of frames per video (TSN) costs the same for every video, so those shards are balanced by
count and nothing is probed.
"""

from __future__ import annotations

import heapq
import logging
from pathlib import Path

import numpy as np

from fsv.errors import FsvInputError
from fsv.pipeline.manifests import Manifest, VideoRecord

log = logging.getLogger(__name__)

SHARD_MODES = ("cost", "stride")


def record_costs(records: list[VideoRecord], *, fixed_per_video: bool = False, root: Path | None = None) -> np.ndarray:
    """Expected cost (frames decoded) of each record, ``(len(records),)`` float64."""
    if fixed_per_video:
        return np.ones(len(records))
    known_fps = [r.fps for r in records if r.fps]
    median_fps = float(np.median(known_fps)) if known_fps else 25.0
    costs = np.full(len(records), np.nan)
    for i, r in enumerate(records):
        if r.num_frames:
            costs[i] = r.num_frames
        elif r.duration:
            costs[i] = r.duration * (r.fps or median_fps)
    unknown = np.flatnonzero(np.isnan(costs))
    if len(unknown) and root is not None:
        from fsv.pipeline.manifests import probe_manifest

        log.info("probing %d videos without a duration or frame count to balance the shards", len(unknown))
        missing = Manifest("probe", [records[i] for i in unknown], [], "classification")
        probed, _ = probe_manifest(missing, root)
        for i, r in zip(unknown, probed.records):
            costs[i] = r.num_frames or (r.duration or 0.0) * (r.fps or median_fps)
    return np.nan_to_num(costs, nan=0.0)


def plan_shards(costs: np.ndarray, n: int, by: str = "cost") -> list[list[int]]:
    """Indices of the items each of ``n`` shards takes (each list in input order).

    >>> plan_shards(np.array([5.0, 1, 1, 1, 1, 1]), 2)
    [[0], [1, 2, 3, 4, 5]]
    """
    if n < 1:
        raise FsvInputError(f"the number of shards must be >= 1, got {n}")
    if by not in SHARD_MODES:
        raise FsvInputError(f"--shard-by must be one of {', '.join(SHARD_MODES)}, got {by!r}")
    if by == "stride":
        return [list(range(i, len(costs), n)) for i in range(n)]
    order = sorted(range(len(costs)), key=lambda k: (-float(costs[k]), k))
    heap = [(0.0, s) for s in range(n)]
    shards: list[list[int]] = [[] for _ in range(n)]
    for k in order:
        load, s = heapq.heappop(heap)
        shards[s].append(k)
        heapq.heappush(heap, (load + float(costs[k]), s))
    return [sorted(s) for s in shards]


def shard_records(
    records: list[VideoRecord],
    shard: tuple[int, int],
    *,
    by: str = "cost",
    fixed_per_video: bool = False,
    root: Path | None = None,
) -> list[VideoRecord]:
    """The records of shard ``i`` of ``n`` (``shard = (i, n)``)."""
    i, n = shard
    costs = (
        record_costs(records, fixed_per_video=fixed_per_video, root=root) if by == "cost" else np.zeros(len(records))
    )
    return [records[k] for k in plan_shards(costs, n, by)[i]]


def imbalance(costs: np.ndarray, plan: list[list[int]]) -> float:
    """The largest shard's planned cost divided by the mean shard's (1.0 is perfect)."""
    loads = np.array([costs[s].sum() for s in plan])
    return float(loads.max() / loads.mean()) if loads.mean() > 0 else 1.0
