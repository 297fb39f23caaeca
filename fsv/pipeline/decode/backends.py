"""One video-reader interface over decord, PyAV and torchcodec.

``open_video(path, backend="auto")`` returns a :class:`VideoReader`: its frame count, frame rate,
the real presentation timestamp of every frame (seconds from the first frame), and
:meth:`VideoReader.iter_frames`, which decodes a non-decreasing list of frame indices in bounded
batches (so a 60-minute video never sits in memory whole).

``auto`` tries decord (bundles FFmpeg, fast random access), then torchcodec where it is installed,
then PyAV; a video whose timestamps show a variable frame rate, or that decord cannot open, goes to
the next backend, as does one for which decord reports no usable timestamps (AVI) and one longer
than :data:`LONG_VIDEO_S` (decord's memory grows on those). A video on
which a backend fails while decoding is started again with the next one
(:class:`fsv.pipeline.source.VideoSource`).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import numpy as np

from fsv.errors import FsvInputError

log = logging.getLogger(__name__)

BACKENDS = ("decord", "torchcodec", "pyav")
VFR_TOLERANCE = 0.25  # relative spread of frame intervals above which a video counts as variable-rate
# Longer videos go to the next backend under ``auto``: in a DataLoader worker decord's memory grew
# with the windows of a long video (2.2-5.7 GB on a 60-minute clip, bench/extract.py) where PyAV's
# sequential decoding stayed near 0.6 GB; dense decoding is fast in both (about 3,000-6,000 frames/s).
LONG_VIDEO_S = 600.0


class VideoReader(Protocol):
    """What every backend offers. ``timestamps`` is ``(num_frames,)`` float64 seconds."""

    path: Path
    backend: str
    num_frames: int
    fps: float
    timestamps: np.ndarray

    def iter_frames(self, indices: np.ndarray, batch: int = 32) -> Iterator[np.ndarray]:
        """Frames ``indices`` (non-decreasing, repeats allowed) as ``(b, H, W, 3)`` uint8 RGB batches."""
        ...

    def close(self) -> None: ...


def timestamps_usable(ts: np.ndarray) -> bool:
    """Whether ``ts`` are real timestamps: finite, no negative sentinels, strictly increasing."""
    ts = np.asarray(ts, dtype=np.float64)
    return bool(len(ts)) and bool(np.isfinite(ts).all()) and ts.min() > -1e6 and (len(ts) < 2 or bool((np.diff(ts) > 0).all()))


def clean_timestamps(ts: np.ndarray, fps: float) -> np.ndarray:
    """``ts`` shifted to start at 0, or ``i / fps`` when the container's timestamps are unusable
    (missing, negative sentinels, non-increasing — AVI files often carry none)."""
    ts = np.asarray(ts, dtype=np.float64)
    if timestamps_usable(ts):
        return ts - ts[0]
    return np.arange(len(ts), dtype=np.float64) / (fps or 25.0)


def is_variable_rate(ts: np.ndarray) -> bool:
    """Whether the frame intervals of ``ts`` vary by more than :data:`VFR_TOLERANCE` of their median."""
    if len(ts) < 3:
        return False
    d = np.diff(ts)
    med = float(np.median(d))
    return med > 0 and float(np.percentile(np.abs(d - med), 95)) > VFR_TOLERANCE * med


def _check_indices(indices: np.ndarray, num_frames: int, path: Path) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and (np.diff(idx) < 0).any():
        raise ValueError("frame indices must be non-decreasing")
    if idx.size and (idx[0] < 0 or idx[-1] >= num_frames):
        raise FsvInputError(f"{path}: frame {int(idx[-1])} asked of a video with {num_frames} frames")
    return idx


class DecordReader:
    """decord's ``VideoReader`` (one thread per reader: parallelism comes from worker processes).

    ``reliable`` is False when decord cannot give the frames' timestamps (AVI, for one): its
    seeking then depends on what was read before (seen on ``test.avi``: the same frame index gave
    different frames), so ``auto`` moves such videos on to the next backend.
    """

    backend = "decord"

    def __init__(self, path: Path) -> None:
        import decord

        self.path = path
        try:
            self._vr = decord.VideoReader(str(path), num_threads=1)
            self.num_frames = len(self._vr)
            self.fps = float(self._vr.get_avg_fps())
            raw = self._vr.get_frame_timestamp(np.arange(self.num_frames))[:, 0] if self.num_frames else np.zeros(0)
        except (decord.DECORDError, RuntimeError) as e:
            raise FsvInputError(f"{path}: decord cannot open it ({str(e).splitlines()[0][:160]})") from e
        self.reliable = timestamps_usable(raw)
        self.timestamps = clean_timestamps(raw, self.fps)

    def iter_frames(self, indices: np.ndarray, batch: int = 32) -> Iterator[np.ndarray]:
        import decord

        idx = _check_indices(indices, self.num_frames, self.path)
        for lo in range(0, len(idx), batch):
            try:
                yield self._vr.get_batch(idx[lo:lo + batch].tolist()).asnumpy()
            except (decord.DECORDError, RuntimeError) as e:
                raise FsvInputError(f"{self.path}: decord failed at frame {int(idx[lo])} ({str(e).splitlines()[0][:160]})") from e

    def close(self) -> None:
        self._vr = None


def packet_timestamps(path: Path) -> tuple[np.ndarray, float]:
    """Presentation times (seconds, sorted, unshifted; NaN when missing) of every video packet of
    ``path``, and the stream's nominal frame rate — read by demuxing, without decoding."""
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise FsvInputError(f"{path}: has no video stream")
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate or s.base_rate
            fps = float(Fraction(rate)) if rate else 0.0
            tb = float(s.time_base) if s.time_base else 0.0
            declared = int(s.frames or 0)
            pts = [p.pts for p in c.demux(s) if p.size > 0]
    except FsvInputError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise FsvInputError(f"{path}: cannot be read as a video ({type(e).__name__}: {e})") from e
    if declared and len(pts) < 0.99 * declared - 2:
        raise FsvInputError(f"{path}: truncated: the header declares {declared} frames, the file holds {len(pts)}")
    if None in pts or not tb:
        raw = np.full(len(pts), np.nan)
    else:
        raw = np.sort(np.asarray(pts, dtype=np.float64)) * tb
    if not fps and len(raw) > 1 and np.isfinite(raw).all():
        fps = (len(raw) - 1) / max(raw[-1] - raw[0], 1e-9)
    return raw, fps


