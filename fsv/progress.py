"""Progress of every long-running job: rich bars with rate and ETA in a terminal; otherwise
(cluster job logs, ``nohup``, CI) a log line per task at a steady interval through ``logging``."""

from __future__ import annotations

import datetime
import logging
import os
import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import ProgressColumn, Task, TaskID
from rich.text import Text

console = Console(stderr=True)
log = logging.getLogger("fsv.progress")
# Seconds between two log lines of one task when stderr is not a terminal.
LOG_EVERY_S = float(os.environ.get("FSV_PROGRESS_EVERY_S", "30"))


class RateColumn(ProgressColumn):
    """Items per second, with the task's ``unit`` field (``videos/s``, ``files/s``...)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "it")
        if speed is None:
            return Text(f"-- {unit}/s", style="progress.data.speed")
        return Text(f"{speed:,.1f} {unit}/s", style="progress.data.speed")


def make_progress(*, disable: bool | None = None) -> "LoggedProgress":
    """A progress display: description, bar, n/total, %, rate, elapsed and ETA.

    With ``disable=None`` it is a bar when stderr is a terminal, else log lines (see
    :class:`LoggedProgress`); ``disable=True`` silences it, ``False`` forces the bar.
    """
    tty = sys.stderr.isatty()
    return LoggedProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not tty if disable is None else disable,
        log_lines=disable is None and not tty,
    )


class LoggedProgress(Progress):
    """A rich :class:`~rich.progress.Progress` that, with ``log_lines``, logs each task's done /
    total, rate and ETA on logger ``fsv.progress`` (INFO) every :data:`LOG_EVERY_S` seconds and
    when it finishes, instead of drawing bars."""

    def __init__(self, *columns: str | ProgressColumn, log_lines: bool = False, **kwargs: object) -> None:
        super().__init__(*columns, **kwargs)
        self._log_lines = log_lines
        self._logged: dict[TaskID, float] = {}

    def add_task(self, description: str, *args: object, **kwargs: object) -> TaskID:
        task = super().add_task(description, *args, **kwargs)
        self._logged[task] = time.monotonic()
        return task

    def update(self, task_id: TaskID, **kwargs: object) -> None:
        super().update(task_id, **kwargs)
        self._maybe_log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_log(task_id)

    def stop(self) -> None:
        if self._log_lines:
            for task in self.tasks:
                if task.completed and self._logged.get(task.id, 0.0) >= 0:
                    self._log(task)
        super().stop()

    def _maybe_log(self, task_id: TaskID) -> None:
        if not self._log_lines:
            return
        now = time.monotonic()
        last = self._logged.get(task_id, now)
        task = self._tasks[task_id]
        if last >= 0 and (task.finished or now - last >= LOG_EVERY_S):
            self._log(task)

    def _log(self, task: Task) -> None:
        unit = task.fields.get("unit", "it")
        speed = task.finished_speed or task.speed
        rate = f", {speed:,.1f} {unit}/s" if speed else ""
        if task.total:
            eta = (
                ""
                if task.finished or not speed
                else f", ETA {datetime.timedelta(seconds=round((task.total - task.completed) / speed))}"
            )
            log.info(
                "%s: %d/%d %s (%.0f%%)%s%s",
                task.description.strip(),
                task.completed,
                task.total,
                unit,
                100 * task.completed / task.total,
                rate,
                eta,
            )
        else:
            log.info("%s: %d %s%s", task.description.strip(), task.completed, unit, rate)
        # a finished task is logged once (marked by a negative time)
        self._logged[task.id] = -1.0 if task.finished else time.monotonic()


class StatusLine:
    """A job's changing status: a rich bar in a terminal; otherwise one line on stderr whenever the
    text changes, and at least every ``every_s`` seconds while it does not (CI and batch logs)."""

    def __init__(
        self, description: str, total: int, *, unit: str = "jobs", every_s: float = 60.0, disable: bool | None = None
    ) -> None:
        self._tty = sys.stderr.isatty() if disable is None else not disable
        self._progress = make_progress(disable=not self._tty)
        self._task = self._progress.add_task(description, total=total, unit=unit)
        self._description, self._every_s = description, every_s
        self._last_text, self._last_time = "", 0.0

    def __enter__(self) -> "StatusLine":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def update(self, text: str, completed: int) -> None:
        import time

        self._progress.update(self._task, completed=completed, description=f"{self._description} {text}")
        now = time.monotonic()
        if not self._tty and (text != self._last_text or now - self._last_time >= self._every_s):
            console.print(f"{self._description}: {text}", markup=False, highlight=False)
            self._last_text, self._last_time = text, now
