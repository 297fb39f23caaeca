"""Few-shot common action localization, a kind of run (:class:`Common`; CDC-CA, protomatch):
episodes over an 80/10/10 class split; each episode's query is scored as one item with the single
label ``common`` (mAP@0.5), or imported benchmark episodes (``--benchmark``)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsv.errors import FsvInputError
from fsv.heads.data import common_episodes as cm
from fsv.heads.data.benchmark import benchmark_classes, load_benchmark
from fsv.heads.data.features import with_features
from fsv.heads.data.videos import VideoBank, to_seconds
from fsv.heads.models import create_head, head_card
from fsv.heads.tasks.localization import (
    COMMON_PROTOCOL,
    Detections,
    GroundTruth,
    LocalizationObjective,
    LocalizationTask,
    LocConfig,
    MapProtocol,
    Scored,
    score,
)
from fsv.pipeline.manifests import Manifest
from fsv.pipeline.store import FeatureStore

log = logging.getLogger(__name__)


class CommonObjective(LocalizationObjective):
    """A common-localization run's data: every annotated video with features, classes split
    80/10/10, episodes of the split's classes."""

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

    protocol = COMMON_PROTOCOL

    def build_head(self) -> torch.nn.Module:
        pseudo = {"num_pseudo_classes": max(self.num_pseudo, 1)} if reads_pseudo_classes(self.cfg) else {}
        return create_head(self.cfg.head, feature_dim=self.bank.dim, **pseudo, **self.cfg.head_args)

    def step_loss(self, head: torch.nn.Module, i: int, device: torch.device) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.cfg.seed, i, 0])
        ep = self.episodes("train").episode(rng, f"train{i}")
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


class Common(LocalizationTask):
    """Few-shot common localization: episodes of a query and L supports, mAP@0.5 over the episodes."""

    name = "common"
    items = "episodes"
    writes_ground_truth = True
    takes_benchmark = True

    def protocol(self, dataset: str) -> MapProtocol:
        return COMMON_PROTOCOL

    def check_data(self, cfg: LocConfig, manifest: Manifest, stores: list[FeatureStore]) -> None:
        """Raise :class:`FsvInputError` before any feature is loaded when the manifest and stores
        cannot give the run's episodes (annotated videos, enough classes, pseudo classes that fit the head)."""
        reads_pseudo_classes(cfg)
        have = with_features(stores)
        labels = sorted({s.label for r in manifest if r.video_id in have for s in r.segments})
        if not labels:
            raise FsvInputError(
                f"{manifest.path or manifest.dataset} has no annotated videos with features; common localization needs segments"
            )
        if cfg.class_split == "seeded":
            cm.class_split(labels, cfg.class_split_seed)

    def objective(
        self, cfg: LocConfig, manifest: Manifest, stores: list[FeatureStore], cache: Path | None
    ) -> CommonObjective:
        return CommonObjective(cfg, manifest, stores, cache)

    def described(self, scored: Scored, cfg: LocConfig, protocol: MapProtocol) -> dict[str, Any]:
        """Shots, mode and episodes; for benchmark episodes with supports cut from the query video
        itself, the table without them (``without_query_supports``)."""
        out: dict[str, Any] = {"shots": cfg.shot, "mode": cfg.mode, "episodes": scored.items}
        leak = set(scored.extra.get("leak", []))
        if leak:
            clean = Scored(
                {k: v for k, v in scored.predictions.items() if k not in leak},
                {k: v for k, v in scored.ground_truth.items() if k not in leak},
                items=scored.items - len(leak),
            )
            without = score(clean, protocol)
            without.pop("select")
            out["without_query_supports"] = {**without, "episodes": clean.items}
        return out

    def scored_items(self, payload: dict[str, Any]) -> str:
        return f"{payload['episodes']} episodes, {payload['shots']}-shot {payload['mode']}-instance"


COMMON = Common()
