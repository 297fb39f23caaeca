"""The kinds of run, by the name a head card gives in ``task``; what the commands call on a run
whatever its kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fsv.errors import FsvInputError
from fsv.heads.engine.config import Layer
from fsv.heads.engine.loop import TrainResult
from fsv.heads.engine.run_folder import DataSource, read_run_record
from fsv.heads.models import head_card
from fsv.heads.tasks.base import Task
from fsv.heads.tasks.common import COMMON
from fsv.heads.tasks.recognition import RECOGNITION
from fsv.heads.tasks.wtal import WTAL

TASKS: dict[str, Task] = {t.name: t for t in (RECOGNITION, WTAL, COMMON)}


def task_of(head: str) -> Task:
    """The kind of run of ``head`` (its card's ``task``)."""
    task = head_card(head).task
    if task not in TASKS:
        raise FsvInputError(f"head {head} names the kind of run {task!r}; fsv has {', '.join(TASKS)}")
    return TASKS[task]


def load_run(run: Path) -> tuple[Task, Any, DataSource]:
    """Run folder ``run``'s kind, configuration and data source."""
    task = task_of(read_run_record(run)["config"]["head"])
    return (task, *task.load(run))


def config_for(head: str, overrides: dict[str, Any] | None = None, dataset: str | None = None) -> Any:
    """The configuration of ``head``: its paper preset and its preset for ``dataset``, with
    ``overrides`` applied (as ``--set`` would)."""
    return task_of(head).resolve(head, dataset, [Layer("overrides", overrides or {})])[0]


def train(
    cfg: Any, source: DataSource, run: Path, *, device: str = "auto", stop_after: int | None = None
) -> TrainResult:
    """Train (or resume) the run ``cfg`` into ``run`` (its kind's :meth:`Task.train`)."""
    return task_of(cfg.head).train(cfg, source, run, device=device, stop_after=stop_after)


__all__ = ["TASKS", "Task", "config_for", "load_run", "task_of", "train"]
