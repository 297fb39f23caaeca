"""Training, prediction and mAP evaluation of the localization heads (``cdcca``, ``vqknet``).

:class:`LocalizationObjective` is what :func:`fsv.trainer.fit` (the one training loop) trains: a
step's loss from the task (:mod:`fsv.localization.tasks`) and the protocol's mAP on the validation
split (never the test split). The run folder (:mod:`fsv.runs`) holds ``metrics.csv`` with the mean
of each loss term per validation. Step ``i``'s batch or episode depends only on ``(seed, i)``, so a
killed run resumed from ``last.pt`` ends where an uninterrupted one would.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsv.errors import FsvInputError
from fsv.localization.baseline import random_proposals
from fsv.localization.config import LocConfig, protocol_for, summarize
from fsv.localization.tasks import CommonTask, Scored, WtalTask, check_task, make_task
from fsv.metrics import detection_map
from fsv.presets import Layer
from fsv.progress import make_progress
from fsv.runs import DataSource, load_checkpoint, load_run, restore_model, write_run_config
from fsv.trainer import Schedule, TrainResult, fit

log = logging.getLogger(__name__)


def config_for(head: str, dataset: str, overrides: dict[str, Any] | None = None) -> LocConfig:
    """The head's paper preset and its preset for ``dataset``, with ``overrides`` (:mod:`fsv.presets`)."""
    return LocConfig.resolve(head, dataset, [Layer("overrides", overrides or {})])[0]


def score(scored: Scored, task: str, dataset: str) -> dict[str, Any]:
    """The protocol's mAP table of ``scored`` (THUMOS14's ambiguous segments excluded)."""
    protocol = protocol_for(task, dataset)
    result = detection_map(
        scored.ground_truth, scored.predictions, np.asarray(protocol.tious), ambiguous=scored.ambiguous or None
    )
    table = summarize({t: result["map"][k] for t, k in zip(protocol.tious, result["map"], strict=True)}, protocol)
    return {**table, "select": table["averages"][protocol.select]}


