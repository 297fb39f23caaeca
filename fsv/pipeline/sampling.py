"""Frame sampling: which frames of a video become feature steps."""

from __future__ import annotations

import numpy as np


def tsn_indices(
    num_frames: int, num_segments: int = 8, *, mode: str = "center", rng: np.random.Generator | None = None
) -> np.ndarray:
    """TSN sampling: one frame per equal segment, ``(num_segments,)`` int64 frame indices.

    ``center`` takes each segment's middle frame (test time); ``random`` a uniformly random frame of
    each segment (training augmentation). Videos shorter than ``num_segments`` frames repeat frames.
    """
    if num_frames <= 0:
        raise ValueError("a video with no frames cannot be sampled")
    edges = np.linspace(0, num_frames, num_segments + 1)
    if mode == "center":
        idx = np.floor((edges[:-1] + edges[1:]) / 2)
    elif mode == "random":
        rng = rng or np.random.default_rng()
        idx = np.floor(edges[:-1] + rng.random(num_segments) * (edges[1:] - edges[:-1]))
    else:
        raise ValueError(f"TSN mode must be center or random, got {mode!r}")
    return np.clip(idx.astype(np.int64), 0, num_frames - 1)


def resample_indices(
    timestamps: np.ndarray, fps: float, duration: float | None = None, *, count: str = "floor"
) -> np.ndarray:
    """Frames shown at ``0, 1/fps, 2/fps, ...`` of a video whose frames start at ``timestamps``
    (seconds, ``(num_frames,)``): for each target time the last frame presented at or before it.

    Returns ``(floor(duration * fps),)`` int64 indices (non-decreasing; frames repeat when the video
    is slower than ``fps`` and are skipped when faster), or with ``count="ceil"`` every target time
    before the end, ``ceil(duration * fps)`` of them (TSP's ``frames[::2]`` of a 30 fps video keeps
    the last odd frame). ``duration`` defaults to the last frame's start plus one median frame
    interval.
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.size == 0:
        raise ValueError("a video with no frames cannot be sampled")
    if duration is None:
        step = float(np.median(np.diff(ts))) if ts.size > 1 else 1.0 / fps
        duration = float(ts[-1]) + step
    n = int(np.floor(duration * fps + 1e-6)) if count == "floor" else int(np.ceil(duration * fps - 1e-6))
    t = np.arange(n, dtype=np.float64) / fps
    idx = np.searchsorted(ts, t + 1e-6, side="right") - 1
    return np.clip(idx, 0, ts.size - 1).astype(np.int64)


def snippet_starts(num_frames: int, snippet: int, stride: int) -> np.ndarray:
    """Start positions ``(n,)`` of ``snippet``-frame windows every ``stride`` frames fully inside
    ``num_frames`` frames (the tail shorter than a snippet is dropped, as I3D/C3D pipelines do)."""
    if num_frames < snippet:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, num_frames - snippet + 1, stride, dtype=np.int64)
