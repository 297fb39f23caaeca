"""A run folder: its configuration, its own copy of the manifest, checkpoints, metrics.

``config.json`` holds every value of the run and its data source (:func:`write_run_config`,
:func:`read_run_record`); ``manifest.jsonl`` is the manifest the run began with (a resumed or
evaluated run reads these splits, :class:`DataSource`); ``last.pt`` and ``best.pt`` are
checkpoints of tensors and plain values only (:func:`save_checkpoint`, :func:`load_checkpoint`,
read with ``weights_only``); ``metrics.csv`` has one row per validation (also TensorBoard events in
``tb/`` when tensorboard is installed, :func:`append_metrics`). The training loop that fills it is
:mod:`fsv.heads.engine.loop`.

Run folders written by earlier versions are migrated where they are read (:func:`migrate_config`,
:func:`migrate_resume_point`, :func:`migrate_metrics`), so they resume and evaluate as they did.
"""

from __future__ import annotations

import csv
import json
import pickle
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from fsv.errors import FsvInputError
from fsv.files import atomic_path, write_text_atomic
from fsv.pipeline.manifests import Manifest
from fsv.pipeline.store import FeatureStore

# A run folder's own copy of its manifest: resumed and evaluated runs read these splits.
RUN_MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class DataSource:
    """Where a run's features and splits come from: a manifest file, or (``built``) a dataset's
    manifest built in memory that :meth:`pin` writes to ``manifest`` once the run starts."""

    manifest: Path
    stores: tuple[Path, ...]
    built: Manifest | None = None

    def open(self) -> tuple[Manifest, list[FeatureStore]]:
        manifest = self.built if self.built is not None else Manifest.read(self.manifest)
        return manifest, [FeatureStore.open(p) for p in self.stores]

    def in_run(self, run: Path) -> "DataSource":
        """This source as run folder ``run`` sees it: the run's own copy of the manifest
        (``run/manifest.jsonl``) once the run has started, so a resumed run reads the splits it
        began with."""
        copy = run / RUN_MANIFEST
        return replace(self, manifest=copy, built=None) if copy.is_file() else self

    def pin(self, run: Path, manifest: Manifest) -> "DataSource":
        """Write ``manifest`` into ``run`` (unless it holds its copy already) and return the
        source that reads the copy."""
        copy = run / RUN_MANIFEST
        if not copy.is_file():
            manifest.write(copy)
        return replace(self, manifest=copy, built=None)


# Configuration keys renamed since run folders were first written: old name -> new name.
RENAMED_KEYS = {"tasks_per_update": "episodes_per_update"}


def migrate_config(config: dict[str, Any]) -> dict[str, Any]:
    """A ``config.json`` configuration with the keys of earlier versions renamed (:data:`RENAMED_KEYS`)."""
    if not isinstance(config, dict):
        raise TypeError(f"the configuration is a {type(config).__name__}, not an object")
    return {RENAMED_KEYS.get(k, k): v for k, v in config.items()}


def write_run_config(run: Path, config: dict[str, Any], source: DataSource) -> None:
    """Write ``run/config.json`` (every value and the data source), or check that the run folder
    already holds this configuration (resuming; a file of an earlier version is compared with its
    keys migrated, and left as it is); another configuration is refused."""
    path = run / "config.json"
    record = {"config": config, "data": {"manifest": str(source.manifest), "stores": [str(s) for s in source.stores]}}
    if path.is_file():
        previous = read_run_record(run)
        if previous["config"] != record["config"]:
            diff = ", ".join(k for k in record["config"] if previous["config"].get(k) != record["config"][k])
            raise FsvInputError(
                f"{run} holds a run with another configuration; use a new --out folder (differences: {diff})"
            )
    else:
        write_text_atomic(path, json.dumps(record, indent=2))


