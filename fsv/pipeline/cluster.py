"""Running extraction shards as cluster jobs: submitit (SLURM job arrays, or ``local`` processes) or dask.

An :class:`ExtractJob` is everything one shard needs (picklable: the manifest is named by file or
dataset, weights by path and sha256). :func:`submit_extract` creates the store once, then runs
shard ``i/N`` of the job for every ``i`` on the chosen executor; every shard writes its own part of
the one store, so together they equal a single run.

Executors: ``local`` (submitit's local processes — runs anywhere, used by the tests), ``slurm``
(submitit job array, ``sbatch`` must be on PATH) and ``dask`` (a ``distributed.LocalCluster`` by
default; with ``dask_cluster`` = ``slurm``/``pbs``/``sge`` a ``dask_jobqueue`` cluster).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fsv.errors import FsvInputError, FsvJobError
from fsv.pipeline.extract import ExtractSummary, RunOptions, extract
from fsv.pipeline.plan import ExtractConfig

log = logging.getLogger(__name__)

EXECUTORS = ("local", "slurm", "dask")


@dataclass(frozen=True)
class ExtractJob:
    """One extraction: manifest (file or dataset name), data root, store folder, config, options."""

    manifest: str
    root: Path
    store: Path
    config: ExtractConfig
    options: RunOptions = RunOptions()

    def shard(self, i: int, n: int) -> "ExtractJob":
        return replace(self, options=replace(self.options, shard=(i, n), progress=False))


def run_job(job: ExtractJob) -> ExtractSummary:
    """Run one (shard of an) extraction job in this process; the entry point of every executor."""
    from fsv.pipeline.manifests import load_manifest

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    manifest = load_manifest(job.manifest, job.root)
    return extract(manifest, job.root, job.store, job.config, job.options)


@dataclass(frozen=True)
class ClusterOptions:
    """Scheduler settings (SLURM through submitit, or dask-jobqueue)."""

    folder: Path = Path("fsv-jobs")
    partition: str | None = None
    time_min: int = 240
    cpus_per_task: int = 4
    gpus_per_node: int = 0
    mem_gb: int = 16
    array_parallelism: int = 64
    dask_cluster: str = "local"
    dask_workers: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


def prepare_store(job: ExtractJob) -> None:
    """Create the store (spec, manifest hash) before the shards start writing into it."""
    from fsv.pipeline.manifests import load_manifest
    from fsv.pipeline.store import FeatureStore

    manifest = load_manifest(job.manifest, job.root)
    FeatureStore.create(job.store, job.config.spec(), manifest_sha256=manifest.sha256, dataset=manifest.dataset)


def submit_extract(job: ExtractJob, shards: int, executor: str, cluster: ClusterOptions = ClusterOptions(), *, wait: bool = True) -> list[ExtractSummary] | list[str]:
    """Run ``shards`` shards of ``job`` on ``executor``; returns their summaries (or, with
    ``wait=False`` on SLURM, the job ids). Raises :class:`FsvJobError` listing the shards that
    failed (the others' videos are committed; re-submitting skips them)."""
    if shards < 1:
        raise FsvInputError(f"--shards must be >= 1, got {shards}")
    prepare_store(job)
    parts = [job.shard(i, shards) for i in range(shards)]
    return run_array(run_job, parts, executor, cluster, wait=wait, name="fsv-extract")


def run_array(fn: Callable[[Any], Any], items: list[Any], executor: str, cluster: ClusterOptions, *, wait: bool = True, name: str = "fsv") -> list[Any]:
    """``fn(item)`` for every item as one job each on ``executor``; results in order (or, with
    ``wait=False`` on submitit, the job ids). Raises :class:`FsvJobError` listing failed jobs."""
    if executor not in EXECUTORS:
        raise FsvInputError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "dask":
        return _run_dask(fn, items, cluster)
    return _run_submitit(fn, items, executor, cluster, wait=wait, name=name)


def _run_submitit(fn: Callable[[Any], Any], parts: list[Any], executor: str, cluster: ClusterOptions, *, wait: bool, name: str) -> list[Any]:
    import submitit

    ex = submitit.AutoExecutor(folder=cluster.folder / "%j", cluster="local" if executor == "local" else "slurm")
    params: dict[str, Any] = {"timeout_min": cluster.time_min, "cpus_per_task": cluster.cpus_per_task, "name": name}
    if executor == "slurm":
        params.update(slurm_array_parallelism=cluster.array_parallelism, slurm_mem_per_node=f"{cluster.mem_gb}G")
        if cluster.partition:
            params["slurm_partition"] = cluster.partition
        if cluster.gpus_per_node:
            params["gpus_per_node"] = cluster.gpus_per_node
    params.update(cluster.extra)
    ex.update_parameters(**params)
    jobs = ex.map_array(fn, parts)
    log.info("submitted %d job(s) to %s: %s", len(jobs), executor, ", ".join(j.job_id for j in jobs))
    if not wait:
        return [j.job_id for j in jobs]
    results, errors = [], []
    for i, j in enumerate(jobs):
        try:
            results.append(j.result())
        except Exception as e:  # submitit re-raises the job's error, or reports a dead job
            errors.append(f"job {i + 1}/{len(jobs)} (id {j.job_id}, logs in {cluster.folder / j.job_id}): {str(e).strip().splitlines()[-1][:300]}")
    if errors:
        raise FsvJobError("; ".join(errors))
    return results


def _run_dask(fn: Callable[[Any], Any], parts: list[Any], cluster: ClusterOptions) -> list[Any]:
    from distributed import Client, LocalCluster

    if cluster.dask_cluster == "local":
        dc = LocalCluster(n_workers=cluster.dask_workers, threads_per_worker=1, processes=True, dashboard_address=None)
    else:
        try:
            import dask_jobqueue
        except ImportError as e:
            raise FsvInputError(f"--dask-cluster {cluster.dask_cluster} needs dask-jobqueue: pip install dask-jobqueue") from e
        cls = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster"}.get(cluster.dask_cluster)
        if cls is None:
            raise FsvInputError(f"--dask-cluster must be local, slurm, pbs or sge, got {cluster.dask_cluster!r}")
        dc = getattr(dask_jobqueue, cls)(
            cores=cluster.cpus_per_task, memory=f"{cluster.mem_gb}GB", walltime=f"{cluster.time_min // 60:02d}:{cluster.time_min % 60:02d}:00",
            queue=cluster.partition, log_directory=str(cluster.folder), **cluster.extra,
        )
        dc.scale(jobs=min(cluster.dask_workers, len(parts)))
    with dc, Client(dc) as client:
        futures = client.map(fn, parts, pure=False)
        results, errors = [], []
        for i, f in enumerate(futures):
            try:
                results.append(f.result())
            except Exception as e:  # the shard's own error, raised again here
                errors.append(f"job {i + 1}/{len(parts)}: {type(e).__name__}: {e}")
    if errors:
        raise FsvJobError("; ".join(errors))
    return results
