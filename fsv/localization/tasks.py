"""The two localization tasks as the trainer sees them: data of a run, one training step's loss, and
the detections and ground truth of a split (what mAP is computed on).

* :class:`WtalTask` — weakly-supervised TAL (VQK-Net): video-level labels in training, every
  video of the test split scored against its annotated segments (THUMOS14's ambiguous segments
  travel with the ground truth).
* :class:`CommonTask` — few-shot common action localization (CDC-CA): episodes over an 80/10/10
  class split; each episode's query is scored as one "video" with the single label ``common``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsv.errors import FsvInputError
from fsv.heads.base import create_head, head_card
from fsv.localization import common as cm
from fsv.localization.benchmark import benchmark_classes, load_benchmark
from fsv.localization.config import LocConfig
from fsv.localization.data import VideoBank, carve_val, split_roles, to_seconds
from fsv.localization.wtal import WtalBatches, predict_videos, video_labels
from fsv.pipeline.manifests import Manifest, VideoRecord
from fsv.pipeline.store import FeatureStore
from fsv.train import with_features

log = logging.getLogger(__name__)

Detections = dict[str, list[tuple[float, float, float, str]]]
GroundTruth = dict[str, list[tuple[float, float, str]]]


@dataclass
class Scored:
    """What one split's mAP is computed on, and how many items (videos or episodes) it covers;
    ``extra`` holds what a task adds (``"leak"``: benchmark episodes with query-video supports;
    ``"actionness"``: video -> (step centres s ``[T]``, the head's actionness ``[T]``))."""

    predictions: Detections
    ground_truth: GroundTruth
    ambiguous: dict[str, np.ndarray] = field(default_factory=dict)
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    items: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class WtalTask:
    """VQK-Net's data: train / val (named or carved) / test banks of snippet features."""

    def __init__(self, cfg: LocConfig, manifest: Manifest, stores: list[FeatureStore], cache: Path | None) -> None:
        self.cfg, self.manifest, self.stores, self.cache = cfg, manifest, stores, cache
        self.classes = list(manifest.classes)
        self.roles = split_roles(manifest)
        have = with_features(stores)
        train = [r for r in manifest.select(self.roles.train) if r.video_id in have]
        if self.roles.val is None:
            train, self.val_records = carve_val(train, cfg.val_fraction, cfg.seed)
        else:
            self.val_records = [r for r in manifest.select(self.roles.val) if r.video_id in have]
        self.train_records = train
        self.test_records = [r for r in manifest.select(self.roles.test) if r.video_id in have]
        if not any(r.segments for r in self.test_records):
            raise FsvInputError(
                f"the {self.roles.test} split of {manifest.path or manifest.dataset} has no annotated segments among the videos with "
                "features; weakly-supervised localization is scored on them (use a localization manifest, e.g. thumos14)"
            )
        self._banks: dict[str, VideoBank] = {}

    def bank(self, split: str) -> VideoBank:
        """``train``, ``val`` or ``test`` videos with features."""
        if split not in self._banks:
            records = self.records(split)
            if not records:
                raise FsvInputError(
                    f"the {split} split of {self.manifest.path or self.manifest.dataset} has no videos with features"
                )
            self._banks[split] = VideoBank.load(self.stores, records, cache=self.cache)
        return self._banks[split]

    def build_head(self) -> torch.nn.Module:
        args = {"streams": stream_count(self.stores), **self.cfg.head_args}
        return create_head(self.cfg.head, feature_dim=self.bank("train").dim, num_classes=len(self.classes), **args)

    def batches(self) -> WtalBatches:
        bank = self.bank("train")
        return WtalBatches(
            bank,
            video_labels(bank.records, self.classes),
            self.cfg.batch_videos,
            self.cfg.min_pairs,
            self.cfg.num_segments,
            self.cfg.seed,
        )

    def step_loss(
        self, head: torch.nn.Module, batches: WtalBatches, i: int, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batches.batch(i)
        return head.loss(head(x.to(device)), y.to(device))

    def score_split(
        self, head: torch.nn.Module, split: str, device: torch.device, advance: Callable[[], None] | None = None
    ) -> Scored:
        from fsv.heads.vqknet import localize

        bank = self.bank(split)
        curves: dict[str, np.ndarray] = {}
        preds = predict_videos(head, localize, bank, self.classes, device, advance, curves=curves)
        windows = {
            r.video_id: (float(bank.step_spans(r.video_id)[0, 0]), float(bank.step_spans(r.video_id)[-1, 1]))
            for r in bank.records
        }
        actionness = {v: (bank.step_spans(v).mean(1), s) for v, s in curves.items()}
        return Scored(
            preds,
            ground_truth(bank.records),
            ambiguous_segments(bank.records),
            windows,
            len(bank),
            extra={"actionness": actionness},
        )

    def records(self, split: str) -> list[VideoRecord]:
        """The videos with features of ``train``, ``val`` or ``test``."""
        if split not in ("train", "val", "test"):
            raise FsvInputError(f"split must be train, val or test, got {split!r}")
        return {"train": self.train_records, "val": self.val_records, "test": self.test_records}[split]

    def size(self, split: str) -> int:
        return len(self.records(split))


def stream_count(stores: list[FeatureStore]) -> int:
    """How many streams (``rgb``, ``flow``) the stores' features concatenate, by their specs (1 for
    stores that name none): VQK-Net gives each stream its own attention branch."""
    return sum(max(1, len(s.spec.streams)) for s in stores)


def ground_truth(records: list[VideoRecord]) -> GroundTruth:
    return {r.video_id: [(s.start, s.end, s.label) for s in r.segments] for r in records}


def ambiguous_segments(records: list[VideoRecord]) -> dict[str, np.ndarray]:
    return {r.video_id: np.asarray(r.ambiguous, dtype=np.float64).reshape(-1, 2) for r in records if r.ambiguous}


class CommonTask:
    """CDC-CA's data: every annotated video with features, classes split 80/10/10."""

    def __init__(self, cfg: LocConfig, manifest: Manifest, stores: list[FeatureStore], cache: Path | None) -> None:
        self.cfg, self.manifest, self.stores = cfg, manifest, stores
        have = with_features(stores)
        records = [r for r in manifest if r.video_id in have and r.segments]
        if not records:
            raise FsvInputError(
                f"{manifest.path or manifest.dataset} has no annotated videos with features; common localization needs segments"
            )
        self.bank = VideoBank.load(stores, records, cache=cache)
        self.instances = cm.manifest_instances(manifest, set(self.bank.index))
        test_classes = benchmark_classes(cfg.class_split, manifest) if cfg.class_split != "seeded" else None
        self.split_of = cm.class_split(sorted({i.label for i in self.instances}), cfg.class_split_seed, test_classes)
        durations = {r.video_id: float(self.bank.step_spans(r.video_id)[-1, 1]) for r in records}
        self.queries = cm.make_queries(self.instances, durations, cfg.mode, cfg.max_query_frames / cfg.frame_fps)
        self._episodes: dict[str, cm.CommonEpisodes] = {}
        train_instances = [i for i in self.instances if self.split_of[i.label] == "train"]
        self.num_pseudo = min(cfg.num_pseudo_classes, len(train_instances))
        self.pseudo = (
            cm.pseudo_classes(self.bank, train_instances, self.num_pseudo, cfg.seed) if self.num_pseudo else {}
        )
        self.by_video: dict[str, list[cm.Instance]] = {}
        for inst in self.instances:
            self.by_video.setdefault(inst.video, []).append(inst)
        self.standardize = (
            cm.Standardizer.for_run(self.bank, sorted({i.video for i in train_instances}), cache)
            if cfg.standardize
            else None
        )
        steps = np.diff(self.bank.spans[:, 0])
        self.step_seconds = float(np.median(steps[steps > 0])) if (steps > 0).any() else 1.0
        log.info(
            "common localization: %d instances, %d %s-instance queries, classes %s",
            len(self.instances),
            len(self.queries),
            cfg.mode,
            {s: sum(v == s for v in self.split_of.values()) for s in ("train", "val", "test")},
        )

    def episodes(self, split: str) -> cm.CommonEpisodes:
        if split not in self._episodes:
            classes = {c for c, s in self.split_of.items() if s == split}
            self._episodes[split] = cm.CommonEpisodes(self.queries, self.instances, classes, self.cfg.shot, split)
        return self._episodes[split]

    def frames_to_steps(self, frames: float) -> int:
        return max(1, int(round(frames / self.cfg.frame_fps / self.step_seconds)))

    def build_head(self) -> torch.nn.Module:
        pseudo = {"num_pseudo_classes": max(self.num_pseudo, 1)} if reads_pseudo_classes(self.cfg) else {}
        return create_head(self.cfg.head, feature_dim=self.bank.dim, **pseudo, **self.cfg.head_args)

    def batches(self) -> cm.CommonEpisodes:
        return self.episodes("train")

    def step_loss(
        self, head: torch.nn.Module, episodes: cm.CommonEpisodes, i: int, device: torch.device
    ) -> tuple[torch.Tensor, dict[str, float]]:
        rng = np.random.default_rng([self.cfg.seed, i, 0])
        ep = episodes.episode(rng, f"train{i}")
        others = [(i.start, i.end) for i in self.by_video.get(ep.video, []) if i.label != ep.label]
        t = cm.episode_tensors(
            self.bank,
            ep,
            head.num_snippets,
            crop_steps=self.frames_to_steps(self.cfg.max_query_frames),
            rng=rng,
            pseudo=self.pseudo if self.num_pseudo else None,
            num_pseudo=max(self.num_pseudo, 1),
            others=others,
            standardize=self.standardize,
        )
        gt = t.gt.to(device)
        out = head(
            t.query.to(device),
            t.supports.to(device),
            t.pseudo.to(device) if t.pseudo is not None else None,
            gt,
            t.distractors.to(device),
        )
        return head.loss(out, gt)

    def fixed_episodes(self, split: str, benchmark: str | None = None) -> list[cm.CommonEpisode]:
        if benchmark is not None:
            eps, _ = load_benchmark(benchmark, self.manifest, self.cfg.shot, set(self.bank.index))
            return eps
        count = self.cfg.val_episodes if split == "val" else self.cfg.test_episodes
        return self.episodes(split).fixed(count, self.cfg.class_split_seed)

    @torch.inference_mode()
    def score_split(
        self,
        head: torch.nn.Module,
        split: str,
        device: torch.device,
        advance: Callable[[], None] | None = None,
        benchmark: str | None = None,
    ) -> Scored:
        head.eval()
        eps = self.fixed_episodes(split, benchmark)
        windows = [self.frames_to_steps(w) for w in self.cfg.windows]
        preds: Detections = {}
        gt: GroundTruth = {}
        actionness: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for ep in eps:
            t = cm.episode_tensors(self.bank, ep, head.num_snippets, standardize=self.standardize)
            segs, scores = head.detect(
                t.query.to(device), t.supports.to(device), windows=windows, overlap=self.cfg.window_overlap
            )
            spans = self.bank.step_spans(ep.video)
            actionness[ep.key] = (
                spans[t.offset : t.offset + len(t.query)].mean(1),
                head.step_actionness(t.query.to(device)).float().cpu().numpy(),
            )
            secs = to_seconds(np.asarray(segs, dtype=np.float64).reshape(-1, 2) + t.offset, spans)
            preds[ep.key] = [(float(s), float(e), float(p), cm.COMMON) for (s, e), p in zip(secs, scores, strict=True)]
            gt[ep.key] = [(s, e, cm.COMMON) for s, e in ep.gt]
            if advance is not None:
                advance()
        leaks = [ep.key for ep in eps if ep.leak]
        return Scored(
            preds,
            gt,
            {},
            {ep.key: ep.window for ep in eps},
            len(eps),
            {"episodes": [ep.to_json() for ep in eps], "leak": leaks, "actionness": actionness},
        )

    def size(self, split: str, benchmark: str | None = None) -> int:
        if benchmark is not None:
            return len(self.fixed_episodes(split, benchmark))
        return self.cfg.val_episodes if split == "val" else self.cfg.test_episodes


def reads_pseudo_classes(cfg: LocConfig) -> bool:
    """Whether the run's common-localization head takes pseudo classes (CDC-CA's auxiliary module
    does, protomatch does not); ``num_pseudo_classes`` that does not fit the head is an input error."""
    reads = "num_pseudo_classes" in inspect.signature(head_card(cfg.head).build).parameters
    if reads != bool(cfg.num_pseudo_classes):
        need = "at least 1" if reads else "0 (it reads no pseudo classes)"
        raise FsvInputError(f"{cfg.head} needs num_pseudo_classes {need}, got {cfg.num_pseudo_classes}")
    return reads


def check_task(cfg: LocConfig, manifest: Manifest, stores: list[FeatureStore]) -> None:
    """Raise :class:`FsvInputError` before any feature is loaded when the manifest and stores
    cannot give this task's training data (split roles, annotated test videos, enough classes)."""
    if cfg.task == "wtal":
        WtalTask(cfg, manifest, stores, None)  # reads no features until a bank is asked for
        return
    reads_pseudo_classes(cfg)
    have = with_features(stores)
    labels = sorted({s.label for r in manifest if r.video_id in have for s in r.segments})
    if not labels:
        raise FsvInputError(
            f"{manifest.path or manifest.dataset} has no annotated videos with features; common localization needs segments"
        )
    if cfg.class_split == "seeded":
        cm.class_split(labels, cfg.class_split_seed)


def make_task(
    cfg: LocConfig, manifest: Manifest, stores: list[FeatureStore], cache: Path | None = None
) -> WtalTask | CommonTask:
    if cfg.task == "wtal":
        return WtalTask(cfg, manifest, stores, cache)
    if cfg.task == "common":
        return CommonTask(cfg, manifest, stores, cache)
    raise FsvInputError(f"unknown localization task {cfg.task!r}")
