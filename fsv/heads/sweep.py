"""Seed sweeps of a training run as a job array (the executors of :mod:`fsv.jobs`).

Each seed's run is checked where it is submitted (its data can give the run's episodes or
batches; CUDA only where the jobs get a GPU), so bad input stops before anything is queued; a job
requeued at its time limit resumes from its ``last.pt``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from typing import Any

from fsv.errors import FsvInputError
from fsv.heads.engine.loop import TrainResult
from fsv.heads.engine.run_folder import DataSource
from fsv.heads.setup import RunRequest, plan_run
from fsv.heads.tasks import task_of
from fsv.jobs.options import ClusterOptions
from fsv.jobs.run import Submitter


@dataclass(frozen=True)
class TrainJob:
    """One seed of a sweep: its configuration, data and run folder."""

    config: Any  # the run's configuration (its kind's configuration class)
    source: DataSource
    run: Path
    device: str = "auto"


def seed_jobs(req: RunRequest, seeds: int, device: str = "auto") -> list[TrainJob]:
    """Seeds ``0..seeds-1`` of the run ``req`` describes, seed ``k`` in ``req.run/seed<k>``."""
    if seeds < 1:
        raise FsvInputError(f"--seeds must be >= 1, got {seeds}")
    jobs = []
    for k in range(seeds):
        seed_req = replace(req, run=req.run / f"seed{k}", seed=k)
        cfg, _, source = plan_run(seed_req)
        jobs.append(TrainJob(cfg, source, seed_req.run, device))
    return jobs


def run_train_job(job: TrainJob) -> TrainResult:
    """Entry point of every executor: train (or resume) one seed."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return task_of(job.config.head).train(job.config, job.source, job.run, device=job.device)


def check_job(job: TrainJob) -> None:
    """Raise :class:`FsvInputError` when the job's data cannot give its run's training data."""
    task_of(job.config.head).check_data(job.config, *job.source.open())


def submit_train(
    jobs: list[TrainJob], executor: str, cluster: ClusterOptions, *, wait: bool = True
) -> list[TrainResult] | list[str]:
    """Train every job on ``executor`` and wait for them (re-submitting resumes unfinished seeds);
    with ``wait=False`` on submitit, the job ids."""
    jobs = [replace(j, device=cluster.check_device(executor, j.device)) for j in jobs]
    if jobs:
        check_job(jobs[0])  # the seeds share their data
    return Submitter(executor, cluster, "fsv-train").run(run_train_job, jobs, wait=wait)
