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
        from fsv.heads.base import head_card

        recognition = head_card(self.head).task == "recognition"
        if self.way is not None and not recognition:
            raise FsvInputError(f"--way does not apply to {self.head} (a localization head)")
        if self.episodes is not None and not recognition:
            raise FsvInputError(f"{self.head} trains in optimiser steps, not episodes: use --steps N")
        if self.steps is not None and recognition:
            raise FsvInputError(f"{self.head} trains on episodes: use --episodes N")
        length = (
            {"train_episodes": ("--episodes", self.episodes)}
            if recognition
            else {"train_steps": ("--steps", self.steps)}
        )
        options = {"way": ("--way", self.way), "shot": ("--shot", self.shot), **length, "seed": ("--seed", self.seed)}
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
    from fsv.pipeline.store import FeatureStore

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
    from fsv.locations import locate
    from fsv.heads.base import head_card

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
    (:mod:`fsv.run_defaults`), and the lines that say what was chosen (printed first)."""
    from dataclasses import replace

    from fsv.run_defaults import default_dataset, default_run_folder, run_name

    lines = []
    if req.dataset is None and not req.stores and req.manifest is None:
        dataset, why = default_dataset(req.head, req.layers())
        req = replace(req, dataset=dataset)
        lines.append(f"dataset: {dataset} ({why})")
    if req.run is None:
        dataset = req.dataset if req.dataset is not None else Manifest.read(req.manifest).dataset
        cfg, _ = run_config(req.head, dataset, req.layers())
        folder, status = default_run_folder(run_name(req.head, dataset, cfg), new=req.new)
        req = replace(req, run=folder)
        lines.append(f"run folder: {folder} ({status})")
    elif req.new:
        raise FsvInputError("--new names a fresh default run folder; with --out, give a new folder instead")
    return req, lines


def plan_run(req: RunRequest, *, data: bool = True) -> tuple[Any, Resolved, DataSource | None]:
    """``(configuration, its resolution, data source)`` of the run ``req`` (its run folder given,
    see :func:`with_defaults`); ``data=False`` resolves the configuration only (no store is looked for)."""
    manifest = run_manifest(req)
    cfg, resolved = run_config(req.head, manifest.dataset, req.layers())
    return cfg, resolved, data_source(req, cfg.view, manifest) if data else None
