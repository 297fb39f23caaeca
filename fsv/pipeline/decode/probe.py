"""Probe a video file's frame rate, frame count, duration and size without decoding frames."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from fsv.errors import FsvInputError


@dataclass(frozen=True)
class VideoInfo:
    """Container-level facts about a video's first video stream."""

    fps: float
    num_frames: int
    duration: float
    width: int
    height: int


def probe_video(path: str | Path) -> VideoInfo:
    """Read ``path``'s metadata with PyAV, counting packets when the container has no frame count.

    Raises :class:`FsvInputError` naming the file when it is missing, empty, not a video or has no
    decodable video stream.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise FsvInputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise FsvInputError(f"{path}: file is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FsvInputError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            num_frames = int(stream.frames or 0)
            duration = 0.0
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            if num_frames <= 0:
                num_frames = sum(1 for p in container.demux(stream) if p.size > 0)
            if duration <= 0 and fps > 0:
                duration = num_frames / fps
            if fps <= 0 and duration > 0:
                fps = num_frames / duration
            width, height = stream.codec_context.width, stream.codec_context.height
    except FsvInputError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, ZeroDivisionError) as e:
        raise FsvInputError(f"{path}: cannot be read as a video ({type(e).__name__}: {e})") from e
    if num_frames <= 0:
        raise FsvInputError(f"{path}: video stream holds no frames")
    return VideoInfo(
        fps=float(Fraction(fps).limit_denominator(100000)),
        num_frames=num_frames,
        duration=duration,
        width=width,
        height=height,
    )
