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
