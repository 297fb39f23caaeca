"""Decoding chosen frames of a video with PyAV."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fsv.errors import FsvInputError


def read_frames(path: str | Path, indices: np.ndarray) -> np.ndarray:
    """Frames ``indices`` (decode order, 0-based) of ``path`` as ``(len(indices), H, W, 3)`` uint8 RGB.

    Decodes sequentially up to the last wanted frame, keeping only the wanted ones, so memory holds
    ``len(indices)`` frames at most. Raises :class:`FsvInputError` naming the file when it cannot be
    decoded or holds fewer frames than asked.
    """
    import av

    path = Path(path)
    wanted = np.asarray(indices, dtype=np.int64)
    if wanted.size == 0:
        raise ValueError("no frames asked")
    order = np.unique(wanted)
    last = int(order[-1])
    got: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FsvInputError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            pos = 0
            targets = set(int(i) for i in order)
            for frame in container.decode(stream):
                if pos in targets:
                    got[pos] = frame.to_ndarray(format="rgb24")
                if pos >= last:
                    break
                pos += 1
    except FsvInputError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise FsvInputError(f"{path}: cannot be decoded ({type(e).__name__}: {e})") from e
    if len(got) < len(order):
        raise FsvInputError(f"{path}: decoded {pos + 1 if got else 0} frames, needed frame {last}; the video is truncated or shorter than its header says")
    return np.stack([got[int(i)] for i in wanted])