def save_checkpoint(path: Path, obj: dict[str, Any]) -> None:
    """Write ``obj`` to ``path`` atomically: a killed run keeps the previous checkpoint whole."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def migrate_resume_point(ck: dict[str, Any]) -> dict[str, Any]:
    """``last.pt`` in the current layout: recognition runs written before the one training loop
    counted ``episodes`` and kept bare losses; localization runs kept their total loss twice
    (``loss`` and ``total``, :data:`REPEATED_COLUMNS`)."""
    if "episodes" in ck:
        ck = {
            **ck,
            "steps": ck["episodes"],
            "best_step": ck["best_episode"],
            "loss_names": ["loss"],
            "losses": [[x] for x in ck["losses"]],
        }
    names = ck["loss_names"]
    drop = {
        n
        for c, same in REPEATED_COLUMNS.items()
        for n in [c.removeprefix("train_")]
        if n in names and same.removeprefix("train_") in names
    }
    if drop:
        keep = [k for k, n in enumerate(names) if n not in drop]
        ck = {**ck, "loss_names": [names[k] for k in keep], "losses": [[row[k] for k in keep] for row in ck["losses"]]}
    return ck


# metrics.csv columns of earlier versions that repeat another one: dropped when the run resumes.
REPEATED_COLUMNS = {"train_total": "train_loss"}


def migrate_metrics(path: Path) -> None:
    """Rewrite ``metrics.csv`` without the columns an earlier version wrote twice (localization
    runs logged their total loss as ``train_loss`` and again as ``train_total``)."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    names = list(rows[0]) if rows else []
    drop = [c for c, same in REPEATED_COLUMNS.items() if c in names and same in names]
    if not drop:
        return
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[c for c in names if c not in drop])
        w.writeheader()
        w.writerows({k: v for k, v in row.items() if k not in drop} for row in rows)


def rng_state() -> dict[str, Any]:
    """torch's (and CUDA's, where present) random state, for :func:`set_rng_state` on resume."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def append_metrics(path: Path, row: dict[str, Any], step_key: str) -> None:
    """One row of ``metrics.csv``; also a TensorBoard event in ``tb/`` when tensorboard is installed
    (``row[step_key]`` is the x axis)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        SummaryWriter = None  # noqa: N806  (optional dependency)
    if SummaryWriter is not None:
        with SummaryWriter(str(path.parent / "tb")) as tb:
            for key, value in row.items():
                if key != step_key:
                    tb.add_scalar(key, value, row[step_key])
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def read_run_record(run: Path) -> dict[str, Any]:
    """``run/config.json`` (``{"config": ..., "data": {"manifest", "stores"}}``); a missing or
    damaged file is an input error naming it."""
    path = run / "config.json"
    if not path.is_file():
        raise FsvInputError(f"{run} is not a training run (no config.json); train one with fsv train-head")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        record["config"] = migrate_config(record["config"])
        record["config"]["head"], record["data"]["manifest"], record["data"]["stores"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise FsvInputError(
            f"{path}: not a readable run configuration ({type(e).__name__}: {e}); the run folder is damaged: "
            "restore the file, or train again with a new --out folder"
        ) from None
    return record


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """A checkpoint written by the trainers (tensors and plain values only: ``weights_only``); a
    truncated or damaged file is an input error naming it."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        what = (
            "delete it to resume from the start"
            if path.name == "last.pt"
            else "train again (the same `fsv train-head` command resumes and rewrites it)"
        )
        raise FsvInputError(
            f"{path}: cannot be read as a checkpoint, it is truncated or damaged ({type(e).__name__}: {str(e).splitlines()[0][:120]}); {what}"
        ) from None


def restore_model(head: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    """Load ``state`` (a checkpoint's ``model``) into ``head``; a checkpoint whose layers do not match
    the head as fsv now builds it (trained with an earlier version of the head, or with other
    ``head_args``) is an input error naming the file and the first differing layers."""
    try:
        head.load_state_dict(state)
    except RuntimeError as e:
        missing, unexpected = sorted(set(head.state_dict()) - set(state)), sorted(set(state) - set(head.state_dict()))
        what = (
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
            if missing or unexpected
            else str(e).splitlines()[0][:160]
        )
        raise FsvInputError(
            f"{path}: its layers do not match {type(head).__name__} as this fsv builds it ({what}); it was trained with another "
            "version of the head or other head_args: train again into a new --out folder"
        ) from None


def run_source(run: Path) -> DataSource:
    """The data source recorded in ``run/config.json``."""
    data = read_run_record(run)["data"]
    return DataSource(Path(data["manifest"]), tuple(Path(p) for p in data["stores"]))
