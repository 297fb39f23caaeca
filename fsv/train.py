"""Few-shot recognition runs: their configuration (:class:`TrainConfig`), data checks, the
objective that :func:`fsv.trainer.fit` trains (:class:`RecognitionObjective`: episodes, the head's
loss, validation accuracy), and evaluation on the fixed test episodes (:func:`evaluate`).

A run folder (:mod:`fsv.runs`) holds ``config.json`` (every value used), ``metrics.csv`` (one row
per validation), ``last.pt`` (the resume point) and ``best.pt`` (the model with the best validation
accuracy; test episodes are never looked at while training). Training episode ``i`` and its
augmentation depend only on ``(seed, i)``, so a killed run resumed from ``last.pt`` ends
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
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
from fsv.metrics import accuracy_ci, mean_std
from fsv.pipeline.manifests import Manifest
from fsv.pipeline.store import FeatureStore
from fsv.presets import Layer, Resolved, build_config
from fsv.progress import make_progress
from fsv.runs import DataSource, load_checkpoint, load_run, restore_model, write_run_config
from fsv.trainer import Schedule, TrainResult, fit

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Every value of a recognition run: the head card's paper preset and its preset for the
    manifest's dataset fill the defaults, ``--config`` and ``--set`` override them (:mod:`fsv.presets`);
    keys the trainer does not know go to the head's constructor (``head_args``)."""

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
        return build_config(cls, head, dataset, given)

    def check_data(self, manifest: Manifest, stores: list[FeatureStore]) -> None:
        """:func:`check_data` for this run (every run configuration offers it)."""
        check_data(self, manifest, stores)

    def run_training(
        self, source: DataSource, run: Path, *, device: str = "auto", stop_after: int | None = None
    ) -> TrainResult:
        """:func:`train` into ``run`` (every run configuration offers it)."""
        return train(self, source, run, device=device, stop_after=stop_after)

    @staticmethod
    def evaluate_run(
        run: Path, *, split: str, episodes: int | None, benchmark: str | None, device: str
    ) -> dict[str, Any]:
        """:func:`evaluate` as a dict (:mod:`fsv.evaluation`)."""
        from fsv.evaluation import no_benchmark

        no_benchmark(benchmark)
        return evaluate(run, split=split, episodes=episodes, device=device).to_dict()

    @staticmethod
    def mean_over_seeds(results: list[dict[str, Any]]) -> dict[str, Any]:
        """The first seed's fields with the mean accuracy and its std over ``results``."""
        mean, std = mean_std([r["accuracy"] for r in results])
        return {**results[0], "accuracy": mean, "std": std, "seeds": len(results), "runs": results, "ci95": None}


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
        raise FsvInputError(
            f"manifest {manifest.path or manifest.dataset} has no 'train' split (it has {manifest.splits}); few-shot heads need train/val/test"
        )
    available = with_features(stores)
    for split in ("train", "val"):
        if split in manifest.splits:
            EpisodeSampler(
                videos_by_class(manifest, split, available),
                EpisodeConfig(split, cfg.way, cfg.shot, cfg.query, cfg.seed),
            )


def split_bank(manifest: Manifest, stores: list[FeatureStore], split: str, cfg: TrainConfig) -> FeatureBank:
    available = with_features(stores)
    ids = [v for vs in videos_by_class(manifest, split, available).values() for v in vs]
    if not ids:
        raise FsvInputError(f"split {split!r} of {manifest.path or manifest.dataset} has no videos with features")
    return FeatureBank.load(stores, ids, cfg.view, cfg.seq_len)


@dataclass
class EpisodeOutcomes:
    """What a head answered on fixed episodes: ``accuracies`` ``[E]`` (query accuracy per episode)
    and, per query of every episode, its ``true`` and ``predicted`` class names ``[E * way * query]``."""

    accuracies: np.ndarray
    true: list[str]
    predicted: list[str]


@torch.inference_mode()
def episode_outcomes(
    head: FewShotHead, bank: FeatureBank, episodes: list, device: torch.device, *, progress: str | None = None
) -> EpisodeOutcomes:
    """:class:`EpisodeOutcomes` of ``head`` on ``episodes`` (eval mode)."""
    head.eval()
    accs = np.empty(len(episodes))
    true: list[str] = []
    predicted: list[str] = []
    with make_progress(disable=None if progress else True) as bar:
        task = bar.add_task(progress or "eval", total=len(episodes), unit="episodes")
        for i, ep in enumerate(episodes):
            t = episode_tensors(bank, ep).to(device)
            guess = head(t.support, t.support_labels, t.query, t.way).logits.argmax(1)
            accs[i] = (guess == t.query_labels).float().mean().item()
            true += [ep.classes[k] for k in t.query_labels.tolist()]
            predicted += [ep.classes[k] for k in guess.tolist()]
            bar.advance(task)
    return EpisodeOutcomes(accs, true, predicted)


