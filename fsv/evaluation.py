"""``fsv eval`` of any run folder or seed sweep: one JSON-ready dict, whatever the kind of run.

A run folder (one ``config.json``) is scored by its configuration's ``evaluate_run``: recognition
runs give mean accuracy ± 95% CI on the fixed test episodes (:func:`fsv.train.evaluate`),
localization runs their mAP table (:func:`fsv.localization.trainer.evaluate_localization`). A sweep
folder (``seed0/``, ``seed1/``, ... from ``fsv submit train-head --seeds N``) gives each seed's
result under ``runs`` and their mean ± std (``mean_over_seeds``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fsv.errors import FsvInputError
from fsv.presets import config_class
from fsv.runs import read_run_record


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
    runs = seeds or [folder]
    kind = config_class(read_run_record(runs[0])["config"]["head"])
    results = [kind.evaluate_run(r, split=split, episodes=episodes, benchmark=benchmark, device=device) for r in runs]
    return kind.mean_over_seeds(results) if seeds else results[0]


def no_benchmark(benchmark: str | None) -> None:
    """``--benchmark`` is for few-shot common localization runs only."""
    if benchmark is not None:
        raise FsvInputError("--benchmark applies to few-shot common localization runs (cdcca, protomatch)")
