"""Stage one's job: decode, sample, run the backbone(s), write the store — resumable and shardable.

Decoding (and optical flow) runs in DataLoader worker processes with prefetching
(:mod:`fsv.pipeline.source`); the main process batches chunks of several videos through the models
(:mod:`fsv.pipeline.infer`) and writes each finished video to its own store part. Videos already
committed are skipped; recorded failures are skipped unless ``retry_failed``; a video that cannot be
decoded (corrupt, truncated, empty, too short) is recorded with its reason and the run goes on.

``shard=(i, n)`` processes the deterministic ``i``-th of ``n`` parts of the manifest, balanced by
expected cost (``shard_by="cost"``, :mod:`fsv.pipeline.balance`) or every ``n``-th video from the
``i``-th (``shard_by="stride"``), so the shards of a job array together cover it once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from fsv.device import resolve_device
from fsv.errors import FsvInputError
from fsv.pipeline.infer import Batcher, StreamModel
from fsv.pipeline.balance import shard_records
from fsv.pipeline.manifests import Manifest, VideoRecord
from fsv.pipeline.manifests.check import require_unique_ids
from fsv.pipeline.plan import ExtractRecipe
from fsv.pipeline.source import Chunk, Failure, VideoJob, VideoSource, worker_init
from fsv.pipeline.store import FeatureStore
from fsv.progress import make_progress

log = logging.getLogger(__name__)


@dataclass
class ExtractSummary:
    """What a run did: videos written / skipped / failed (id -> reason), frames decoded, seconds."""

    written: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    steps: int = 0
    seconds: float = 0.0

    def merge(self, other: "ExtractSummary") -> "ExtractSummary":
        return ExtractSummary(
            self.written + other.written,
            self.skipped + other.skipped,
            {**self.failed, **other.failed},
            self.frames + other.frames,
            self.steps + other.steps,
            max(self.seconds, other.seconds),
        )


@dataclass(frozen=True)
class RunOptions:
    """How to run. None of these change the features beyond the stated tolerances (precision,
    which does, is part of the recipe and its spec); with the same device, ``batch_size`` and
    ``threads`` (torch's intra-op threads, default: all cores) they are bit-identical whatever the
    workers, window, sharding or interruptions."""

    device: str = "auto"
    workers: int = 1
    prefetch: int = 2
    batch_size: int | None = None
    window_frames: int = 256
    decoder: str = "auto"
    channels_last: bool = True
    retry_failed: bool = False
    shard: tuple[int, int] | None = None
    shard_by: str = "cost"
    progress: bool | None = None
    threads: int | None = None
    commit_interval_s: float = 10.0
    allow_manifest_change: bool = False
    redo_corrupt: bool = False


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError as e:
        raise FsvInputError(f"--shard must look like I/N (e.g. 0/8), got {text!r}") from e
    if not 0 <= i < n:
        raise FsvInputError(f"--shard {text}: need 0 <= I < N")
    return i, n


def job_records(manifest: Manifest, recipe: ExtractRecipe, options: RunOptions, root: Path) -> list[VideoRecord]:
    """The manifest's records of ``options.shard`` (all of them when None)."""
    if options.shard is None:
        return list(manifest.records)
    return shard_records(
        list(manifest.records),
        options.shard,
        by=options.shard_by,
        fixed_per_video=recipe.sampling["kind"] == "tsn",
        root=root,
    )


def default_batch_size(recipe: ExtractRecipe, device: torch.device) -> int:
    """Units per forward: frames for 2-D backbones, snippets for 3-D ones."""
    if recipe.unit_frames > 1:
        return 16 if device.type == "cuda" else 4
    return 128 if device.type == "cuda" else 16


def damaged_videos(store: FeatureStore, manifest: Manifest) -> set[str]:
    """The manifest's videos whose committed features ``fsv store verify`` finds damaged (logged)."""
    from fsv.pipeline.store.verify import verify_store

    report = verify_store(store)
    ids = {r.video_id for r in manifest.records}
    outside = sorted(report.damaged - ids)
    if outside:
        log.warning(
            "%d damaged video(s) are not in manifest %s and stay damaged, e.g. %s",
            len(outside),
            manifest.path,
            ", ".join(outside[:3]),
        )
    log.info("store %s: %d damaged video(s) to extract again", store.path, len(report.damaged & ids))
    return report.damaged & ids


def extract(
    manifest: Manifest,
    root: Path,
    store_path: Path,
    recipe: ExtractRecipe,
    options: RunOptions = RunOptions(),
    videos: list[str] | None = None,
) -> ExtractSummary:
    """Extract the (shard of the) manifest's videos, files under ``root``, into ``store_path``;
    ``videos`` names the shard's videos when a submitter planned the shards once for all."""
    require_unique_ids(manifest)
    device = resolve_device(options.device)  # before the store exists: a bad --device leaves nothing behind
    spec = recipe.spec()
    store = FeatureStore.create(store_path, spec, manifest_sha256=manifest.sha256, dataset=manifest.dataset)
    changed_from = store.require_manifest(manifest, allow_change=options.allow_manifest_change)
    records = job_records(manifest, recipe, options, root) if videos is None else [manifest.by_id()[v] for v in videos]
    done, failed = set(store.index), set(store.failures)
    if options.redo_corrupt:  # a repair: damaged videos are extracted again into the new part, which supersedes them
        done -= damaged_videos(store, manifest)
    todo = [r for r in records if r.video_id not in done and (options.retry_failed or r.video_id not in failed)]
    summary = ExtractSummary(skipped=len(records) - len(todo))
    if not todo:
        return summary
    if options.threads:
        torch.set_num_threads(options.threads)
    models = {s: StreamModel(recipe, s, device, channels_last=options.channels_last) for s in recipe.streams}
    batcher = Batcher(models, options.batch_size or default_batch_size(recipe, device))
    source = VideoSource(
        [VideoJob(r.video_id, root / r.path) for r in todo],
        recipe,
        decoder=options.decoder,
        window_frames=options.window_frames,
        flow_device=str(device),
    )
    workers = min(options.workers, len(todo))
    # decoding workers are spawned, not forked, on CUDA and whenever they compute flow: a fork of a
    # process whose OpenCV or OpenMP thread pools already ran (an earlier flow computation in the
    # caller) deadlocks the child at its first cv2 / torch thread call
    spawn = device.type == "cuda" or "flow" in recipe.streams
    loader = (
        DataLoader(
            source,
            batch_size=None,
            num_workers=workers,
            prefetch_factor=options.prefetch,
            worker_init_fn=worker_init,
            multiprocessing_context="spawn" if spawn else None,
        )
        if workers > 0
        else source
    )
    shard = f"{options.shard[0]}/{options.shard[1]}" if options.shard else None
    paths = {r.video_id: r.path for r in todo}
    parts: dict[str, list[dict[str, np.ndarray]]] = {}
    attempts: dict[str, int] = {}
    t0 = time.perf_counter()
    with (
        make_progress(disable=None if options.progress is None else not options.progress) as progress,
        store.writer(
            shard=shard,
            manifest_sha256=manifest.sha256,
            commit_interval_s=options.commit_interval_s,
            manifest_changed_from=changed_from,
        ) as writer,
    ):
        videos = progress.add_task(
            f"extract {spec.name}" + (f" [{shard}]" if shard else ""), total=len(todo), unit="videos"
        )
        frames = progress.add_task("  decoded frames", total=None, unit="frames")

        def finish(results: list[tuple[Chunk, dict[str, np.ndarray]]]) -> None:
            for chunk, feats in results:
                if chunk.attempt != attempts.get(chunk.video_id, 0):
                    continue
                parts.setdefault(chunk.video_id, []).append(feats)
                if chunk.last:
                    plan, info = chunk.plan, chunk.info
                    pieces = parts.pop(chunk.video_id)
                    data = {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}
                    meta = {"backend": info["backend"], "path": paths[chunk.video_id], "rotation": info["rotation"]}
                    if recipe.sampling["kind"] == "tsn":
                        meta["frame_indices"] = plan.frames.tolist()
                    try:
                        writer.write(
                            chunk.video_id,
                            data,
                            spans=plan.spans,
                            fps=info["fps"],
                            num_frames=info["num_frames"],
                            duration=info["duration"],
                            meta=meta,
                        )
                    except (
                        FsvInputError
                    ) as e:  # e.g. features beyond the spec's dtype: this video fails, the run goes on
                        writer.fail(chunk.video_id, str(e), path=paths[chunk.video_id])
                        summary.failed[chunk.video_id] = str(e)
                        log.warning("%s", e)
                    else:
                        summary.written += 1
                        summary.steps += len(plan.spans)
                    progress.advance(videos)

        for item in loader:
            if isinstance(item, Failure):
                parts.pop(item.video_id, None)
                batcher.drop(item.video_id)
                attempts[item.video_id] = item.attempt + 1
                if item.final:
                    writer.fail(item.video_id, item.reason, path=paths[item.video_id])
                    summary.failed[item.video_id] = item.reason
                    log.warning("%s", item.reason)
                    progress.advance(videos)
                continue
            summary.frames += item.frames_decoded
            progress.advance(frames, item.frames_decoded)
            batcher.add(item)
            if batcher.full:
                finish(batcher.flush())
        finish(batcher.flush(final=True))
    summary.seconds = time.perf_counter() - t0
    return summary
