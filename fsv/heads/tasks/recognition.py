"""Few-shot recognition, a kind of run (:class:`Recognition`): its configuration
(:class:`RecognitionConfig`), data checks, the objective that :func:`fsv.heads.engine.loop.fit` trains
(:class:`RecognitionObjective`: episodes, the head's loss, validation accuracy), evaluation on the
fixed test episodes (:func:`evaluate`) and its report sections.

A run folder (:mod:`fsv.heads.engine.run_folder`) holds ``config.json`` (every value used), ``metrics.csv`` (one row
per validation), ``last.pt`` (the resume point) and ``best.pt`` (the model with the best validation
accuracy; test episodes are never looked at while training). Training episode ``i`` and its
augmentation depend only on ``(seed, i)``, so a killed run resumed from ``last.pt`` ends
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from rich.table import Table

from fsv.device import resolve_device
from fsv.errors import FsvInputError
from fsv.heads.data.episodes import (
    EpisodeConfig,
    EpisodeSampler,
    fixed_episodes,
    videos_by_class,
)
from fsv.heads.data.features import EpisodeTensors, FeatureBank, episode_tensors, with_features
from fsv.heads.engine.loop import Schedule
from fsv.heads.engine.run_folder import RENAMED_KEYS
from fsv.heads.engine.runner import load_best
from fsv.heads.models import RecognitionHead, create_head
from fsv.heads.tasks.base import Task
from fsv.metrics import accuracy_ci, mean_std
from fsv.pipeline.manifests import Manifest
from fsv.pipeline.store import FeatureStore
from fsv.progress import make_progress
from fsv.report import figures
from fsv.report.page import Cell, Page, num
from fsv.tables import accuracy_table

log = logging.getLogger(__name__)


@dataclass
class RecognitionConfig:
    """Every value of a recognition run: the head card's paper preset and its preset for the
    manifest's dataset fill the defaults, ``--config`` and ``--set`` override them (:mod:`fsv.heads.engine.config`);
    keys the trainer does not know go to the head's constructor (``head_args``). Training is
    ``train_episodes`` episodes, an optimiser update every ``episodes_per_update`` of them."""

    head: str
    way: int = 5
    shot: int = 5
    query: int = 5
    seed: int = 0
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    episodes_per_update: int = 16
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


def feature_dim(bank: FeatureBank) -> int:
    shape = bank.feature_shape
    return shape[1] if bank.view == "patches" else shape[0]


def build_head(cfg: RecognitionConfig, bank: FeatureBank) -> RecognitionHead:
    return create_head(cfg.head, feature_dim=feature_dim(bank), seq_len=cfg.seq_len, **cfg.head_args)


def check_data(cfg: RecognitionConfig, manifest: Manifest, stores: list[FeatureStore]) -> None:
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


def split_bank(manifest: Manifest, stores: list[FeatureStore], split: str, view: str, seq_len: int) -> FeatureBank:
    """The videos of ``split`` that every store holds, in ``view`` at ``seq_len`` steps."""
    available = with_features(stores)
    ids = [v for vs in videos_by_class(manifest, split, available).values() for v in vs]
    if not ids:
        raise FsvInputError(f"split {split!r} of {manifest.path or manifest.dataset} has no videos with features")
    return FeatureBank.load(stores, ids, view, seq_len)


@dataclass
class EpisodeOutcomes:
    """What a head answered on fixed episodes: ``accuracies`` ``[E]`` (query accuracy per episode)
    and, per query of every episode, its ``true`` and ``predicted`` class names ``[E * way * query]``."""

    accuracies: np.ndarray
    true: list[str]
    predicted: list[str]


# What is scored on an episode: (support, support_labels, query, way) -> logits [Q, way]
Logits = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


def head_logits(head: RecognitionHead) -> Logits:
    """``head`` as a :data:`Logits` callable (put it in eval mode first)."""
    return lambda support, support_labels, query, way: head(support, support_labels, query, way).logits


@torch.inference_mode()
def episode_outcomes(
    logits: Logits, bank: FeatureBank, episodes: list, device: torch.device, *, progress: str | None = None
) -> EpisodeOutcomes:
    """:class:`EpisodeOutcomes` of ``logits`` on ``episodes`` (features on ``device``, as float32)."""
    accs = np.empty(len(episodes))
    true: list[str] = []
    predicted: list[str] = []
    with make_progress(disable=None if progress else True) as bar:
        bar_id = bar.add_task(progress or "eval", total=len(episodes), unit="episodes")
        for i, ep in enumerate(episodes):
            t = episode_tensors(bank, ep).to(device)
            guess = logits(t.support, t.support_labels, t.query, t.way).argmax(1)
            accs[i] = (guess == t.query_labels).float().mean().item()
            true += [ep.classes[k] for k in t.query_labels.tolist()]
            predicted += [ep.classes[k] for k in guess.tolist()]
            bar.advance(bar_id)
    return EpisodeOutcomes(accs, true, predicted)


def episode_accuracies(
    head: RecognitionHead, bank: FeatureBank, episodes: list, device: torch.device, *, progress: str | None = None
) -> np.ndarray:
    """Query accuracy of ``head`` on each of ``episodes`` (eval mode), ``(len(episodes),)``."""
    head.eval()
    return episode_outcomes(head_logits(head), bank, episodes, device, progress=progress).accuracies


def training_episode(bank: FeatureBank, sampler: EpisodeSampler, seed: int, i: int) -> EpisodeTensors:
    """Training episode ``i`` of ``sampler`` from ``bank``, with the temporal jitter of its own
    ``(seed, i)`` generator (the trainer's, and ``fsv.api.Episodes``')."""
    return episode_tensors(bank, sampler.episode(i), train=True, rng=np.random.default_rng([seed, i, 1]))


class RecognitionObjective:
    """Few-shot recognition for :func:`fsv.heads.engine.loop.fit`: training episode ``i`` of the train split
    (augmented by its own ``(seed, i)`` generator), the head's loss on its queries, and the mean
    query accuracy on the fixed validation episodes."""

    unit = "episodes"
    metric = "val_acc"
    metric_name = "validation accuracy"

    def __init__(self, cfg: RecognitionConfig, manifest: Manifest, stores: list[FeatureStore]) -> None:
        self.cfg = cfg
        available = with_features(stores)
        self.bank = split_bank(manifest, stores, "train", cfg.view, cfg.seq_len)
        self.val_bank = split_bank(manifest, stores, "val", cfg.view, cfg.seq_len) if "val" in manifest.splits else None
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

    def train_episode(self, i: int) -> EpisodeTensors:
        """Training episode ``i``: its videos and temporal jitter depend only on ``(seed, i)``."""
        return training_episode(self.bank, self.sampler, self.cfg.seed, i)

    def step_loss(self, head: torch.nn.Module, i: int, device: torch.device) -> dict[str, torch.Tensor]:
        t = self.train_episode(i).to(device)
        return head.loss(head(t.support, t.support_labels, t.query, t.way), t.query_labels)

    def validate(self, head: torch.nn.Module, device: torch.device) -> float | None:
        return (
            float(episode_accuracies(head, self.val_bank, self.val_episodes, device).mean()) if self.val_bank else None
        )


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
    cfg, source = RECOGNITION.load(run)
    dev = resolve_device(device)
    manifest, stores = source.open()
    bank = split_bank(manifest, stores, split, cfg.view, cfg.seq_len)
    head = load_best(run, build_head(cfg, bank).to(dev), dev).eval()
    config = EpisodeConfig(split, cfg.way, cfg.shot, cfg.query, 0)
    return score_fixed_episodes(
        head_logits(head), cfg.head, manifest, stores, bank, config, episodes or cfg.test_episodes, dev
    )


def score_fixed_episodes(
    logits: Logits,
    name: str,
    manifest: Manifest,
    stores: list[FeatureStore],
    bank: FeatureBank,
    config: EpisodeConfig,
    count: int,
    device: torch.device,
) -> tuple[EvalResult, EpisodeOutcomes]:
    """Mean query accuracy ± 95% CI of ``logits`` (called ``name``) on the ``count`` fixed episodes
    of ``config`` (``fsv eval``'s numbers, and what ``fsv.api.evaluate_logits`` gives)."""
    path, eps = fixed_episodes(manifest, config, count, available=with_features(stores))
    outcomes = episode_outcomes(logits, bank, eps, device, progress=f"eval {name} {config.split}")
    mean, ci = accuracy_ci(outcomes.accuracies)
    result = EvalResult(name, manifest.dataset, config.way, config.shot, len(eps), mean, ci, config.split, str(path))
    return result, outcomes


def report_sections(page: Page, run: Path, *, episodes: int | None, device: str) -> dict[str, Any]:
    """``fsv report``'s recognition sections (see :meth:`Recognition.report`)."""
    result, outcomes = evaluate_outcomes(run, split="test", episodes=episodes, device=device)
    evaluation = result.to_dict()
    chance = 1.0 / result.way
    page.section("Evaluation", "evaluation")
    page.table(
        ["", "accuracy (%)", "± 95% CI", "episodes"],
        [
            [
                f"{result.head}, {result.way}-way {result.shot}-shot, {result.split}",
                num(result.accuracy, "accuracy"),
                num(result.ci95, "ci95"),
                Cell(str(result.episodes), "episodes", result.episodes),
            ],
            ["random guess (1 / way)", num(chance, "chance"), Cell("–"), Cell("")],
        ],
        name="evaluation",
    )
    classes = sorted(set(outcomes.true))
    index = {c: k for k, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(outcomes.true, outcomes.predicted, strict=True):
        matrix[index[t], index[p]] += 1
    per_class = {c: float(matrix[k, k] / max(matrix[k].sum(), 1)) for c, k in index.items()}
    page.section("Per class", "classes")
    page.figure(
        figures.class_bars(
            per_class,
            f"query accuracy per class over {result.episodes} test episodes",
            "accuracy",
            reference=chance,
            reference_label="chance",
        ),
        "Per-class query accuracy (dashed: chance)",
        name="per-class",
    )
    page.figure(
        figures.confusion_matrix(matrix, classes),
        "Confusion matrix over the fixed test episodes (row-normalised; a class is only "
        "confused with the classes it met in an episode)",
        name="confusion",
    )
    page.table(
        ["class", "queries", "accuracy (%)"],
        [[c, Cell(str(int(matrix[k].sum()))), num(per_class[c], f"class:{c}")] for c, k in index.items()],
        name="per-class",
    )
    return {"evaluation": evaluation, "per_class": per_class, "classes": classes, "confusion": matrix.tolist()}


class Recognition(Task):
    """Few-shot recognition: N-way K-shot episodes, accuracy on fixed test episodes."""

    name = "recognition"
    config_class = RecognitionConfig
    length = ("--episodes", "train_episodes")
    length_words = "trains on episodes: use --episodes N"
    aliases = RENAMED_KEYS  # the names of earlier versions (in --set, --config files)
    takes_way = True
    headline = ("accuracy", "accuracy (%)")

    def check_data(self, cfg: RecognitionConfig, manifest: Manifest, stores: list[FeatureStore]) -> None:
        check_data(cfg, manifest, stores)

    def build(
        self, cfg: RecognitionConfig, manifest: Manifest, stores: list[FeatureStore], run: Path
    ) -> tuple[RecognitionObjective, RecognitionHead, Schedule]:
        objective = RecognitionObjective(cfg, manifest, stores)
        schedule = Schedule(cfg.train_episodes, cfg.episodes_per_update, cfg.val_every, cfg.checkpoint_every)
        return objective, build_head(cfg, objective.bank), schedule

    def evaluate(
        self,
        run: Path,
        *,
        split: str,
        episodes: int | None,
        benchmark: str | None,
        device: str,
    ) -> dict[str, Any]:
        self.check_benchmark(benchmark)
        return evaluate(run, split=split, episodes=episodes, device=device).to_dict()

    def mean_over_seeds(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """The first seed's fields with the mean accuracy and its std over ``results``."""
        mean, std = mean_std([r["accuracy"] for r in results])
        return {**results[0], "accuracy": mean, "std": std, "seeds": len(results), "runs": results, "ci95": None}

    def eval_table(self, folder: Path, split: str, payload: dict[str, Any]) -> Table:
        return accuracy_table(folder, split, payload)

    def report(self, page: Page, run: Path, *, episodes: int | None, device: str, videos: int) -> dict[str, Any]:
        """Evaluation beside chance, per-class accuracy and the confusion matrix over the fixed test episodes."""
        return report_sections(page, run, episodes=episodes, device=device)


RECOGNITION = Recognition()
