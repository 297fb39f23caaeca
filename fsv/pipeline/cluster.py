"""Extraction shards as batch jobs (SLURM job arrays through submitit, local processes, or dask).

An :class:`ExtractJob` is everything one shard needs (picklable: the manifest is named by file or
dataset, weights by path and sha256). :func:`submit_extract` checks the job where it is submitted
(manifest, weights, device, the scheduler request), creates the store once, plans the shards once
(balanced by expected cost, :mod:`fsv.pipeline.balance`) and hands every shard its own list of
videos; each shard writes its own part of the one store, so together they equal a single run, and
a shard requeued after its time limit, or submitted again, skips what it committed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fsv.errors import FsvInputError
from fsv.jobs.options import ClusterOptions
from fsv.jobs.run import Submitter
from fsv.pipeline.balance import plan_shards, record_costs
from fsv.pipeline.extract import ExtractSummary, RunOptions, extract
from fsv.pipeline.manifests.check import require_unique_ids
from fsv.pipeline.plan import ExtractRecipe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractJob:
    """One extraction: manifest (file or dataset name), data root, store folder, recipe, options;
    ``videos`` is the shard's own list when a submitter planned the shards."""

    manifest: str
    root: Path
    store: Path
    recipe: ExtractRecipe
    options: RunOptions = RunOptions()
    videos: tuple[str, ...] | None = None

    def shard(self, i: int, n: int, videos: list[str]) -> "ExtractJob":
        return replace(self, options=replace(self.options, shard=(i, n), progress=False), videos=tuple(videos))


def run_job(job: ExtractJob) -> ExtractSummary:
    """Run one (shard of an) extraction job in this process; the entry point of every executor."""
    from fsv.pipeline.manifests import load_manifest

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    manifest = load_manifest(job.manifest, job.root)
    return extract(
        manifest,
        job.root,
        job.store,
        job.recipe,
        job.options,
        videos=list(job.videos) if job.videos is not None else None,
    )


def submit_extract(
    job: ExtractJob, shards: int, executor: str, cluster: ClusterOptions = ClusterOptions(), *, wait: bool = True
) -> ExtractSummary | list[str]:
    """Run ``shards`` shards of ``job`` on ``executor``: their merged summary, with the wall time
    of the whole submission (or, with ``wait=False`` on SLURM, the job ids). Raises
    :class:`FsvJobError` naming the shards that failed and why (the others' videos are committed;
    submitting again does only what is missing)."""
    from fsv.pipeline.manifests import load_manifest
    from fsv.pipeline.store import FeatureStore

    if shards < 1:
        raise FsvInputError(f"--shards must be >= 1, got {shards}")
    t0 = time.perf_counter()
    job = replace(job, options=replace(job.options, device=cluster.check_device(executor, job.options.device)))
    manifest = load_manifest(job.manifest, job.root)
    require_unique_ids(manifest)
    submitter = Submitter(executor, cluster, "fsv-extract")  # the request is checked before the store is created
    store = FeatureStore.create(job.store, job.recipe.spec(), manifest_sha256=manifest.sha256, dataset=manifest.dataset)
    store.require_manifest(manifest, allow_change=job.options.allow_manifest_change)  # before anything is submitted
    records = list(manifest.records)
    costs = (
        record_costs(records, fixed_per_video=job.recipe.sampling["kind"] == "tsn", root=job.root)
        if job.options.shard_by == "cost"
        else np.zeros(len(records))
    )
    plan = plan_shards(costs, shards, job.options.shard_by)
    parts = [job.shard(i, shards, [records[k].video_id for k in ks]) for i, ks in enumerate(plan)]
    results = submitter.run(run_job, parts, wait=wait)
    if not wait:
        return results
    total = ExtractSummary()
    for r in results:
        total = total.merge(r)
    total.seconds = time.perf_counter() - t0
    return total