class PyAVReader:
    """PyAV: timestamps from the demuxed packets, frames by sequential decoding (exact on any
    container, including variable frame rate and GIF)."""

    backend = "pyav"

    def __init__(self, path: Path) -> None:
        self.path = path
        raw, self.fps = packet_timestamps(path)
        self.num_frames = len(raw)
        self.timestamps = clean_timestamps(raw, self.fps)

    def iter_frames(self, indices: np.ndarray, batch: int = 32) -> Iterator[np.ndarray]:
        import av

        idx = _check_indices(indices, self.num_frames, self.path)
        if not idx.size:
            return
        out: list[np.ndarray] = []
        k, pos, last = 0, 0, int(idx[-1])
        try:
            with av.open(str(self.path)) as c:
                s = c.streams.video[0]
                s.thread_type = "AUTO"
                for frame in c.decode(s):
                    if pos == idx[k]:
                        img = frame.to_ndarray(format="rgb24")
                        while k < len(idx) and idx[k] == pos:
                            out.append(img)
                            k += 1
                            if len(out) == batch:
                                yield np.stack(out)
                                out = []
                    if pos >= last:
                        break
                    pos += 1
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise FsvInputError(f"{self.path}: cannot be decoded at frame {pos} ({type(e).__name__}: {e})") from e
        if k < len(idx):
            raise FsvInputError(f"{self.path}: decoded {pos + 1} frames, needed frame {last}; the video is truncated or shorter than its header says")
        if out:
            yield np.stack(out)

    def close(self) -> None:
        pass


