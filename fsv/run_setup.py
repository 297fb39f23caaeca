"""What a training run reads, from the command line's words: its manifest, its configuration
(:mod:`fsv.presets`) and its stores, found in the dataset's store folder by what the head card
says it reads.

A run that has started reads its own copy of the manifest (``RUN/manifest.jsonl``), so a resumed
run sees the splits it began with; the manifest's ``dataset`` chooses the card's dataset preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsv.errors import FsvInputError
from fsv.pipeline.manifests import Manifest, load_manifest
from fsv.presets import Layer, Resolved, run_config, user_layers
from fsv.runs import RUN_MANIFEST, DataSource


@dataclass(frozen=True)
class RunRequest:
    """A training run as the user asked for it: the head, the data (``dataset`` by name, or
    ``manifest`` and ``stores``), and the run folder."""

    head: str
    run: Path
    dataset: str | None = None
    manifest: Path | None = None
    stores: tuple[Path, ...] = ()


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


def _step_rank(path: Path) -> int:
    """Dimensions of one step of the first field of the store at ``path`` (1: vectors, 3: grids)."""
    from fsv.pipeline.store import FeatureStore

    return len(next(iter(FeatureStore.open(path).spec.fields.values())).shape)


def dataset_store(head: str, dataset: str, view: str) -> Path:
    """The one store in ``dataset``'s store folder that ``head`` can read in ``view``: snippet
    vectors for localization heads (the one named for the card's ``preferred_spec`` when several
    fit), ResNet-50
    grids for the ``patches`` and ``grid`` views, any store for ``pooled``."""
    from fsv.config import locate
    from fsv.heads.base import head_card

    folder = locate(dataset).stores / dataset
    candidates = sorted(folder.glob("*.zarr")) if folder.is_dir() else []
    if view == "snippets":
        fits = [p for p in candidates if _step_rank(p) == 1]
        preferred = head_card(head).preferred_spec
        named = [p for p in fits if preferred and p.name.startswith(preferred)]  # fsv extract names stores <spec name>-<key>.zarr
        fits = named if len(named) == 1 else fits
    else:
        fits = [p for p in candidates if view == "pooled" or _step_rank(p) == 3]
    if len(fits) != 1:
        found = ", ".join(p.name for p in fits) or "none"
        raise FsvInputError(f"{head} needs one {view} store of {dataset} in {folder} (found: {found}); pass --store PATH or run fsv extract first")
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


def option_layers(head: str, config: Path | None, sets: list[str] | None, *, way: int | None = None, shot: int | None = None,
                  episodes: int | None = None, seed: int | None = None) -> list[Layer]:
    """The user's layers: ``--config``, ``--set`` and the named options (``--way`` is an input
    error for localization heads)."""
    from fsv.heads.base import head_card

    if way is not None and head_card(head).task != "recognition":
        raise FsvInputError(f"--way does not apply to {head} (a localization head)")
    options = {"way": ("--way", way), "shot": ("--shot", shot), "train_episodes": ("--episodes", episodes), "seed": ("--seed", seed)}
    return user_layers(config, sets, options)


def plan_run(req: RunRequest, given: list[Layer], *, data: bool = True) -> tuple[Any, Resolved, DataSource | None]:
    """``(configuration, its resolution, data source)`` of the run ``req`` with the user's
    ``given`` layers; ``data=False`` resolves the configuration only (no store is looked for)."""
    manifest = run_manifest(req)
    cfg, resolved = run_config(req.head, manifest.dataset, given)
    return cfg, resolved, data_source(req, cfg.view, manifest) if data else None
