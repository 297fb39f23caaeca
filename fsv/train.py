"""One trainer for every few-shot head: episodes, the paper's optimiser and schedule, validation-only
model selection, checkpoints that resume to the identical result.

A run folder holds ``config.json`` (every value used), ``metrics.csv`` (one row per validation;
also TensorBoard events in ``tb/`` when tensorboard is installed),
``last.pt`` (resume point: model, optimiser, RNG state, episodes done, best so far) and ``best.pt``
(the model with the best validation accuracy; test episodes are never looked at while training).
Training episode ``i`` and its augmentation depend only on ``(seed, i)`` and checkpoints are taken
at optimiser-step boundaries, so a killed run resumed from ``last.pt`` ends bit-identical to an
uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import pickle
import time
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsv.data.episodes import (
    EpisodeConfig,
    EpisodeSampler,
    fixed_episodes,
    videos_by_class,
)
from fsv.data.features import FeatureBank, episode_tensors
from fsv.errors import FsvInputError
from fsv.heads.base import FewShotHead, create_head
from fsv.metrics import accuracy_ci
from fsv.pipeline.manifests import Manifest
from fsv.pipeline.store import FeatureStore
from fsv.presets import Layer, Resolved, card_layers, resolve
from fsv.progress import make_progress

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Every value of a run; the head's paper preset fills the defaults, ``--set`` overrides them."""

    head: str
    way: int = 5
    shot: int = 5
    query: int = 5
    seed: int = 0
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    tasks_per_update: int = 16
    train_episodes: int = 10000
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    seq_len: int = 8
    view: str = "pooled"
    val_every: int = 1000
    val_episodes: int = 1000
    test_episodes: int = 10000
    checkpoint_every: int = 200
    head_args: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_head(cls, head: str, overrides: dict[str, Any] | None = None, dataset: str | None = None) -> "TrainConfig":
        """The head's preset (see its module docstring for sources) and its preset for ``dataset``,
        with ``overrides`` applied (:mod:`fsv.presets`)."""
        return cls.resolve(head, dataset, [Layer("overrides", overrides or {})])[0]

    @classmethod
    def resolve(cls, head: str, dataset: str | None, given: list[Layer]) -> tuple["TrainConfig", Resolved]:
        """The configuration from the head card's layers for ``dataset`` and the user's ``given``
        layers, with the resolution (where each value came from)."""
        layers, key = card_layers(head, dataset)
        resolved = resolve({f.name for f in fields(cls)} - {"head", "head_args"}, layers + given)
        resolved.dataset_preset = key
        return cls(head=head, **resolved.fields, head_args=resolved.head_args), resolved


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


def feature_dim(bank: FeatureBank) -> int:
    shape = bank.feature_shape
    return shape[1] if bank.view == "patches" else shape[0]


def build_head(cfg: TrainConfig, bank: FeatureBank) -> FewShotHead:
    return create_head(cfg.head, feature_dim=feature_dim(bank), seq_len=cfg.seq_len, **cfg.head_args)


def with_features(stores: list[FeatureStore]) -> set[str]:
    """Ids of the videos that every store holds."""
    return set.intersection(*(set(s.index) for s in stores))


def check_data(cfg: TrainConfig, manifest: Manifest, stores: list[FeatureStore]) -> None:
    """Raise :class:`FsvInputError` before any feature is loaded when the train (or val) split
    cannot give this run's episodes (too few classes with enough videos with features)."""
    if "train" not in manifest.splits:
        raise FsvInputError(f"manifest {manifest.path or manifest.dataset} has no 'train' split (it has {manifest.splits}); few-shot heads need train/val/test")
    available = with_features(stores)
    for split in ("train", "val"):
        if split in manifest.splits:
            EpisodeSampler(videos_by_class(manifest, split, available), EpisodeConfig(split, cfg.way, cfg.shot, cfg.query, cfg.seed))


def split_bank(manifest: Manifest, stores: list[FeatureStore], split: str, cfg: TrainConfig) -> FeatureBank:
    available = with_features(stores)
    ids = [v for vs in videos_by_class(manifest, split, available).values() for v in vs]
    if not ids:
        raise FsvInputError(f"split {split!r} of {manifest.path or manifest.dataset} has no videos with features")
    return FeatureBank.load(stores, ids, cfg.view, cfg.seq_len)


