"""The one training loop of every head: an :class:`Objective` says what a step's loss is and how a
model scores on validation; :func:`fit` does the rest for recognition, weakly-supervised and
common localization runs alike.

The paper's optimiser and step schedule (:func:`lr_at`); gradients accumulated over
``accumulate`` steps (TA2N, TRX and STRM average 16 episodes per update; localization heads update
every step); validation every ``val_every`` steps on the validation split only, the best model in
``best.pt``; ``last.pt`` at update boundaries. Step ``i``'s data depends only on ``(seed, i)``, so a
killed run resumed from ``last.pt`` ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from fsv.errors import FsvInputError
from fsv.progress import make_progress
from fsv.heads.engine.run_folder import (
    append_metrics,
    load_checkpoint,
    migrate_resume_point,
    restore_model,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

log = logging.getLogger(__name__)


class Objective(Protocol):
    """What :func:`fit` trains. ``unit`` names a step in metrics.csv and the logs (``episodes``,
    ``steps``); ``metric`` is the validation column (``val_acc``, ``val_map``), ``metric_name`` its
    words (``validation accuracy``)."""

    unit: str
    metric: str
    metric_name: str

    def step_loss(self, head: torch.nn.Module, i: int, device: torch.device) -> dict[str, torch.Tensor]:
        """The head's loss terms on training step ``i``: the scalar to minimise under ``"loss"``, then
        each named term (the columns ``train_<name>`` of metrics.csv)."""
        ...

    def validate(self, head: torch.nn.Module, device: torch.device) -> float | None:
        """The selection metric on the validation split (higher is better), None without one."""
        ...


@dataclass(frozen=True)
class Schedule:
    """Steps of a run: ``total`` steps, an optimiser update every ``accumulate`` steps, a
    validation every ``val_every`` and a checkpoint every ``checkpoint_every`` steps (at the next
    update boundary)."""

    total: int
    accumulate: int
    val_every: int
    checkpoint_every: int


@dataclass
class TrainResult:
    """What :func:`fit` did: steps done (of ``unit``), the best validation value
    (``metric_name``) and the step it came at, seconds in this call."""

    run: Path
    steps: int
    best_val: float
    best_step: int
    seconds: float
    unit: str = "episodes"
    metric_name: str = "validation accuracy"

    def summary(self, head: str) -> str:
        """One line: ``"ta2n: 400 episodes in 12 s; best validation accuracy 0.81 at episode 300; run R"``."""
        return (
            f"{head}: {self.steps} {self.unit} in {self.seconds:.0f} s; best {self.metric_name} {self.best_val:.4f} "
            f"at {self.unit.removesuffix('s')} {self.best_step}; run {self.run}"
        )


def make_optimizer(cfg: Any, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The run's optimiser (``cfg.optimizer``: sgd or adam, with ``lr``, ``momentum``, ``weight_decay``)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise FsvInputError(f"optimizer must be sgd or adam, got {cfg.optimizer!r}")


def lr_at(cfg: Any, step: int) -> float:
    """Learning rate at step ``step``: ``cfg.lr`` with a step schedule at ``cfg.lr_milestones``
    (any run configuration with those fields)."""
    return cfg.lr * cfg.lr_gamma ** sum(step >= m for m in cfg.lr_milestones)


def fit(
    objective: Objective,
    head: torch.nn.Module,
    cfg: Any,
    schedule: Schedule,
    run: Path,
    device: torch.device,
    *,
    stop_after: int | None = None,
) -> TrainResult:
    """Train ``head`` (on ``device``) for ``objective`` into ``run``, resuming from ``run/last.pt``;
    ``stop_after`` ends this call after that many steps (the run stays resumable). A head without
    trainable parameters is saved as it is."""
    params = [p for p in head.parameters() if p.requires_grad]
    opt = make_optimizer(cfg, params) if params else None
    start, best, best_step = 0, -1.0, -1
    losses: list[dict[str, float]] = []
    last = run / "last.pt"
    if last.is_file():
        ck = migrate_resume_point(load_checkpoint(last, device))
        restore_model(head, ck["model"], last)
        if opt is not None:
            opt.load_state_dict(ck["optimizer"])
        start, best, best_step = ck["steps"], ck["best_val"], ck["best_step"]
        losses = [dict(zip(ck["loss_names"], row, strict=True)) for row in ck["losses"]]
        set_rng_state(ck["rng"])
        log.info("resuming %s at %s %d", run, objective.unit, start)
    total = schedule.total if opt is not None else 0
    end = total if stop_after is None else min(total, start + stop_after)
    acc = schedule.accumulate
    t0 = time.perf_counter()
    with make_progress() as bar:
        job = bar.add_task(f"train {cfg.head}", total=total, completed=start, unit=objective.unit)
        for i in range(start, end):
            head.train()
            if hasattr(head, "set_progress"):
                head.set_progress(i / max(total, 1), total)
            terms = objective.step_loss(head, i, device)
            (terms["loss"] / acc).backward()
            losses.append({k: float(v.detach()) for k, v in terms.items()})
            boundary = (i + 1) % acc == 0 or i + 1 == total
            if boundary:
                for g in opt.param_groups:
                    g["lr"] = lr_at(cfg, i)
                opt.step()
                opt.zero_grad(set_to_none=True)
            bar.advance(job)
            validate = boundary and ((i + 1) % schedule.val_every < acc or i + 1 == total)
            if validate:
                val = objective.validate(head, device)
                shown = float("nan") if val is None else val  # no validation split: every validation saves best.pt
                if val is None or val > best:
                    best, best_step = (best if val is None else val), i + 1
                    save_checkpoint(run / "best.pt", {"model": head.state_dict(), "steps": i + 1, "val": shown})
                means = (
                    {f"train_{k}": float(np.mean([d[k] for d in losses])) for k in losses[0]}
                    if losses
                    else {"train_loss": float("nan")}
                )
                append_metrics(
                    run / "metrics.csv",
                    {objective.unit: i + 1, **means, objective.metric: shown, "lr": lr_at(cfg, i)},
                    step_key=objective.unit,
                )
                losses = []
                log.info(
                    "%s %s %d: %s %.4f (best %.4f at %d)",
                    cfg.head,
                    objective.unit,
                    i + 1,
                    objective.metric,
                    shown,
                    best,
                    best_step,
                )
            if boundary and ((i + 1) % schedule.checkpoint_every < acc or validate or i + 1 == end):
                names = list(losses[0]) if losses else []
                save_checkpoint(
                    last,
                    {
                        "model": head.state_dict(),
                        "optimizer": opt.state_dict(),
                        "steps": i + 1,
                        "best_val": best,
                        "best_step": best_step,
                        "rng": rng_state(),
                        "loss_names": names,
                        "losses": [[d[k] for k in names] for d in losses],
                    },
                )
    if opt is None and not (run / "best.pt").exists():
        save_checkpoint(run / "best.pt", {"model": head.state_dict(), "steps": 0, "val": float("nan")})
    return TrainResult(run, end, best, best_step, time.perf_counter() - t0, objective.unit, objective.metric_name)
