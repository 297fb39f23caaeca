"""Training, prediction and mAP evaluation of the localization heads (``cdcca``, ``vqknet``).

A run folder holds ``config.json`` (every value used, with the data source), ``metrics.csv`` (one
row per validation: mean training loss and each loss term, validation mAP), ``last.pt`` (the
resume point: model, optimiser, RNG, steps done, best so far) and ``best.pt`` (best validation mAP;
validation is never the test split). Step ``i``'s batch or episode depends only on ``(seed, i)``, so
a killed run resumed from ``last.pt`` ends where an uninterrupted one would.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsv.errors import FsvInputError
from fsv.heads.base import head_card
from fsv.localization.baseline import random_proposals
from fsv.localization.config import LocConfig, protocol_for, summarize
from fsv.localization.tasks import CommonTask, Scored, WtalTask, check_task, make_task
from fsv.metrics import detection_map
from fsv.presets import Layer
from fsv.progress import make_progress
from fsv.train import (
    DataSource,
    TrainResult,
    _append_metrics,
    _optimizer,
    _rng_state,
    _save,
    _set_rng_state,
    load_checkpoint,
    lr_at,
    read_run_record,
    write_run_config,
)

log = logging.getLogger(__name__)


def config_for(head: str, dataset: str, overrides: dict[str, Any] | None = None) -> LocConfig:
    """The head's paper preset and its preset for ``dataset``, with ``overrides`` (:mod:`fsv.presets`)."""
    return LocConfig.resolve(head, head_card(head).task, dataset, [Layer("overrides", overrides or {})])[0]


def score(scored: Scored, task: str, dataset: str) -> dict[str, Any]:
    """The protocol's mAP table of ``scored`` (THUMOS14's ambiguous segments excluded)."""
    protocol = protocol_for(task, dataset)
    result = detection_map(scored.ground_truth, scored.predictions, np.asarray(protocol.tious), ambiguous=scored.ambiguous or None)
    table = summarize({t: result["map"][k] for t, k in zip(protocol.tious, result["map"], strict=True)}, protocol)
    return {**table, "select": table["averages"][protocol.select]}


def train_localization(cfg: LocConfig, source: DataSource, run: Path, *, device: str = "auto", stop_after: int | None = None) -> TrainResult:
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
    opt = _optimizer(cfg, [p for p in head.parameters() if p.requires_grad])
    batches = task.batches()
    start, best, best_step = 0, -1.0, -1
    losses: list[dict[str, float]] = []
    last = run / "last.pt"
    if last.is_file():
        ck = load_checkpoint(last, dev)
        head.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        start, best, best_step = ck["steps"], ck["best_val"], ck["best_step"]
        losses = [dict(zip(ck["loss_names"], row, strict=True)) for row in ck["losses"]]
        _set_rng_state(ck["rng"])
        log.info("resuming %s at step %d", run, start)
    end = cfg.train_steps if stop_after is None else min(cfg.train_steps, start + stop_after)
    t0 = time.perf_counter()
    with make_progress() as bar:
        job = bar.add_task(f"train {cfg.head}", total=cfg.train_steps, completed=start, unit="steps")
        for i in range(start, end):
            head.train()
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, i)
            loss, parts = task.step_loss(head, batches, i, dev)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append({"loss": float(loss.item()), **{k: float(v) for k, v in parts.items()}})
            bar.advance(job)
            validate = (i + 1) % cfg.val_every == 0 or i + 1 == cfg.train_steps
            if validate:
                val = score(task.score_split(head, "val", dev), cfg.task, manifest.dataset)["select"]
                if val > best:
                    best, best_step = val, i + 1
                    _save(run / "best.pt", {"model": head.state_dict(), "steps": i + 1, "val": val})
                row = {"steps": i + 1, **{f"train_{k}": float(np.mean([d[k] for d in losses])) for k in losses[0]}, "val_map": val, "lr": lr_at(cfg, i)}
                _append_metrics(run / "metrics.csv", row, step_key="steps")
                losses = []
                log.info("%s step %d: val mAP %.4f (best %.4f at %d)", cfg.head, i + 1, val, best, best_step)
            if validate or (i + 1) % cfg.checkpoint_every == 0 or i + 1 == end:
                names = list(losses[0]) if losses else []
                _save(last, {"model": head.state_dict(), "optimizer": opt.state_dict(), "steps": i + 1, "best_val": best, "best_step": best_step,
                             "rng": _rng_state(), "loss_names": names, "losses": [[d[k] for k in names] for d in losses]})
    return TrainResult(run, end, best, best_step, time.perf_counter() - t0)


