"""One video-reader interface over decord, PyAV and torchcodec.

``open_video(path, backend="auto")`` returns a :class:`VideoReader`: its frame count, frame rate,
the real presentation timestamp of every frame (seconds from the first frame), and
:meth:`VideoReader.iter_frames`, which decodes a non-decreasing list of frame indices in bounded
batches (so a 60-minute video never sits in memory whole).

``auto`` tries decord (bundles FFmpeg, fast random access), then torchcodec where it is installed,
then PyAV; a video whose timestamps show a variable frame rate, or that decord cannot open, goes to
the next backend, as does one for which decord reports no usable timestamps (AVI), one longer
than :data:`LONG_VIDEO_S` and one with frames above 1080p (decord's memory grows on those). A video on
which a backend fails while decoding is started again with the next one
(:class:`fsv.pipeline.source.VideoSource`).

Frames come out as players show them: a container's display rotation (phone footage) is applied
(:func:`display_rotation`, read with PyAV). decord applies it inconsistently (at 180° it rotates,
at 90° it fails on non-square frames), so decord and torchcodec refuse rotated videos and ``auto``
hands them to PyAV, which rotates each frame by its own display matrix: every backend gives the
same frames for the same video.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterator
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
# Frames above 1080p go past decord under auto: its own buffers hold about a hundred frames (2.9 GB
# of RSS at 4K whatever fsv's batches), PyAV's a few (bench/extract.py).
DECORD_MAX_FRAME_BYTES = 1920 * 1080 * 3
# Decoded RGB bytes one batch of frames may hold: 32 frames of 720p, 4 of 4K (24.9 MB each). A
# count of frames alone would let a 4K video take gigabytes.
BATCH_BYTES = 96 * 2**20


def frames_per_batch(frame_bytes: int, most: int) -> int:
    """Frames of ``frame_bytes`` each in one decoded batch: at most ``most``, within :data:`BATCH_BYTES`."""
    return max(1, min(most, BATCH_BYTES // max(1, frame_bytes)))


def _batches(idx: np.ndarray, most: int, decode: "Callable[[list[int]], np.ndarray]") -> Iterator[np.ndarray]:
    """``decode`` over ``idx`` in batches bounded by :func:`frames_per_batch` (the first, of one
    frame, tells the frame size)."""
    lo, step = 0, 1
    while lo < len(idx):
        frames = decode(idx[lo : lo + step].tolist())
        yield frames
        lo += step
        step = frames_per_batch(frames[0].nbytes, most)


class VideoReader(Protocol):
    """What every backend offers. ``timestamps`` is ``(num_frames,)`` float64 seconds."""

    path: Path
    backend: str
    num_frames: int
    fps: float
    timestamps: np.ndarray
    rotation: int  # display rotation applied to the frames, degrees counter-clockwise

    def iter_frames(self, indices: np.ndarray, batch: int = 32) -> Iterator[np.ndarray]:
        """Frames ``indices`` (non-decreasing, repeats allowed) as ``(b, H, W, 3)`` uint8 RGB batches
        of at most ``batch`` frames and about :data:`BATCH_BYTES`."""
        ...

    def close(self) -> None: ...


def timestamps_usable(ts: np.ndarray) -> bool:
    """Whether ``ts`` are real timestamps: finite, no negative sentinels, strictly increasing."""
    ts = np.asarray(ts, dtype=np.float64)
    return (
        bool(len(ts))
        and bool(np.isfinite(ts).all())
        and ts.min() > -1e6
        and (len(ts) < 2 or bool((np.diff(ts) > 0).all()))
    )


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
        self.rotation, self.frame_bytes = _refuse_rotated(path, "decord")
        packet_timestamps(
            path
        )  # the truncation check every backend makes: decord may return made-up frames past a file's end

    def iter_frames(self, indices: np.ndarray, batch: int = 32) -> Iterator[np.ndarray]:
        import decord

        idx = _check_indices(indices, self.num_frames, self.path)

        def decode(frames: list[int]) -> np.ndarray:
            try:
                return self._vr.get_batch(frames).asnumpy()
            except (decord.DECORDError, RuntimeError) as e:
                raise FsvInputError(
                    f"{self.path}: decord failed at frame {frames[0]} ({str(e).splitlines()[0][:160]})"
                ) from e

        yield from _batches(idx, batch, decode)

    def close(self) -> None:
        self._vr = None


def first_frame(path: Path) -> tuple[int, int]:
    """``(rotation, bytes)`` of ``path``'s first frame, read with PyAV: the counter-clockwise
    rotation (0, 90, 180 or 270 degrees) that its display matrix asks players to apply, and its
    size as RGB; ``(0, 0)`` without a decodable frame."""
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return 0, 0
            frame = next(c.decode(c.streams.video[0]), None)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise FsvInputError(f"{path}: cannot be read as a video ({type(e).__name__}: {e})") from e
    if frame is None:
        return 0, 0
    return int(round(frame.rotation / 90)) % 4 * 90, frame.width * frame.height * 3


def display_rotation(path: Path) -> int:
    """The display rotation of ``path`` (see :func:`first_frame`)."""
    return first_frame(path)[0]


def _refuse_rotated(path: Path, backend: str) -> tuple[int, int]:
    """:func:`first_frame` of an unrotated video, or :class:`FsvInputError` for a rotated one on a
    backend that does not rotate as players do."""
    rotation, nbytes = first_frame(path)
    if rotation:
        raise FsvInputError(
            f"{path}: has a {rotation}° display rotation, which {backend} does not apply as players do; "
            "decode it with --decoder pyav (auto does)"
        )
    return 0, nbytes


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
        self.rotation = display_rotation(path)

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
                        if self.rotation:  # as players show it (frame.rotation is counter-clockwise, as np.rot90)
                            img = np.ascontiguousarray(np.rot90(img, self.rotation // 90))
                        while k < len(idx) and idx[k] == pos:
                            out.append(img)
                            k += 1
                            if len(out) >= frames_per_batch(img.nbytes, batch):
                                yield np.stack(out)
                                out = []
                    if pos >= last:
                        break
                    pos += 1
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise FsvInputError(f"{self.path}: cannot be decoded at frame {pos} ({type(e).__name__}: {e})") from e
        if k < len(idx):
            raise FsvInputError(
                f"{self.path}: decoded {pos + 1} frames, needed frame {last}; the video is truncated or shorter than its header says"
            )
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
        self.timestamps = clean_timestamps(
            raw[: self.num_frames] if len(raw) >= self.num_frames else np.full(self.num_frames, np.nan), self.fps
        )
        self.rotation = _refuse_rotated(path, "torchcodec")[0]

    def iter_frames(self, indices: np.ndarray, batch: int = 32) -> Iterator[np.ndarray]:
        idx = _check_indices(indices, self.num_frames, self.path)

        def decode(frames: list[int]) -> np.ndarray:
            try:
                data = self._dec.get_frames_at(frames).data
            except (RuntimeError, IndexError) as e:
                raise FsvInputError(
                    f"{self.path}: torchcodec failed at frame {frames[0]} ({str(e).splitlines()[0][:160]})"
                ) from e
            return data.permute(0, 2, 3, 1).contiguous().numpy()

        yield from _batches(idx, batch, decode)

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
        hint = {"torchcodec": "pip install torchcodec==0.13.0 (CPU build; needs Debian's FFmpeg libraries)"}.get(
            backend, f"pip install {backend}"
        )
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
        large_frames = name == "decord" and getattr(reader, "frame_bytes", 0) > DECORD_MAX_FRAME_BYTES
        if (
            backend == "auto"
            and name != names[-1]
            and (
                long_video
                or large_frames
                or is_variable_rate(reader.timestamps)
                or not getattr(reader, "reliable", True)
            )
        ):
            log.info(
                "%s: long, above 1080p, variable-rate or without timestamps for %s; trying %s",
                path,
                name,
                names[names.index(name) + 1],
            )
            reader.close()
            continue
        if large_frames and backend == "decord":
            log.warning(
                "%s: frames above 1080p: decord's own buffers take about 3 GB at 4K; --decoder auto or pyav stays near 1.5 GB",
                path,
            )
        return reader
    if not names:
        raise FsvInputError(f"{path}: no decoding backend left to try")
    raise FsvInputError(errors[-1] if len(errors) == 1 else f"{path}: no backend could open it: " + " | ".join(errors))
