"""The decoding side of extraction: worker processes turn videos into model-ready chunks.

:class:`VideoSource` is an iterable dataset (run by a ``torch.utils.data.DataLoader`` with worker
processes and prefetching, so decoding, resizing and optical flow overlap the model). Each video is
decoded window by window (:func:`fsv.pipeline.plan.plan_video`), so a long video never sits in
memory whole; each window becomes one :class:`Chunk`. When a backend fails on a video, the worker
sends a non-final :class:`Failure` (the consumer drops what it has of that video) and starts the
video again with the next backend; when none is left, the failure is final and recorded.
"""

from __future__ import annotations

import logging
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from fsv.errors import FsvInputError
from fsv.pipeline.decode.backends import candidates, open_video
from fsv.pipeline.plan import ExtractRecipe, VideoPlan, plan_video
from fsv.pipeline.transforms import resize_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoJob:
    """One video to extract: its id and file."""

    video_id: str
    path: Path


@dataclass
class Chunk:
    """One decoded window of a video.

    ``inputs["rgb"]`` is ``(F, h, w, 3)`` uint8 resized frames (before cropping); ``inputs["flow"]``
    is ``(F - 1, 2, h, w)`` float16 flow in [-1, 1] between consecutive frames. Step ``i`` of the
    window uses frames ``offsets[i] : offsets[i] + unit``. ``plan`` and ``info`` come with the last
    chunk of the video.
    """

    video_id: str
    attempt: int
    window: int
    last: bool
    inputs: dict[str, np.ndarray]
    offsets: np.ndarray
    frames_decoded: int
    plan: VideoPlan | None = None
    info: dict[str, Any] | None = None


@dataclass
class Failure:
    """``video_id`` failed on attempt ``attempt``; ``final`` when no backend is left to try."""

    video_id: str
    attempt: int
    reason: str
    final: bool


def worker_init(_: int) -> None:
    """Each decoding worker uses one thread (parallelism comes from the processes), ignores the
    scheduler's checkpoint signals (USR1/USR2: a forked worker inherits the job's handler, which
    would requeue the job a second time) and, on Linux, dies with the main process: a killed run
    leaves no orphaned decoders behind."""
    import signal

    torch.set_num_threads(1)
    for name in ("SIGUSR1", "SIGUSR2"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


class VideoSource(IterableDataset):
    """Chunks of ``jobs`` (split across DataLoader workers round-robin) for ``recipe``; flow that runs
    in torch (``tvl1-torch``, RAFT) runs on ``flow_device`` (None: CUDA when available)."""

    def __init__(
        self,
        jobs: list[VideoJob],
        recipe: ExtractRecipe,
        *,
        decoder: str = "auto",
        window_frames: int = 256,
        seed: int = 0,
        flow_device: str | None = None,
    ) -> None:
        super().__init__()
        self.jobs = jobs
        self.recipe = recipe
        self.decoder = decoder
        self.window_frames = window_frames
        self.seed = seed
        self.flow_device = flow_device

    def __iter__(self) -> Iterator[Chunk | Failure]:
        info = get_worker_info()
        mine = self.jobs if info is None else self.jobs[info.id :: info.num_workers]
        for job in mine:
            yield from self.video_chunks(job)

    def video_chunks(self, job: VideoJob) -> Iterator[Chunk | Failure]:
        """Chunks of one video, retrying with the next backend when one fails."""
        tried: list[str] = []
        attempt = 0
        while True:
            try:
                reader = open_video(job.path, self.decoder, skip=tuple(tried))
            except FsvInputError as e:
                yield Failure(job.video_id, attempt, str(e), final=True)
                return
            try:
                yield from self._decode(job, reader, attempt)
                return
            except (FsvInputError, OSError, MemoryError) as e:
                tried.append(reader.backend)
                left = [b for b in candidates(self.decoder) if b not in tried]
                final = self.decoder != "auto" or not left or str(e).startswith("too short")
                reason = str(e) if str(e).startswith(str(job.path)) else f"{job.path}: {e}"
                if not final:
                    log.info("%s; retrying with %s", reason, left[0])
                yield Failure(job.video_id, attempt, reason, final=final)
                if final:
                    return
                attempt += 1
            finally:
                reader.close()

    def _decode(self, job: VideoJob, reader: Any, attempt: int) -> Iterator[Chunk]:
        cfg = self.recipe
        rng = np.random.default_rng([self.seed, zlib.crc32(job.video_id.encode())])
        plan = plan_video(cfg, reader.timestamps, reader.fps, window_frames=self.window_frames, rng=rng)
        need_flow = "flow" in cfg.streams
        extra = 1 if need_flow else 0
        for w, (a, b) in enumerate(plan.windows):
            lo, hi = int(plan.starts[a]), int(plan.starts[b - 1]) + plan.unit + extra
            idx = plan.frames[np.minimum(np.arange(lo, hi), len(plan.frames) - 1)]
            resized = np.concatenate([resize_frames(batch, cfg.preprocess) for batch in reader.iter_frames(idx)])
            inputs: dict[str, np.ndarray] = {}
            if "rgb" in cfg.streams:
                inputs["rgb"] = resized
            if need_flow:
                from fsv.pipeline.flow import compute_flow

                flow = cfg.flow or {}
                inputs["flow"] = compute_flow(
                    resized,
                    flow.get("method", "tvl1"),
                    clip=float(flow.get("clip", 20.0)),
                    quantize=bool(flow.get("quantize", False)),
                    device=self.flow_device,
                ).astype(np.float16)
            last = w == len(plan.windows) - 1
            chunk = Chunk(job.video_id, attempt, w, last, inputs, plan.starts[a:b] - lo, len(idx))
            if last:
                chunk.plan = plan
                chunk.info = {
                    "fps": reader.fps,
                    "num_frames": reader.num_frames,
                    "duration": plan.duration,
                    "backend": reader.backend,
                    "rotation": reader.rotation,
                }
            yield chunk
