"""``--probe``: fill a manifest's fps, num_frames and duration from the files, in parallel."""

from __future__ import annotations

import logging
from pathlib import Path

import dask
from dask.callbacks import Callback

from fsv.errors import FsvInputError
from fsv.pipeline.decode.probe import VideoInfo, probe_video
from fsv.pipeline.manifests.model import Manifest, VideoRecord
from fsv.pipeline.manifests.problems import ProblemList
from fsv.progress import make_progress

log = logging.getLogger(__name__)


def _probe_batch(paths: list[Path]) -> list[VideoInfo | str]:
    out: list[VideoInfo | str] = []
    for p in paths:
        try:
            out.append(probe_video(p))
        except FsvInputError as e:
            out.append(str(e))
    return out


class _TaskProgress(Callback):
    """Advance a rich progress task by each finished batch's size."""

    def __init__(self, progress, task, sizes: dict[str, int]) -> None:
        super().__init__()
        self._progress, self._task, self._sizes = progress, task, sizes

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        self._progress.advance(self._task, self._sizes.get(key[0] if isinstance(key, tuple) else key, 0))


def probe_manifest(
    manifest: Manifest, root: str | Path, *, workers: int | None = None, batch: int = 16
) -> tuple[Manifest, ProblemList]:
    """A copy of ``manifest`` with fps/num_frames/duration filled from the files under ``root``.

    Probing runs as dask tasks of ``batch`` files on a thread pool (PyAV releases the GIL while it
    demuxes); unreadable files are returned as problems with their manifest line, and their rows keep
    what they had.
    """
    root = Path(root)
    if not root.is_dir():
        raise FsvInputError(f"data root {root} is not a directory")
    records = manifest.records
    chunks = [records[i : i + batch] for i in range(0, len(records), batch)]
    tasks = [dask.delayed(_probe_batch, pure=False)([root / r.path for r in chunk]) for chunk in chunks]
    sizes = {t.key: len(c) for t, c in zip(tasks, chunks)}
    with make_progress() as progress:
        bar_id = progress.add_task("probe", total=len(records), unit="videos")
        with _TaskProgress(progress, bar_id, sizes):
            results = dask.compute(*tasks, scheduler="threads", num_workers=workers)
    source = str(manifest.path) if manifest.path else manifest.dataset
    problems = ProblemList()
    out: list[VideoRecord] = []
    for chunk, infos in zip(chunks, results):
        for r, info in zip(chunk, infos):
            if isinstance(info, str):
                problems.add(source, r.line, info, r.video_id)
                out.append(r)
            else:
                out.append(r.with_info(fps=info.fps, num_frames=info.num_frames, duration=info.duration))
    log.info("probed %d videos under %s (%d unreadable)", len(records), root, len(problems))
    return manifest.with_records(out), problems