def episode_accuracies(
    head: FewShotHead, bank: FeatureBank, episodes: list, device: torch.device, *, progress: str | None = None
) -> np.ndarray:
    """Query accuracy of ``head`` on each of ``episodes`` (eval mode), ``(len(episodes),)``."""
    return episode_outcomes(head, bank, episodes, device, progress=progress).accuracies


class RecognitionObjective:
    """Few-shot recognition for :func:`fsv.trainer.fit`: training episode ``i`` of the train split
    (augmented by its own ``(seed, i)`` generator), the head's loss on its queries, and the mean
    query accuracy on the fixed validation episodes."""

    unit = "episodes"
    metric = "val_acc"
    metric_name = "validation accuracy"

    def __init__(self, cfg: TrainConfig, manifest: Manifest, stores: list[FeatureStore]) -> None:
        self.cfg = cfg
        available = with_features(stores)
        self.bank = split_bank(manifest, stores, "train", cfg)
        self.val_bank = split_bank(manifest, stores, "val", cfg) if "val" in manifest.splits else None
        self.val_episodes = (
            fixed_episodes(
                manifest, EpisodeConfig("val", cfg.way, cfg.shot, cfg.query, 0), cfg.val_episodes, available=available
            )[1]
            if self.val_bank
            else []
        )
        self.sampler = EpisodeSampler(
            videos_by_class(manifest, "train", available),
            EpisodeConfig("train", cfg.way, cfg.shot, cfg.query, cfg.seed),
        )

    def step_loss(self, head: torch.nn.Module, i: int, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
        t = episode_tensors(
            self.bank, self.sampler.episode(i), train=True, rng=np.random.default_rng([self.cfg.seed, i, 1])
        ).to(device)
        return head.loss(head(t.support, t.support_labels, t.query, t.way), t.query_labels), {}

    def validate(self, head: torch.nn.Module, device: torch.device) -> float | None:
        return (
            float(episode_accuracies(head, self.val_bank, self.val_episodes, device).mean()) if self.val_bank else None
        )


def train(
    cfg: TrainConfig, source: DataSource, run: Path, *, device: str = "auto", stop_after: int | None = None
) -> TrainResult:
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
    objective = RecognitionObjective(cfg, manifest, stores)
    head = build_head(cfg, objective.bank).to(dev)
    schedule = Schedule(cfg.train_episodes, cfg.tasks_per_update, cfg.val_every, cfg.checkpoint_every)
    return fit(objective, head, cfg, schedule, run, dev, stop_after=stop_after)


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
    return evaluate_outcomes(run, split=split, episodes=episodes, device=device)[0]


def evaluate_outcomes(
    run: Path, *, split: str = "test", episodes: int | None = None, device: str = "auto"
) -> tuple[EvalResult, EpisodeOutcomes]:
    """:func:`evaluate`, with what the head answered on each query (``fsv report``'s confusion matrix)."""
    from fsv.pipeline.extract import resolve_device

    cfg, source = load_run(run)
    if not isinstance(cfg, TrainConfig):
        raise FsvInputError(
            f"{run} is a localization run ({cfg.head}); score it with fsv.localization.trainer.evaluate_localization (`fsv eval RUN` chooses for you)"
        )
    dev = resolve_device(device)
    manifest, stores = source.open()
    bank = split_bank(manifest, stores, split, cfg)
    head = build_head(cfg, bank).to(dev)
    best = run / "best.pt"
    if not best.is_file():
        raise FsvInputError(f"{run} has no best.pt yet: training has not reached its first validation")
    restore_model(head, load_checkpoint(best, dev)["model"], best)
    count = episodes or cfg.test_episodes
    available = with_features(stores)
    path, eps = fixed_episodes(
        manifest, EpisodeConfig(split, cfg.way, cfg.shot, cfg.query, 0), count, available=available
    )
    outcomes = episode_outcomes(head, bank, eps, dev, progress=f"eval {cfg.head} {split}")
    mean, ci = accuracy_ci(outcomes.accuracies)
    return EvalResult(cfg.head, manifest.dataset, cfg.way, cfg.shot, len(eps), mean, ci, split, str(path)), outcomes
