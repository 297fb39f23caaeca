"""What weakly-supervised and few-shot common localization runs share (:class:`LocalizationTask`):
their configuration (:class:`LocConfig`), the mAP protocol of each dataset (:class:`MapProtocol`),
what a split's mAP is computed on (:class:`Scored`), prediction, evaluation beside the
random-proposal baseline, ``fsv predict``'s files and the report sections.

A localization run's objective (:mod:`fsv.heads.tasks.wtal`, :mod:`fsv.heads.tasks.common`) gives
a step's loss terms and the protocol's mAP on the validation split (never the test split). Step
``i``'s batch or episode depends only on ``(seed, i)``, so a killed run resumed from ``last.pt``
ends where an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from rich.table import Table

from fsv.detections import write_ground_truth, write_results
from fsv.device import resolve_device
from fsv.errors import FsvInputError
from fsv.heads.engine.config import dataset_family
from fsv.heads.engine.loop import Schedule
from fsv.heads.engine.runner import load_best
from fsv.heads.tasks.base import Task
from fsv.metrics import detection_map, mean_std
from fsv.pipeline.manifests import Manifest
from fsv.pipeline.store import FeatureStore
from fsv.progress import make_progress
from fsv.report import figures
from fsv.report.page import Page, num
from fsv.tables import map_table

# Preset keys the heads use for the number of optimiser steps.
STEP_ALIASES = {"train_iterations": "train_steps", "train_episodes": "train_steps"}

Detections = dict[str, list[tuple[float, float, float, str]]]
GroundTruth = dict[str, list[tuple[float, float, str]]]


@dataclass
class LocConfig:
    """Every value of a localization run. The head card's paper preset fills the defaults (its
    preset for the manifest's dataset on top), ``--config`` and ``--set`` override them; keys the
    trainer does not know go to the head's constructor (``head_args``; :mod:`fsv.heads.engine.config`).

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


@dataclass(frozen=True)
class MapProtocol:
    """tIoU thresholds of a dataset's mAP table and the named averages reported beside it;
    ``select`` names the average used for model selection on the validation split."""

    tious: tuple[float, ...]
    averages: dict[str, tuple[float, float]]
    select: str


PROTOCOLS = {
    "thumos14": MapProtocol(
        tuple(round(0.1 * i, 2) for i in range(1, 8)),
        {"0.1:0.5": (0.1, 0.5), "0.3:0.7": (0.3, 0.7), "0.1:0.7": (0.1, 0.7)},
        "0.1:0.7",
    ),
    "activitynet": MapProtocol(
        tuple(round(0.5 + 0.05 * i, 2) for i in range(10)), {"0.5:0.95": (0.5, 0.95)}, "0.5:0.95"
    ),
}
# Few-shot common localization, on any dataset: mAP at tIoU 0.5 over the episodes.
COMMON_PROTOCOL = MapProtocol((0.5,), {"0.5": (0.5, 0.5)}, "0.5")


def dataset_protocol(dataset: str) -> MapProtocol:
    """The dataset's mAP table: ActivityNet's for its family, THUMOS14's for any other."""
    return PROTOCOLS["activitynet" if dataset_family(dataset) == "activitynet" else "thumos14"]


def summarize(map_by_tiou: dict[float, float], protocol: MapProtocol) -> dict[str, Any]:
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


@dataclass
class Scored:
    """What one split's mAP is computed on, and how many items (videos or episodes) it covers;
    ``extra`` holds what a kind of run adds (``"leak"``: benchmark episodes with query-video supports;
    ``"actionness"``: video -> (step centres s ``[T]``, the head's actionness ``[T]``))."""

    predictions: Detections
    ground_truth: GroundTruth
    ambiguous: dict[str, np.ndarray] = field(default_factory=dict)
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    items: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def score(scored: Scored, protocol: MapProtocol) -> dict[str, Any]:
    """The protocol's mAP table of ``scored`` (THUMOS14's ambiguous segments excluded) and, under
    ``select``, the average used for model selection."""
    result = detection_map(
        scored.ground_truth, scored.predictions, np.asarray(protocol.tious), ambiguous=scored.ambiguous or None
    )
    table = summarize({t: result["map"][k] for t, k in zip(protocol.tious, result["map"], strict=True)}, protocol)
    return {**table, "select": table["averages"][protocol.select]}


