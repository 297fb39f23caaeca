"""The configuration of a localization run and the evaluation protocol of each dataset."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fsv.errors import FsvInputError
from fsv.presets import Layer, Resolved, build_config, dataset_family

if TYPE_CHECKING:
    from fsv.pipeline.manifests import Manifest
    from fsv.pipeline.store import FeatureStore
    from fsv.runs import DataSource
    from fsv.trainer import TrainResult

# Preset keys the heads use for the number of optimiser steps.
STEP_ALIASES = {"train_iterations": "train_steps", "train_episodes": "train_steps"}


@dataclass
class LocConfig:
    """Every value of a localization run. The head card's paper preset fills the defaults (its
    preset for the manifest's dataset on top), ``--config`` and ``--set`` override them; keys the
    trainer does not know go to the head's constructor (``head_args``; :mod:`fsv.presets`).

    Shared: ``seed``, optimiser (``optimizer``, ``lr``, ``momentum``, ``weight_decay``,
    ``lr_milestones``, ``lr_gamma``), ``train_steps`` (optimiser steps: batches for ``wtal``,
    episodes for ``common``), ``val_every`` and ``checkpoint_every`` (steps), ``val_fraction``
    (training videos held out for model selection when the manifest has no val split).

    ``wtal`` (VQK-Net): ``batch_videos`` per step with at least ``min_pairs`` pairs sharing a class,
    ``num_segments`` sampled per video in training (all steps at test).

    ``common`` (CDC-CA): ``shot`` (L), ``mode`` (``single`` or ``multi`` instance queries),
    ``frame_fps`` (the frame rate in which the paper counts frames: 3 for ActivityNet, 25 for
    THUMOS14, as in R-C3D), ``max_query_frames`` (single-instance queries longer than this are
    dropped; training queries are cropped to it), ``windows`` (sliding-window sizes in frames for
    longer test queries) with ``window_overlap``, ``class_split_seed`` (the 80/10/10 class split),
    ``class_split`` (``seeded``, or a benchmark name such as ``yang2020`` whose query classes become
    the test classes and the others split 8:1 into train and val),
    ``val_episodes``/``test_episodes`` (fixed episodes), ``num_pseudo_classes`` (k of k-means; 0 for heads that read no
    pseudo classes, such as ``protomatch``), ``standardize`` (per-dimension standardization of the
    snippet features by the statistics of the training classes' videos, applied to queries and supports).
    """

    head: str
    task: str
    seed: int = 0
    optimizer: str = "adam"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    train_steps: int = 10000
    val_every: int = 500
    checkpoint_every: int = 100
    val_fraction: float = 0.1
    batch_videos: int = 10
    min_pairs: int = 3
    num_segments: int = 500
    shot: int = 5
    mode: str = "single"
    frame_fps: float = 3.0
    max_query_frames: int = 768
    windows: list[int] = field(default_factory=lambda: [512, 768])
    window_overlap: float = 0.75
    class_split_seed: int = 0
    class_split: str = "seeded"
    val_episodes: int = 200
    test_episodes: int = 1000
    num_pseudo_classes: int = 160
    standardize: bool = False
    head_args: dict[str, Any] = field(default_factory=dict)

    @property
    def view(self) -> str:
        """Localization heads read one feature vector per snippet."""
        return "snippets"

    @classmethod
    def resolve(cls, head: str, dataset: str | None, given: list[Layer]) -> tuple["LocConfig", Resolved]:
        """The configuration from the head card's layers for ``dataset`` and the user's ``given``
        layers (:mod:`fsv.presets`), with the resolution (where each value came from)."""
        from fsv.heads.base import head_card

        cfg, resolved = build_config(
            cls, head, dataset, given, aliases=STEP_ALIASES, fixed={"task": head_card(head).task}
        )
        if cfg.mode not in ("single", "multi"):
            raise FsvInputError(f"mode must be single or multi, got {cfg.mode!r}")
        return cfg, resolved

    def check_data(self, manifest: Manifest, stores: list[FeatureStore]) -> None:
        """:func:`fsv.localization.tasks.check_task` for this run (every run configuration offers it)."""
        from fsv.localization.tasks import check_task

        check_task(self, manifest, stores)

    def run_training(
        self, source: DataSource, run: Path, *, device: str = "auto", stop_after: int | None = None
    ) -> TrainResult:
        """:func:`fsv.localization.trainer.train_localization` into ``run`` (every run configuration offers it)."""
        from fsv.localization.trainer import train_localization

        return train_localization(self, source, run, device=device, stop_after=stop_after)

    @staticmethod
    def evaluate_run(
        run: Path, *, split: str, episodes: int | None, benchmark: str | None, device: str
    ) -> dict[str, Any]:
        """:func:`fsv.localization.trainer.evaluate_localization` (``episodes`` does not apply: the
        run's fixed episodes or videos are scored)."""
        from fsv.localization.trainer import evaluate_localization

        return evaluate_localization(run, split=split, benchmark=benchmark, device=device)

    @staticmethod
    def mean_over_seeds(results: list[dict[str, Any]]) -> dict[str, Any]:
        """The first seed's fields with the mean of every mAP over ``results`` and the std of the average."""
        from fsv.metrics import mean_std

        mean, std = mean_std([r["average_map"] for r in results])
        first = results[0]
        return {
            **first,
            "average_map": mean,
            "std": std,
            "seeds": len(results),
            "runs": results,
            "map": {k: mean_std([r["map"][k] for r in results])[0] for k in first["map"]},
            "averages": {k: mean_std([r["averages"][k] for r in results])[0] for k in first["averages"]},
        }


@dataclass(frozen=True)
class Protocol:
    """tIoU thresholds of a dataset's mAP table and the named averages reported beside it;
    ``select`` names the average used for model selection on the validation split."""

    tious: tuple[float, ...]
    averages: dict[str, tuple[float, float]]
    select: str


PROTOCOLS = {
    "thumos14": Protocol(
        tuple(round(0.1 * i, 2) for i in range(1, 8)),
        {"0.1:0.5": (0.1, 0.5), "0.3:0.7": (0.3, 0.7), "0.1:0.7": (0.1, 0.7)},
        "0.1:0.7",
    ),
    "activitynet": Protocol(tuple(round(0.5 + 0.05 * i, 2) for i in range(10)), {"0.5:0.95": (0.5, 0.95)}, "0.5:0.95"),
    "common": Protocol((0.5,), {"0.5": (0.5, 0.5)}, "0.5"),
}


def protocol_for(task: str, dataset: str) -> Protocol:
    """Few-shot common localization reports mAP@0.5; weakly-supervised TAL the dataset's table
    (THUMOS14's for datasets other than ActivityNet)."""
    if task == "common":
        return PROTOCOLS["common"]
    return PROTOCOLS["activitynet" if dataset_family(dataset) == "activitynet" else "thumos14"]


def summarize(map_by_tiou: dict[float, float], protocol: Protocol) -> dict[str, Any]:
    """``{"map": {"0.5": ...}, "average_map": ..., "averages": {"0.1:0.5": ...}}`` of per-threshold
    mAPs; ``average_map`` is the mean over all the protocol's thresholds."""

    def key(t: float) -> str:
        return f"{t:.2f}".rstrip("0").rstrip(".")

    averages = {
        name: float(
            sum(v for t, v in map_by_tiou.items() if lo - 1e-9 <= t <= hi + 1e-9)
            / max(1, sum(lo - 1e-9 <= t <= hi + 1e-9 for t in map_by_tiou))
        )
        for name, (lo, hi) in protocol.averages.items()
    }
    return {
        "map": {key(t): float(v) for t, v in map_by_tiou.items()},
        "average_map": float(sum(map_by_tiou.values()) / len(map_by_tiou)),
        "averages": averages,
    }
