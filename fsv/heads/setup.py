"""What a training run reads, from the command line's words: its manifest, its configuration
(its kind's :meth:`~fsv.heads.tasks.base.Task.resolve`) and its stores, found in the dataset's
store folder by what the head card says it reads, and where it goes.

A run that has started reads its own copy of the manifest (``RUN/manifest.jsonl``), so a resumed
run sees the splits it began with; the manifest's ``dataset`` chooses the card's dataset preset.

When the command does not say:

* **The runs root**: ``$FSV_RUNS``, else ``runs = "..."`` in the datasets file
  (:mod:`fsv.locations`), else ``./runs``.
* **A run folder** named for what it is: ``<runs root>/<head>-<dataset>-<shot>shot``
  (``<head>-<dataset>`` for weakly-supervised heads, which take no shots). Running the same command
  again resumes it; ``--new`` starts a fresh one beside it (``-2``, ``-3``, ...), never overwriting.
* **The dataset a head reads**: among the configured datasets (``fsv datasets set``), those with
  one store the head can read (:func:`fsv.heads.setup.dataset_store`); the one marked
  ``--default`` (an error when it has no such store), else the first of the head card's
  ``preferred_datasets``, else the only one. Anything else is an input error listing every configured dataset and its stores,
  with the command that settles it.
* **The most recent run of a head** (``fsv eval trx``): the run or sweep folder under the runs
  root whose configuration names that head, most recently written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fsv.errors import FsvInputError
from fsv.heads.engine.config import Layer, Resolved, user_layers
from fsv.heads.engine.run_folder import RUN_MANIFEST, DataSource, read_run_record
from fsv.heads.models import head_card, head_cards
from fsv.heads.tasks import task_of
from fsv.locations import configured_names, datasets_file, is_default, locate, read_datasets_file
from fsv.pipeline.manifests import Manifest, load_manifest
from fsv.pipeline.store import FeatureStore

RUNS_ENV = "FSV_RUNS"


@dataclass(frozen=True)
class RunRequest:
    """A training run as the user asked for it (``fsv train-head``'s options): the head, the run
    folder, the data (``dataset`` by name, or ``manifest`` and ``stores``) and the user's
    configuration layers (``config`` file, ``sets``, then the named options; None = not given)."""

    head: str
    run: Path | None = None
    dataset: str | None = None
    manifest: Path | None = None
    stores: tuple[Path, ...] = ()
    way: int | None = None
    shot: int | None = None
    episodes: int | None = None
    steps: int | None = None
    seed: int | None = None
    config: Path | None = None
    sets: tuple[str, ...] = ()
    new: bool = False

    def layers(self) -> list[Layer]:
        """The user's layers: ``--config``, ``--set`` and the named options. Recognition heads train
        for ``--episodes`` episodes, localization heads for ``--steps`` optimiser steps; the other
        word, and ``--way`` for a localization head, is an input error."""
        named = task_of(self.head).options(self.head, way=self.way, episodes=self.episodes, steps=self.steps)
        options = {**named, "shot": ("--shot", self.shot), "seed": ("--seed", self.seed)}
        return user_layers(self.config, list(self.sets), options)


def parse_stores(text: str | None) -> tuple[Path, ...]:
    """``--store A,B`` -> the store folders, in order (their features are concatenated)."""
    return tuple(Path(p) for p in (text or "").split(",") if p)


def run_manifest(req: RunRequest) -> Manifest:
    """The manifest the run reads: its own copy once it has started, else ``req.manifest``, else
    the dataset's."""
    copy = req.run / RUN_MANIFEST
    if copy.is_file():
        return Manifest.read(copy)
    if req.manifest is not None:
        return Manifest.read(req.manifest)
    if req.dataset is not None:
        return load_manifest(req.dataset)
    raise FsvInputError("give --dataset NAME, or --store STORE[,STORE2] --manifest FILE")


def _fits(path: Path, view: str) -> bool:
    """Whether the store at ``path`` can serve ``view``: snippet vectors for ``snippets``, a
    spatial grid (one field of ``[D, h, w]`` steps: ResNet-50's, a transformer's ``--grid``) for
    ``patches`` and ``grid``, anything for ``pooled``."""
    spec = FeatureStore.open(path).spec
    ranks = {len(f.shape) for f in spec.fields.values()}
    if view == "snippets":
        return spec.sampling.get("kind") == "snippets" and 1 in ranks
    return view == "pooled" or 3 in ranks


def dataset_store(head: str, dataset: str, view: str) -> Path:
    """The one store in ``dataset``'s store folder that ``head`` can read in ``view``: snippet
    vectors for localization heads (the one named for the card's ``preferred_spec`` when several
    fit), spatial grids (ResNet-50's, or a CLIP store's ``grid`` field) for the ``patches`` and
    ``grid`` views, any store for ``pooled``."""
    folder = locate(dataset).stores / dataset
    candidates = sorted(folder.glob("*.zarr")) if folder.is_dir() else []
    fits = [p for p in candidates if _fits(p, view)]
    if view == "snippets":
        preferred = head_card(head).preferred_spec
        named = [
            p for p in fits if preferred and p.name.startswith(preferred)
        ]  # fsv extract names stores <spec name>-<key>.zarr
        fits = named if len(named) == 1 else fits
    if len(fits) != 1:
        found = ", ".join(p.name for p in fits) or "none"
        raise FsvInputError(
            f"{head} needs one {view} store of {dataset} in {folder} (found: {found}); pass --store PATH or run fsv extract first"
        )
    return fits[0]


def data_source(req: RunRequest, view: str, manifest: Manifest) -> DataSource:
    """The manifest (copied into the run folder when the run starts) and stores the run reads;
    ``manifest`` is :func:`run_manifest`'s."""
    if req.stores:
        if req.manifest is None and req.dataset is None:
            raise FsvInputError("--store needs --manifest FILE (or --dataset NAME)")
        paths = req.stores
    elif req.dataset is not None:
        paths = (dataset_store(req.head, req.dataset, view),)
    else:
        raise FsvInputError("give --dataset NAME, or --store STORE[,STORE2] --manifest FILE")
    if req.manifest is not None:
        return DataSource(req.manifest, paths)
    copy = req.run / RUN_MANIFEST
    if copy.is_file():  # the run has started: it reads its own copy
        return DataSource(copy, paths)
    return DataSource(copy, paths, built=manifest)


def with_defaults(req: RunRequest) -> tuple[RunRequest, list[str]]:
    """``req`` with its dataset and run folder filled in where the command gave none
    (see the module docstring), and the lines that say what was chosen (printed first)."""
    lines = []
    if req.dataset is None and not req.stores and req.manifest is None:
        dataset, why = default_dataset(req.head, req.layers())
        req = replace(req, dataset=dataset)
        lines.append(f"dataset: {dataset} ({why})")
    if req.run is None:
        dataset = req.dataset if req.dataset is not None else Manifest.read(req.manifest).dataset
        task = task_of(req.head)
        cfg, _ = task.resolve(req.head, dataset, req.layers())
        folder, status = default_run_folder(task.run_name(req.head, dataset, cfg), new=req.new)
        req = replace(req, run=folder)
        lines.append(f"run folder: {folder} ({status})")
    elif req.new:
        raise FsvInputError("--new names a fresh default run folder; with --out, give a new folder instead")
    return req, lines


def plan_run(req: RunRequest, *, data: bool = True) -> tuple[Any, Resolved, DataSource | None]:
    """``(configuration, its resolution, data source)`` of the run ``req`` (its run folder given,
    see :func:`with_defaults`); ``data=False`` resolves the configuration only (no store is looked for)."""
    manifest = run_manifest(req)
    cfg, resolved = task_of(req.head).resolve(req.head, manifest.dataset, req.layers())
    return cfg, resolved, data_source(req, cfg.view, manifest) if data else None


def runs_root() -> Path:
    """Where run folders go by default (see the module docstring)."""
    text = os.environ.get(RUNS_ENV) or read_datasets_file().get("runs")
    return Path(text).expanduser() if text else Path.cwd() / "runs"


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
    try:
        cfg, _ = task_of(head).resolve(head, dataset, layers)
        return dataset_store(head, dataset, cfg.view), ""
    except FsvInputError as e:
        return None, str(e)


def default_dataset(head: str, layers: list) -> tuple[str, str]:
    """The dataset ``head`` reads when the command names none, and why (see the module docstring)."""
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
    path = Path(text)
    if path.exists():
        return path, None
    if text not in head_cards():
        raise FsvInputError(f"{text}: no such run folder, and not a head ({', '.join(sorted(head_cards()))})")
    run = latest_run(text)
    return run, f"run: {run} (the most recent {text} run)"