class TorchCodecReader:
    """torchcodec's ``VideoDecoder`` (exact seeking) when installed; timestamps from the demuxed
    packets, as for PyAV."""

    backend = "torchcodec"

    def __init__(self, path: Path) -> None:
        from torchcodec.decoders import VideoDecoder

        self.path = path
        try:
            self._dec = VideoDecoder(str(path), seek_mode="exact")
        except (RuntimeError, ValueError) as e:
            raise FsvInputError(f"{path}: torchcodec cannot open it ({str(e).splitlines()[0][:160]})") from e
        md = self._dec.metadata
        self.num_frames = int(md.num_frames or 0)
        raw, fps = packet_timestamps(path)
        self.fps = float(md.average_fps or fps)
        self.timestamps = clean_timestamps(raw[: self.num_frames] if len(raw) >= self.num_frames else np.full(self.num_frames, np.nan), self.fps)

    def iter_frames(self, indices: np.ndarray, batch: int = 32) -> Iterator[np.ndarray]:
        idx = _check_indices(indices, self.num_frames, self.path)
        for lo in range(0, len(idx), batch):
            try:
                frames = self._dec.get_frames_at(idx[lo:lo + batch].tolist()).data
            except (RuntimeError, IndexError) as e:
                raise FsvInputError(f"{self.path}: torchcodec failed at frame {int(idx[lo])} ({str(e).splitlines()[0][:160]})") from e
            yield frames.permute(0, 2, 3, 1).contiguous().numpy()

    def close(self) -> None:
        self._dec = None


_CLASSES = {"decord": DecordReader, "torchcodec": TorchCodecReader, "pyav": PyAVReader}


def available_backends() -> list[str]:
    """Installed backends, in ``auto``'s order of preference."""
    mods = {"decord": "decord", "torchcodec": "torchcodec", "pyav": "av"}
    return [b for b in BACKENDS if importlib.util.find_spec(mods[b]) is not None]


def candidates(backend: str) -> list[str]:
    """Backends to try for ``backend`` (``auto`` means every installed one, in order)."""
    if backend == "auto":
        return available_backends()
    if backend not in _CLASSES:
        raise FsvInputError(f"unknown decoding backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    if backend not in available_backends():
        hint = {"torchcodec": "pip install torchcodec==0.13.0 (CPU build; needs Debian's FFmpeg libraries)"}.get(backend, f"pip install {backend}")
        raise FsvInputError(f"decoding backend {backend} is not installed ({hint}); or use --decoder auto")
    return [backend]


def open_video(path: str | Path, backend: str = "auto", *, skip: tuple[str, ...] = ()) -> VideoReader:
    """A reader of ``path`` (see module docstring); ``skip`` leaves out backends that already failed.

    Raises :class:`FsvInputError` naming the file when it is missing, empty, or no backend can open
    it; with ``auto``, a variable-frame-rate video or one without timestamps goes on to the next
    backend (decord mis-seeks on them).
    """
    path = Path(path)
    if not path.is_file():
        raise FsvInputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise FsvInputError(f"{path}: file is empty (0 bytes)")
    names = [b for b in candidates(backend) if b not in skip]
    errors: list[str] = []
    for name in names:
        try:
            reader = _CLASSES[name](path)
        except FsvInputError as e:
            errors.append(str(e))
            continue
        if reader.num_frames <= 0:
            errors.append(f"{path}: {name} finds no frames")
            continue
        long_video = name == "decord" and len(reader.timestamps) and reader.timestamps[-1] > LONG_VIDEO_S
        if backend == "auto" and name != names[-1] and (long_video or is_variable_rate(reader.timestamps) or not getattr(reader, "reliable", True)):
            log.info("%s: long, variable-rate or without timestamps for %s; trying %s", path, name, names[names.index(name) + 1])
            reader.close()
            continue
        return reader
    if not names:
        raise FsvInputError(f"{path}: no decoding backend left to try")
    raise FsvInputError(errors[-1] if len(errors) == 1 else f"{path}: no backend could open it: " + " | ".join(errors))
