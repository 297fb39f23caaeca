"""Decoding chosen frames of a video in any order (a convenience over :mod:`.backends`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fsv.pipeline.decode.backends import open_video


def read_frames(path: str | Path, indices: np.ndarray, *, backend: str = "pyav") -> np.ndarray:
    """Frames ``indices`` (any order, repeats allowed, 0-based) of ``path`` as
    ``(len(indices), H, W, 3)`` uint8 RGB. Raises :class:`~fsv.errors.FsvInputError` naming the file
    when it cannot be decoded or holds fewer frames than asked."""
    wanted = np.asarray(indices, dtype=np.int64)
    if wanted.size == 0:
        raise ValueError("no frames asked")
    order = np.argsort(wanted, kind="stable")
    reader = open_video(path, backend)
    try:
        frames = np.concatenate(list(reader.iter_frames(wanted[order])))
    finally:
        reader.close()
    out = np.empty_like(frames)
    out[order] = frames
    return out
