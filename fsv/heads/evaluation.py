"""``fsv eval`` of any run folder or seed sweep: one JSON-ready dict, whatever the kind of run.

A run folder (one ``config.json``) is scored by its kind of run (:meth:`fsv.heads.tasks.base.Task.evaluate`):
recognition runs give mean accuracy ± 95% CI on the fixed test episodes, localization runs their
mAP table beside the random-proposal baseline. A sweep
folder (``seed0/``, ``seed1/``, ... from ``fsv submit train-head --seeds N``) gives each seed's
result under ``runs`` and their mean ± std (``mean_over_seeds``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from fsv.heads.tasks import load_run, task_of


def seed_runs(folder: Path) -> list[Path]:
    """The seed runs of a sweep folder (empty for a run folder)."""
    if (folder / "config.json").is_file():
        return []
    return sorted(p for p in folder.glob("seed*") if (p / "config.json").is_file())


def evaluate_folder(
    folder: Path,
    *,
    split: str = "test",
    episodes: int | None = None,
    benchmark: str | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """The evaluation of run or sweep folder ``folder`` (``"seeds"`` and ``"runs"`` for a sweep)."""
    seeds = seed_runs(folder)
    results = []
    for run in seeds or [folder]:
        task = load_run(run)[0]
        results.append(task.evaluate(run, split=split, episodes=episodes, benchmark=benchmark, device=device))
    return task.mean_over_seeds(results) if seeds else results[0]


def eval_table(folder: Path, split: str, payload: dict[str, Any]) -> Table:
    """``fsv eval``'s table of :func:`evaluate_folder`'s payload for ``folder``."""
    return task_of(payload["head"]).eval_table(folder, split, payload)
