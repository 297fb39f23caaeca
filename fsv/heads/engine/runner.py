"""The one entry sequence of every training run, and loading its best model back.

:func:`train_run` reads top-down as ActionFormer's ``train.py`` does: resolve the device, open
the data, check it (before anything is written: a run that cannot start leaves no folder), create
and pin the run folder, write its configuration, seed, build the objective and the head, fit. What
differs by kind of run comes in as ``check`` and ``build`` (:class:`fsv.heads.tasks.base.Task`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from fsv.device import resolve_device
from fsv.errors import FsvInputError
from fsv.heads.engine.loop import Objective, Schedule, TrainResult, fit
from fsv.heads.engine.run_folder import DataSource, load_checkpoint, migrate_metrics, restore_model, write_run_config
from fsv.pipeline.manifests import Manifest
from fsv.pipeline.store import FeatureStore

Check = Callable[[Manifest, list[FeatureStore]], None]
Build = Callable[[Manifest, list[FeatureStore], Path], tuple[Objective, torch.nn.Module, Schedule]]


def train_run(
    cfg: Any,
    source: DataSource,
    run: Path,
    check: Check,
    build: Build,
    *,
    device: str = "auto",
    stop_after: int | None = None,
) -> TrainResult:
    """Train (or resume) the run ``cfg`` (a configuration dataclass with ``head`` and ``seed``) into
    ``run``: ``check`` raises on data that cannot give the run, ``build(manifest, stores, run)``
    gives the objective, the head and the schedule; ``stop_after`` ends this call early (the run
    stays resumable)."""
    dev = resolve_device(device)
    source = source.in_run(run)
    manifest, stores = source.open()
    check(manifest, stores)
    run.mkdir(parents=True, exist_ok=True)
    source = source.pin(run, manifest)
    write_run_config(run, asdict(cfg), source)
    migrate_metrics(run / "metrics.csv")
    torch.manual_seed(cfg.seed)
    objective, head, schedule = build(manifest, stores, run)
    return fit(objective, head.to(dev), cfg, schedule, run, dev, stop_after=stop_after)


def load_best(run: Path, head: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``head`` with the weights of ``run/best.pt`` (the model selected on validation)."""
    best = run / "best.pt"
    if not best.is_file():
        raise FsvInputError(f"{run} has no best.pt yet: training has not reached its first validation")
    restore_model(head, load_checkpoint(best, device)["model"], best)
    return head