class LocalizationObjective:
    """A localization run's data for :func:`fsv.heads.engine.loop.fit` (subclassed per kind):
    the head it builds, a step's loss terms, and a split's detections; validation is the
    protocol's selection mAP on the validation split."""

    unit = "steps"
    metric = "val_map"
    metric_name = "validation mAP"
    protocol: MapProtocol

    def build_head(self) -> torch.nn.Module:
        raise NotImplementedError

    def step_loss(self, head: torch.nn.Module, i: int, device: torch.device) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def size(self, split: str, benchmark: str | None = None) -> int:
        """How many items (videos or episodes) :meth:`score_split` scores."""
        raise NotImplementedError

    def score_split(
        self,
        head: torch.nn.Module,
        split: str,
        device: torch.device,
        advance: Callable[[], None] | None = None,
        benchmark: str | None = None,
    ) -> Scored:
        raise NotImplementedError

    def validate(self, head: torch.nn.Module, device: torch.device) -> float:
        return score(self.score_split(head, "val", device), self.protocol)["select"]


def random_proposals(scored: Scored, *, count: int = 20, seed: int = 0) -> Scored:
    """``scored`` with its predictions replaced by random proposals: the baseline of what mAP looks
    like when segments carry no information.

    Each scored item (video or episode) gets ``count`` segments per true class with uniform random
    centres inside its window, uniform random lengths up to half the window and uniform random
    scores, labelled with the item's true classes (an oracle on labels, so the baseline isolates
    localization). Localization heads are expected to be far above it."""
    rng = np.random.default_rng(seed)
    preds = {}
    for key, (lo, hi) in scored.windows.items():
        labels = sorted({lab for _, _, lab in scored.ground_truth.get(key, [])})
        dets = []
        for label in labels:
            centre = rng.uniform(lo, hi, count)
            half = rng.uniform(0, (hi - lo) / 4, count)
            for c, h, p in zip(centre, half, rng.random(count), strict=True):
                dets.append((float(max(lo, c - h)), float(min(hi, c + h)), float(p), label))
        preds[key] = dets
    return Scored(preds, scored.ground_truth, scored.ambiguous, scored.windows, scored.items, scored.extra)