def write_run_config(run: Path, config: dict[str, Any], source: DataSource) -> None:
    """Write ``run/config.json`` (every value and the data source), or check that the run folder
    already holds this configuration (resuming); another configuration is refused."""
    path = run / "config.json"
    record = {"config": config, "data": {"manifest": str(source.manifest), "stores": [str(s) for s in source.stores]}}
    if path.is_file():
        previous = read_run_record(run)
        if previous["config"] != record["config"]:
            diff = ", ".join(k for k in record["config"] if previous["config"].get(k) != record["config"][k])
            raise FsvInputError(f"{run} holds a run with another configuration; use a new --out folder (differences: {diff})")
    else:
        path.write_text(json.dumps(record, indent=2))


def _optimizer(cfg: Any, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise FsvInputError(f"optimizer must be sgd or adam, got {cfg.optimizer!r}")


def lr_at(cfg: Any, episode: int) -> float:
    """Learning rate for training episode (or step) ``episode``: ``cfg.lr`` with a step schedule at
    ``cfg.lr_milestones`` (any run configuration with those fields)."""
    return cfg.lr * cfg.lr_gamma ** sum(episode >= m for m in cfg.lr_milestones)


@torch.inference_mode()
def episode_accuracies(head: FewShotHead, bank: FeatureBank, episodes: list, device: torch.device, *, progress: str | None = None) -> np.ndarray:
    """Query accuracy of ``head`` on each of ``episodes`` (eval mode), ``(len(episodes),)``."""
    head.eval()
    accs = np.empty(len(episodes))
    with make_progress(disable=None if progress else True) as bar:
        task = bar.add_task(progress or "eval", total=len(episodes), unit="episodes")
        for i, ep in enumerate(episodes):
            t = episode_tensors(bank, ep).to(device)
            logits = head(t.support, t.support_labels, t.query, t.way).logits
            accs[i] = (logits.argmax(1) == t.query_labels).float().mean().item()
            bar.advance(task)
    return accs


def _save(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainResult:
    run: Path
    episodes: int
    best_val: float
    best_episode: int
    seconds: float


def train(cfg: TrainConfig, source: DataSource, run: Path, *, device: str = "auto", stop_after: int | None = None) -> TrainResult:
    """Train (or resume) ``cfg.head`` into the run folder ``run``; ``stop_after`` ends early after
    that many episodes in this call (the run stays resumable)."""
    from fsv.pipeline.extract import resolve_device

    dev = resolve_device(device)
    source = source.in_run(run)
    manifest, stores = source.open()
    check_data(cfg, manifest, stores)  # before the run folder is written: a run that cannot start leaves nothing
    run.mkdir(parents=True, exist_ok=True)
    source = source.pin(run, manifest)
    write_run_config(run, asdict(cfg), source)
    torch.manual_seed(cfg.seed)
    bank = split_bank(manifest, stores, "train", cfg)
    head = build_head(cfg, bank).to(dev)
    params = [p for p in head.parameters() if p.requires_grad]
    opt = _optimizer(cfg, params) if params else None
    val_bank = split_bank(manifest, stores, "val", cfg) if "val" in manifest.splits else None
    available = with_features(stores)
    val_eps = fixed_episodes(manifest, EpisodeConfig("val", cfg.way, cfg.shot, cfg.query, 0), cfg.val_episodes, available=available)[1] if val_bank else []
    start, best, best_ep = 0, -1.0, -1
    losses_since_val: list[float] = []
    last = run / "last.pt"
    if last.is_file():
        ck = load_checkpoint(last, dev)
        head.load_state_dict(ck["model"])
        if opt is not None:
            opt.load_state_dict(ck["optimizer"])
        start, best, best_ep = ck["episodes"], ck["best_val"], ck["best_episode"]
        losses_since_val = list(ck["losses"])
        _set_rng_state(ck["rng"])
        log.info("resuming %s at episode %d", run, start)
    sampler = EpisodeSampler(videos_by_class(manifest, "train", available), EpisodeConfig("train", cfg.way, cfg.shot, cfg.query, cfg.seed))
    total = cfg.train_episodes if params else 0
    end = total if stop_after is None else min(total, start + stop_after)
    metrics = run / "metrics.csv"
    t0 = time.perf_counter()
    losses = losses_since_val
    with make_progress() as bar:
        task = bar.add_task(f"train {cfg.head}", total=total, completed=start, unit="episodes")
        for i in range(start, end):
            head.train()
            if hasattr(head, "set_progress"):
                head.set_progress(i / max(total, 1), total)
            t = episode_tensors(bank, sampler.episode(i), train=True, rng=np.random.default_rng([cfg.seed, i, 1])).to(dev)
            out = head(t.support, t.support_labels, t.query, t.way)
            loss = head.loss(out, t.query_labels)
            (loss / cfg.tasks_per_update).backward()
            losses.append(loss.item())
            boundary = (i + 1) % cfg.tasks_per_update == 0 or i + 1 == total
            if boundary:
                for g in opt.param_groups:
                    g["lr"] = lr_at(cfg, i)
                opt.step()
                opt.zero_grad(set_to_none=True)
            bar.advance(task)
            validate = boundary and ((i + 1) % cfg.val_every < cfg.tasks_per_update or i + 1 == total)
            if validate:
                val = float(episode_accuracies(head, val_bank, val_eps, dev).mean()) if val_bank else float("nan")
                if val_bank is None or val > best:
                    best, best_ep = (val if val_bank else best), i + 1
                    _save(run / "best.pt", {"model": head.state_dict(), "episodes": i + 1, "val": val})
                _append_metrics(metrics, {"episodes": i + 1, "train_loss": float(np.mean(losses)) if losses else float("nan"), "val_acc": val, "lr": lr_at(cfg, i)})
                losses = []
                log.info("%s episode %d: val accuracy %.4f (best %.4f at %d)", cfg.head, i + 1, val, best, best_ep)
            if boundary and ((i + 1) % cfg.checkpoint_every < cfg.tasks_per_update or validate or i + 1 == end):
                _save(last, {"model": head.state_dict(), "optimizer": opt.state_dict(), "episodes": i + 1, "best_val": best, "best_episode": best_ep, "rng": _rng_state(), "losses": losses})
    if not params and not (run / "best.pt").exists():
        _save(run / "best.pt", {"model": head.state_dict(), "episodes": 0, "val": float("nan")})
    return TrainResult(run, end, best, best_ep, time.perf_counter() - t0)


def _append_metrics(path: Path, row: dict[str, Any], step_key: str = "episodes") -> None:
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
        record["config"]["head"], record["data"]["manifest"], record["data"]["stores"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise FsvInputError(f"{path}: not a readable run configuration ({type(e).__name__}: {e}); the run folder is damaged: "
                            "restore the file, or train again with a new --out folder") from None
    return record


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """A checkpoint written by the trainers (tensors and plain values only: ``weights_only``); a
    truncated or damaged file is an input error naming it."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        what = "delete it to resume from the start" if path.name == "last.pt" else "train again (the same `fsv train-head` command resumes and rewrites it)"
        raise FsvInputError(f"{path}: cannot be read as a checkpoint, it is truncated or damaged ({type(e).__name__}: {str(e).splitlines()[0][:120]}); {what}") from None


def load_run(run: Path) -> tuple[TrainConfig, DataSource]:
    """A run folder's configuration and data source."""
    record = read_run_record(run)
    c = record["config"]
    cfg = replace(TrainConfig(head=c["head"]), **{k: v for k, v in c.items() if k != "head"})
    return cfg, DataSource(Path(record["data"]["manifest"]), tuple(Path(s) for s in record["data"]["stores"]))


@dataclass
class EvalResult:
    head: str
    dataset: str
    way: int
    shot: int
    episodes: int
    accuracy: float
    ci95: float
    split: str
    episode_file: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(run: Path, *, split: str = "test", episodes: int | None = None, device: str = "auto") -> EvalResult:
    """Mean query accuracy ± 95% CI of the run's best model on the fixed episodes of ``split``."""
    from fsv.pipeline.extract import resolve_device

    cfg, source = load_run(run)
    dev = resolve_device(device)
    manifest, stores = source.open()
    bank = split_bank(manifest, stores, split, cfg)
    head = build_head(cfg, bank).to(dev)
    best = run / "best.pt"
    if not best.is_file():
        raise FsvInputError(f"{run} has no best.pt yet: training has not reached its first validation")
    head.load_state_dict(load_checkpoint(best, dev)["model"])
    count = episodes or cfg.test_episodes
    available = with_features(stores)
    path, eps = fixed_episodes(manifest, EpisodeConfig(split, cfg.way, cfg.shot, cfg.query, 0), count, available=available)
    accs = episode_accuracies(head, bank, eps, dev, progress=f"eval {cfg.head} {split}")
    mean, ci = accuracy_ci(accs)
    return EvalResult(cfg.head, manifest.dataset, cfg.way, cfg.shot, len(eps), mean, ci, split, str(path))
