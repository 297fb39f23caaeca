"""Seed sweeps of a training run as a job array (the executors of :mod:`fsv.pipeline.cluster`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from fsv.localization.config import LocConfig
from fsv.pipeline.cluster import ClusterOptions, run_array
from fsv.train import DataSource, TrainConfig, TrainResult, train


@dataclass(frozen=True)
class TrainJob:
    """One seed of a sweep: its configuration, data and run folder."""

    config: TrainConfig | LocConfig
    source: DataSource
    run: Path
    device: str = "auto"


def run_train_job(job: TrainJob) -> TrainResult:
    """Entry point of every executor: train (or resume) one seed."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if isinstance(job.config, LocConfig):
        from fsv.localization.trainer import train_localization

        return train_localization(job.config, job.source, job.run, device=job.device)
    return train(job.config, job.source, job.run, device=job.device)


def submit_train(jobs: list[TrainJob], executor: str, cluster: ClusterOptions) -> list[TrainResult]:
    """Train every job on ``executor`` and wait for them (re-submitting resumes unfinished seeds)."""
    return run_array(run_train_job, jobs, executor, cluster, name="fsv-train")
