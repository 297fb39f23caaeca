"""What a run reads and where it goes when the command does not say.

* **The runs root**: ``$FSV_RUNS``, else ``runs = "..."`` in the datasets file
  (:mod:`fsv.locations`), else ``./runs``.
* **A run folder** named for what it is: ``<runs root>/<head>-<dataset>-<shot>shot``
  (``<head>-<dataset>`` for weakly-supervised heads, which take no shots). Running the same command
  again resumes it; ``--new`` starts a fresh one beside it (``-2``, ``-3``, ...), never overwriting.
* **The dataset a head reads**: among the configured datasets (``fsv datasets set``), those with
  one store the head can read (:func:`fsv.run_setup.dataset_store`); the one marked
  ``--default`` (an error when it has no such store), else the first of the head card's
  ``preferred_datasets``, else the only one. Anything else is an input error listing every configured dataset and its stores,
  with the command that settles it.
* **The most recent run of a head** (``fsv eval trx``): the run or sweep folder under the runs
  root whose configuration names that head, most recently written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fsv.errors import FsvInputError

RUNS_ENV = "FSV_RUNS"


def runs_root() -> Path:
    """Where run folders go by default (see the module docstring)."""
    from fsv.locations import read_datasets_file

    text = os.environ.get(RUNS_ENV) or read_datasets_file().get("runs")
    return Path(text).expanduser() if text else Path.cwd() / "runs"


def run_name(head: str, dataset: str, cfg: Any) -> str:
    """``<head>-<dataset>-<shot>shot``, or ``<head>-<dataset>`` for heads without shots."""
    from fsv.heads.base import head_card

    return f"{head}-{dataset}" if head_card(head).task == "wtal" else f"{head}-{dataset}-{cfg.shot}shot"


def default_run_folder(name: str, *, new: bool) -> tuple[Path, str]:
    """The folder of run ``name`` under the runs root and what happens to it (``new``,
    ``resumed``, or ``new, beside ...``): with ``new``, the first free ``name-K`` when ``name`` is taken."""
    root = runs_root()
    folder = root / name
    if not folder.exists():
        return folder, "new"
    if not new:
        return folder, "resumed"
    k = 2
    while (root / f"{name}-{k}").exists():
        k += 1
    return root / f"{name}-{k}", f"new, beside {folder}"


def _readable_store(head: str, dataset: str, layers: list) -> tuple[Path | None, str]:
    """The store of ``dataset`` that ``head`` reads, or None and why not."""
    from fsv.presets import run_config
    from fsv.run_setup import dataset_store

    try:
        cfg, _ = run_config(head, dataset, layers)
        return dataset_store(head, dataset, cfg.view), ""
    except FsvInputError as e:
        return None, str(e)


def default_dataset(head: str, layers: list) -> tuple[str, str]:
    """The dataset ``head`` reads when the command names none, and why (see the module docstring)."""
    from fsv.heads.base import head_card
    from fsv.locations import configured_names, datasets_file, is_default, locate

    names = configured_names()
    stores = {n: _readable_store(head, n, layers) for n in names}
    fits = [n for n in names if stores[n][0] is not None]
    marked = [n for n in names if is_default(n)]
    if marked and marked[0] not in fits:
        raise FsvInputError(
            f"{marked[0]} is marked --default but has no store {head} reads ({stores[marked[0]][1]}); "
            f"extract one (fsv extract --dataset {marked[0]} --backbone B), pass --dataset NAME, or mark another with fsv datasets set NAME --default"
        )
    preferred = [n for n in head_card(head).preferred_datasets if n in fits]
    if marked:
        return marked[0], f"marked --default, with a store {head} reads"
    if not marked and preferred:
        return preferred[0], f"{head}'s preferred dataset among those configured"
    if not marked and len(fits) == 1:
        return fits[0], f"the one configured dataset with a store {head} reads"
    listing = (
        "; ".join(
            f"{n} (stores in {locate(n).stores / n}: {stores[n][0].name if stores[n][0] else 'none ' + head + ' reads'})"
            for n in names
        )
        or "none"
    )
    which = fits
    problem = (
        f"{len(which)} configured datasets have a store {head} reads ({', '.join(which)})"
        if which
        else f"no configured dataset has a store {head} reads"
    )
    fix = (
        "pass --dataset NAME, or mark one: fsv datasets set NAME --default"
        if which
        else "configure one (fsv datasets set NAME --root DIR) and extract its features (fsv extract --dataset NAME --backbone B), "
        "or pass --store STORE --manifest FILE"
    )
    raise FsvInputError(f"{problem}; configured in {datasets_file()}: {listing}. {fix}")


RUN_FILES = ("config.json", "metrics.csv", "last.pt", "best.pt")


def _last_trained(folder: Path) -> float:
    """When training last wrote into run or sweep ``folder`` (reports or predictions written into
    it later do not count)."""
    times = [p.stat().st_mtime for name in RUN_FILES for p in (*folder.glob(name), *folder.glob(f"seed*/{name}"))]
    return max(times, default=folder.stat().st_mtime)


def latest_run(head: str) -> Path:
    """The run (or seed sweep) folder of ``head`` under the runs root that training wrote last."""
    from fsv.runs import read_run_record

    root = runs_root()
    found = []
    for config in sorted(root.glob("*/config.json")) + sorted(root.glob("*/seed*/config.json")):
        try:
            if read_run_record(config.parent)["config"]["head"] == head:
                found.append(
                    config.parent.parent
                    if config.parent.name.startswith("seed") and config.parent.parent != root
                    else config.parent
                )
        except (FsvInputError, KeyError, TypeError):
            continue
    if not found:
        raise FsvInputError(
            f"no {head} run under {root} (the runs root: ${RUNS_ENV} or `runs` in the datasets file); "
            f"train one with fsv train-head {head}, or give the run folder"
        )
    return max(set(found), key=_last_trained)


def resolve_run(text: str) -> tuple[Path, str | None]:
    """A run folder given as a path, or a head's name standing for its most recent run (then also
    the line saying which run that is)."""
    import fsv.heads  # noqa: F401  (registers the heads)
    from fsv.heads.base import HEADS

    path = Path(text)
    if path.exists():
        return path, None
    if text not in HEADS:
        raise FsvInputError(f"{text}: no such run folder, and not a head ({', '.join(sorted(HEADS))})")
    run = latest_run(text)
    return run, f"run: {run} (the most recent {text} run)"