def load_loc_run(run: Path) -> tuple[LocConfig, DataSource] | None:
    """A localization run's configuration and data (None for a recognition run)."""
    record = read_run_record(run)
    c = record["config"]
    if c.get("task") not in ("wtal", "common"):
        return None
    cfg = replace(LocConfig(head=c["head"], task=c["task"]), **{k: v for k, v in c.items() if k not in ("head", "task")})
    return cfg, DataSource(Path(record["data"]["manifest"]), tuple(Path(s) for s in record["data"]["stores"]))


def _load_best(run: Path, cfg: LocConfig, source: DataSource, dev: torch.device) -> tuple[WtalTask | CommonTask, torch.nn.Module, str]:
    manifest, stores = source.open()
    task = make_task(cfg, manifest, stores, run / "cache")
    head = task.build_head().to(dev)
    best = run / "best.pt"
    if not best.is_file():
        raise FsvInputError(f"{run} has no best.pt yet: training has not reached its first validation")
    head.load_state_dict(load_checkpoint(best, dev)["model"])
    return task, head, manifest.dataset


def predict_run(run: Path, *, split: str = "test", benchmark: str | None = None, device: str = "auto") -> tuple[Scored, LocConfig, str]:
    """Detections of the run's best model on ``split`` (or an imported benchmark's episodes)."""
    from fsv.pipeline.extract import resolve_device

    loaded = load_loc_run(run)
    if loaded is None:
        raise FsvInputError(f"{run} is a recognition run; fsv predict writes detections of localization runs (cdcca, vqknet)")
    cfg, source = loaded
    if benchmark is not None and cfg.task != "common":
        raise FsvInputError("--benchmark applies to few-shot common localization runs (cdcca)")
    dev = resolve_device(device)
    task, head, dataset = _load_best(run, cfg, source, dev)
    kwargs = {"benchmark": benchmark} if benchmark is not None else {}
    total = task.size(split, **kwargs) if isinstance(task, CommonTask) else task.size(split)
    with make_progress() as bar:
        job = bar.add_task(f"predict {cfg.head} {benchmark or split}", total=total, unit="episodes" if cfg.task == "common" else "videos")
        scored = task.score_split(head, split, dev, lambda: bar.advance(job), **kwargs)
    return scored, cfg, dataset


def results_json(scored: Scored, cfg: LocConfig) -> dict[str, Any]:
    """ActivityNet results format: ``{"version", "results": {video: [{"segment", "score", "label"}]}, "external_data"}``."""
    return {
        "version": "fsv",
        "results": {v: [{"segment": [round(s, 3), round(e, 3)], "score": round(p, 6), "label": lab} for s, e, p, lab in dets] for v, dets in scored.predictions.items()},
        "external_data": {"used": True, "details": f"fsv {cfg.head} on cached features"},
    }


def ground_truth_json(scored: Scored) -> dict[str, Any]:
    """The scored items' ground truth in ActivityNet format (episode keys for common localization)."""
    return {"database": {v: {"subset": "test", "annotations": [{"segment": [s, e], "label": lab} for s, e, lab in segs],
                             **({"ambiguous": scored.ambiguous[v].tolist()} if v in scored.ambiguous else {})} for v, segs in scored.ground_truth.items()}}


def evaluate_localization(run: Path, *, split: str = "test", benchmark: str | None = None, device: str = "auto") -> dict[str, Any]:
    """The mAP table of a localization run on ``split`` as one JSON-ready dict."""
    scored, cfg, dataset = predict_run(run, split=split, benchmark=benchmark, device=device)
    table = score(scored, cfg.task, dataset)
    table.pop("select")
    out: dict[str, Any] = {"head": cfg.head, "task": cfg.task, "dataset": dataset, "split": benchmark or split, **table}
    chance = score(random_proposals(scored, seed=cfg.seed), cfg.task, dataset)
    out["random_proposals"] = {k: chance[k] for k in ("map", "average_map", "averages")}
    if cfg.task == "common":
        out.update({"shots": cfg.shot, "mode": cfg.mode, "episodes": scored.items})
        leak = set(scored.extra.get("leak", []))
        if leak:
            clean = Scored({k: v for k, v in scored.predictions.items() if k not in leak}, {k: v for k, v in scored.ground_truth.items() if k not in leak},
                           items=scored.items - len(leak))
            without = score(clean, cfg.task, dataset)
            without.pop("select")
            out["without_query_supports"] = {**without, "episodes": clean.items}
    else:
        out.update({"shots": None, "videos": scored.items})  # weakly supervised: no support shots
    return out