class LocalizationTask(Task):
    """What the localization kinds of run share; subclasses give the objective and the protocol."""

    config_class = LocConfig
    length = ("--steps", "train_steps")
    length_words = "trains in optimiser steps, not episodes: use --steps N"
    aliases = STEP_ALIASES
    #: what a scored item is (``videos``, ``episodes``)
    items: ClassVar[str]
    #: whether ``fsv predict`` also writes the scored items' ground truth (items that are not videos)
    writes_ground_truth: ClassVar[bool] = False
    headline = ("average_map", "average mAP (%)")

    def fixed(self, head: str) -> dict[str, Any]:
        return {"head": head, "task": self.name}

    def check_config(self, cfg: LocConfig) -> None:
        if cfg.mode not in ("single", "multi"):
            raise FsvInputError(f"mode must be single or multi, got {cfg.mode!r}")

    def protocol(self, dataset: str) -> MapProtocol:
        """The mAP table this kind of run reports on ``dataset``."""
        raise NotImplementedError

    def objective(
        self, cfg: LocConfig, manifest: Manifest, stores: list[FeatureStore], cache: Path | None
    ) -> LocalizationObjective:
        raise NotImplementedError

    def build(
        self, cfg: LocConfig, manifest: Manifest, stores: list[FeatureStore], run: Path
    ) -> tuple[LocalizationObjective, torch.nn.Module, Schedule]:
        objective = self.objective(cfg, manifest, stores, run / "cache")
        head = objective.build_head()
        return objective, head, Schedule(cfg.train_steps, 1, cfg.val_every, cfg.checkpoint_every)

    def predict(
        self, run: Path, *, split: str = "test", benchmark: str | None = None, device: str = "auto"
    ) -> tuple[Scored, LocConfig, str]:
        """Detections of the run's best model on ``split`` (or an imported benchmark's episodes)."""
        cfg, source = self.load(run)
        self.check_benchmark(benchmark)
        dev = resolve_device(device)
        manifest, stores = source.open()
        objective = self.objective(cfg, manifest, stores, run / "cache")
        head = load_best(run, objective.build_head().to(dev), dev)
        with make_progress() as bar:
            job = bar.add_task(
                f"predict {cfg.head} {benchmark or split}", total=objective.size(split, benchmark), unit=self.items
            )
            scored = objective.score_split(head, split, dev, lambda: bar.advance(job), benchmark)
        return scored, cfg, manifest.dataset

    def write_predictions(
        self, run: Path, out_file: Path, *, split: str = "test", benchmark: str | None = None, device: str = "auto"
    ) -> str:
        """``fsv predict``: the run's detections on ``split`` written to ``out_file`` (ActivityNet
        results JSON, at full precision so that scoring the file reproduces ``fsv eval``'s mAP);
        where the scored items are not videos (episodes), their ground truth beside them
        (``OUT.gt.json``), so any ActivityNet-style tool scores the pair. Returns the line that says
        what was written."""
        scored, cfg, _ = self.predict(run, split=split, benchmark=benchmark, device=device)
        write_results(out_file, scored.predictions, f"fsv {cfg.head} on cached features")
        said = f"{sum(len(v) for v in scored.predictions.values())} detections of {len(scored.predictions)} {self.items} -> {out_file}"
        if self.writes_ground_truth:
            gt_file = out_file.with_name(out_file.name.removesuffix(".json") + ".gt.json")
            write_ground_truth(gt_file, scored.ground_truth, scored.ambiguous)
            said += f"; ground truth -> {gt_file}"
        return said

    def evaluate(
        self,
        run: Path,
        *,
        split: str,
        episodes: int | None,
        benchmark: str | None,
        device: str,
    ) -> dict[str, Any]:
        """The mAP table on ``split`` (``episodes`` does not apply: the run's fixed episodes or videos are scored)."""
        scored, cfg, dataset = self.predict(run, split=split, benchmark=benchmark, device=device)
        return self.evaluation_of(scored, cfg, dataset, benchmark or split)

    def evaluation_of(self, scored: Scored, cfg: LocConfig, dataset: str, split: str) -> dict[str, Any]:
        """:meth:`evaluate`'s dict for detections already made (``fsv report`` shows them too)."""
        protocol = self.protocol(dataset)
        table = score(scored, protocol)
        table.pop("select")
        out: dict[str, Any] = {"head": cfg.head, "task": cfg.task, "dataset": dataset, "split": split, **table}
        chance = score(random_proposals(scored, seed=cfg.seed), protocol)
        out["random_proposals"] = {k: chance[k] for k in ("map", "average_map", "averages")}
        out.update(self.described(scored, cfg, protocol))
        return out

    def described(self, scored: Scored, cfg: LocConfig, protocol: MapProtocol) -> dict[str, Any]:
        """What the evaluation adds for this kind of run (shots, the items scored, controls)."""
        raise NotImplementedError

    def mean_over_seeds(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """The first seed's fields with the mean of every mAP over ``results`` and the std of the average."""
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

    def eval_table(self, folder: Path, split: str, payload: dict[str, Any]) -> Table:
        return map_table(folder, payload, self.scored_items(payload))

    def scored_items(self, payload: dict[str, Any]) -> str:
        """The eval table's words for what was scored (``60 videos``)."""
        raise NotImplementedError

    def report(self, page: Page, run: Path, *, episodes: int | None, device: str, videos: int) -> dict[str, Any]:
        """Evaluation beside random proposals, per-class AP and, for a few test items, ground truth
        against the top detections with the head's actionness under them."""
        return report_sections(self, page, run, device=device, videos=videos)


def report_sections(task: LocalizationTask, page: Page, run: Path, *, device: str, videos: int) -> dict[str, Any]:
    """``fsv report``'s localization sections (see :meth:`LocalizationTask.report`)."""
    scored, cfg, dataset = task.predict(run, split="test", device=device)
    evaluation = task.evaluation_of(scored, cfg, dataset, "test")
    chance = evaluation["random_proposals"]
    page.section("Evaluation", "evaluation")
    keys = list(evaluation["map"])
    page.table(
        ["", *[f"mAP@{k}" for k in keys], "average", *evaluation["averages"]],
        [
            [
                f"{cfg.head} on {dataset} {evaluation['split']}",
                *[num(evaluation["map"][k], f"map:{k}") for k in keys],
                num(evaluation["average_map"], "average_map"),
                *[num(v, f"averages:{k}") for k, v in evaluation["averages"].items()],
            ],
            [
                "random proposals",
                *[num(chance["map"][k], f"random:map:{k}") for k in keys],
                num(chance["average_map"], "random:average_map"),
                *[num(v, f"random:averages:{k}") for k, v in chance["averages"].items()],
            ],
        ],
        name="evaluation",
    )
    protocol = task.protocol(dataset)
    truth, found, note = scored.ground_truth, scored.predictions, ""
    classes = {ep["key"]: ep["label"] for ep in scored.extra.get("episodes", [])}
    if classes:  # common localization pools every episode as one class "common": per class, its episodes alone
        truth = {k: [(s, e, classes[k]) for s, e, _ in v] for k, v in truth.items()}
        found = {k: [(s, e, p, classes[k]) for s, e, p, _ in v] for k, v in found.items()}
        note = "; each class's episodes scored on their own (the mAP above pools all episodes)"
    per_class = detection_map(truth, found, np.asarray(protocol.tious), ambiguous=scored.ambiguous or None)["ap"]
    mean_ap = {label: float(np.mean(aps)) for label, aps in per_class.items()}
    page.section("Per class", "classes")
    over = f"at tIoU {keys[0]}" if len(keys) == 1 else f"mean over tIoU {keys[0]}-{keys[-1]}"
    page.figure(
        figures.class_bars(mean_ap, f"AP per class, {over}", "AP"), f"Per-class AP ({over}{note})", name="per-class"
    )
    page.table(
        ["class", *[f"AP@{k}" for k in keys]],
        [[c, *[num(a, f"ap:{c}:{k}") for a, k in zip(aps, keys, strict=True)]] for c, aps in per_class.items()],
        name="per-class",
    )
    shown = sorted(scored.ground_truth, key=lambda v: (-len(scored.ground_truth[v]), v))[:videos]
    actionness = scored.extra.get("actionness", {})
    page.section("Detections", "detections")
    drawn: dict[str, int] = {}
    for v in shown:
        truth = scored.ground_truth[v]
        dets = sorted(scored.predictions.get(v, []), key=lambda d: -d[2])[:8]
        window = scored.windows.get(v) or (min(s for s, _, _ in truth), max(e for _, e, _ in truth))
        curve = actionness.get(v)
        drawn[v] = len(dets)
        page.figure(
            figures.detection_timeline(v, window, truth, dets, curve, "actionness"),
            f"{v}: ground truth (green) against the top {len(dets)} detections"
            + (" and the head's actionness under them" if curve is not None else ""),
            name=f"timeline:{v}",
        )
    return {
        "evaluation": evaluation,
        "per_class_ap": per_class,
        "videos": shown,
        "detections_shown": drawn,
        "actionness_shown": bool(shown) and all(v in actionness for v in shown),
    }
