"""Frame sampling: which frames of a video become feature steps."""

from __future__ import annotations

import numpy as np


def tsn_indices(num_frames: int, num_segments: int = 8, *, mode: str = "center", rng: np.random.Generator | None = None) -> np.ndarray:
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