class LocalizationObjective:
    """A localization task (:class:`WtalTask` or :class:`CommonTask`) for :func:`fsv.trainer.fit`:
    its step losses, and the protocol's selection mAP on the validation split."""

    unit = "steps"
    metric = "val_map"
    metric_name = "validation mAP"

    def __init__(self, task: WtalTask | CommonTask, cfg: LocConfig, dataset: str) -> None:
        self.task, self.cfg, self.dataset = task, cfg, dataset
        self.batches = task.batches()

    def step_loss(self, head: torch.nn.Module, i: int, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        return self.task.step_loss(head, self.batches, i, device)

    def validate(self, head: torch.nn.Module, device: torch.device) -> float:
        return score(self.task.score_split(head, "val", device), self.cfg.task, self.dataset)["select"]


def train_localization(
    cfg: LocConfig, source: DataSource, run: Path, *, device: str = "auto", stop_after: int | None = None
) -> TrainResult:
    """Train (or resume) a localization head into ``run``; ``stop_after`` ends this call early."""
    from fsv.pipeline.extract import resolve_device

    dev = resolve_device(device)
    source = source.in_run(run)
    manifest, stores = source.open()
    check_task(cfg, manifest, stores)  # before the run folder is written: a run that cannot start leaves nothing
    run.mkdir(parents=True, exist_ok=True)
    source = source.pin(run, manifest)
    write_run_config(run, asdict(cfg), source)
    task = make_task(cfg, manifest, stores, run / "cache")
    torch.manual_seed(cfg.seed)
    head = task.build_head().to(dev)
    objective = LocalizationObjective(task, cfg, manifest.dataset)
    return fit(
        objective,
        head,
        cfg,
        Schedule(cfg.train_steps, 1, cfg.val_every, cfg.checkpoint_every),
        run,
        dev,
        stop_after=stop_after,
    )


def _load_best(
    run: Path, cfg: LocConfig, source: DataSource, dev: torch.device
) -> tuple[WtalTask | CommonTask, torch.nn.Module, str]:
    manifest, stores = source.open()
    task = make_task(cfg, manifest, stores, run / "cache")
    head = task.build_head().to(dev)
    best = run / "best.pt"
    if not best.is_file():
        raise FsvInputError(f"{run} has no best.pt yet: training has not reached its first validation")
    restore_model(head, load_checkpoint(best, dev)["model"], best)
    return task, head, manifest.dataset


def predict_run(
    run: Path, *, split: str = "test", benchmark: str | None = None, device: str = "auto"
) -> tuple[Scored, LocConfig, str]:
    """Detections of the run's best model on ``split`` (or an imported benchmark's episodes)."""
    from fsv.pipeline.extract import resolve_device

    cfg, source = load_run(run)
    if not isinstance(cfg, LocConfig):
        raise FsvInputError(
            f"{run} is a recognition run; fsv predict writes detections of localization runs (cdcca, protomatch, vqknet)"
        )
    if cfg.task != "common":
        from fsv.evaluation import no_benchmark

        no_benchmark(benchmark)
    dev = resolve_device(device)
    task, head, dataset = _load_best(run, cfg, source, dev)
    kwargs = {"benchmark": benchmark} if benchmark is not None else {}
    total = task.size(split, **kwargs) if isinstance(task, CommonTask) else task.size(split)
    with make_progress() as bar:
        job = bar.add_task(
            f"predict {cfg.head} {benchmark or split}",
            total=total,
            unit="episodes" if cfg.task == "common" else "videos",
        )
        scored = task.score_split(head, split, dev, lambda: bar.advance(job), **kwargs)
    return scored, cfg, dataset


def results_json(scored: Scored, cfg: LocConfig) -> dict[str, Any]:
    """ActivityNet results format: ``{"version", "results": {video: [{"segment", "score", "label"}]}, "external_data"}``,
    at full precision, so that scoring the file reproduces the mAP of ``fsv eval`` exactly (rounding moves
    detections across tIoU thresholds and reorders tied scores)."""
    return {
        "version": "fsv",
        "results": {
            v: [{"segment": [float(s), float(e)], "score": float(p), "label": lab} for s, e, p, lab in dets]
            for v, dets in scored.predictions.items()
        },
        "external_data": {"used": True, "details": f"fsv {cfg.head} on cached features"},
    }


def ground_truth_json(scored: Scored) -> dict[str, Any]:
    """The scored items' ground truth in ActivityNet format (episode keys for common localization)."""
    return {
        "database": {
            v: {
                "subset": "test",
                "annotations": [{"segment": [s, e], "label": lab} for s, e, lab in segs],
                **({"ambiguous": scored.ambiguous[v].tolist()} if v in scored.ambiguous else {}),
            }
            for v, segs in scored.ground_truth.items()
        }
    }


def write_predictions(
    run: Path, out_file: Path, *, split: str = "test", benchmark: str | None = None, device: str = "auto"
) -> str:
    """``fsv predict``: the run's detections on ``split`` written to ``out_file`` (ActivityNet
    results JSON, atomically); common-localization runs key them by episode and also write the
    episodes' ground truth beside them (``OUT.gt.json``), so any ActivityNet-style tool scores the
    pair. Returns the line that says what was written."""
    scored, cfg, _ = predict_run(run, split=split, benchmark=benchmark, device=device)
    _write_json(out_file, results_json(scored, cfg))
    said = f"{sum(len(v) for v in scored.predictions.values())} detections of {len(scored.predictions)} {'episodes' if cfg.task == 'common' else 'videos'} -> {out_file}"
    if cfg.task == "common":
        gt_file = out_file.with_name(out_file.name.removesuffix(".json") + ".gt.json")
        _write_json(gt_file, ground_truth_json(scored))
        said += f"; ground truth -> {gt_file}"
    return said


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)


def evaluate_localization(
    run: Path, *, split: str = "test", benchmark: str | None = None, device: str = "auto"
) -> dict[str, Any]:
    """The mAP table of a localization run on ``split`` as one JSON-ready dict."""
    scored, cfg, dataset = predict_run(run, split=split, benchmark=benchmark, device=device)
    return evaluation_of(scored, cfg, dataset, benchmark or split)


def evaluation_of(scored: Scored, cfg: LocConfig, dataset: str, split: str) -> dict[str, Any]:
    """:func:`evaluate_localization`'s dict for detections already made (``fsv report`` shows them too)."""
    table = score(scored, cfg.task, dataset)
    table.pop("select")
    out: dict[str, Any] = {"head": cfg.head, "task": cfg.task, "dataset": dataset, "split": split, **table}
    chance = score(random_proposals(scored, seed=cfg.seed), cfg.task, dataset)
    out["random_proposals"] = {k: chance[k] for k in ("map", "average_map", "averages")}
    if cfg.task == "common":
        out.update({"shots": cfg.shot, "mode": cfg.mode, "episodes": scored.items})
        leak = set(scored.extra.get("leak", []))
        if leak:
            clean = Scored(
                {k: v for k, v in scored.predictions.items() if k not in leak},
                {k: v for k, v in scored.ground_truth.items() if k not in leak},
                items=scored.items - len(leak),
            )
            without = score(clean, cfg.task, dataset)
            without.pop("select")
            out["without_query_supports"] = {**without, "episodes": clean.items}
    else:
        out.update({"shots": None, "videos": scored.items})  # weakly supervised: no support shots
    return out
