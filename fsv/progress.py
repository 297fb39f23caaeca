"""Rich progress bars with rate and ETA, shared by every long-running job."""

from __future__ import annotations

import sys

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
from rich.progress import ProgressColumn, Task
from rich.text import Text

console = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Items per second, with the task's ``unit`` field (``videos/s``, ``files/s``...)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "it")
        if speed is None:
            return Text(f"-- {unit}/s", style="progress.data.speed")
        return Text(f"{speed:,.1f} {unit}/s", style="progress.data.speed")


def make_progress(*, disable: bool | None = None) -> Progress:
    """A progress display: description, bar, n/total, %, rate, elapsed and ETA.

    Disabled automatically when stderr is not a terminal (CI logs stay readable); pass ``disable``
    to force either way.
    """
    if disable is None:
        disable = not sys.stderr.isatty()
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )


class StatusLine:
    """A job's changing status: a rich bar in a terminal; otherwise one line on stderr whenever the
    text changes, and at least every ``every_s`` seconds while it does not (CI and batch logs)."""

    def __init__(self, description: str, total: int, *, unit: str = "jobs", every_s: float = 60.0, disable: bool | None = None) -> None:
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
