"""Weakly-supervised temporal action localization, a kind of run (:class:`Wtal`; VQK-Net):
video-level labels in training, every video of the test split scored against its annotated
segments with the dataset's mAP table (THUMOS14's ambiguous segments travel with the ground truth)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsv.errors import FsvInputError
from fsv.heads.data.features import with_features
from fsv.heads.data.video_batches import WtalBatches, video_labels
from fsv.heads.data.videos import VideoBank, carve_val, split_roles, to_seconds
from fsv.heads.engine.loop import Schedule
from fsv.heads.models import WtalHead, create_head
from fsv.heads.tasks.localization import (
    Detections,
    GroundTruth,
    LocalizationObjective,
    LocalizationTask,
    LocConfig,
    MapProtocol,
    Scored,
    dataset_protocol,
)
from fsv.pipeline.manifests import Manifest, VideoRecord
from fsv.pipeline.store import FeatureStore

log = logging.getLogger(__name__)


class WtalObjective(LocalizationObjective):
    """A weakly-supervised run's data: train / val (named or carved) / test banks of snippet
    features, batches of training videos with their video-level labels."""

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
        self.protocol = dataset_protocol(manifest.dataset)  # the table of the run's dataset (Wtal.protocol)
        self._batches: WtalBatches | None = None

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
        """Training batches: step ``i``'s depends only on ``(seed, i)``."""
        if self._batches is None:
            bank = self.bank("train")
            self._batches = WtalBatches(
                bank,
                video_labels(bank.records, self.classes),
                self.cfg.batch_videos,
                self.cfg.min_pairs,
                self.cfg.num_segments,
                self.cfg.seed,
            )
        return self._batches

    def step_loss(self, head: torch.nn.Module, i: int, device: torch.device) -> dict[str, torch.Tensor]:
        x, y = self.batches().batch(i)
        return head.loss(head(x.to(device)), y.to(device))

    def score_split(
        self,
        head: torch.nn.Module,
        split: str,
        device: torch.device,
        advance: Callable[[], None] | None = None,
        benchmark: str | None = None,
    ) -> Scored:
        bank = self.bank(split)
        curves: dict[str, np.ndarray] = {}
        preds = predict_videos(head, bank, self.classes, device, advance, curves=curves)
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

    def size(self, split: str, benchmark: str | None = None) -> int:
        return len(self.records(split))


def stream_count(stores: list[FeatureStore]) -> int:
    """How many streams (``rgb``, ``flow``) the stores' features concatenate, by their specs (1 for
    stores that name none): VQK-Net gives each stream its own attention branch."""
    return sum(max(1, len(s.spec.streams)) for s in stores)


def ground_truth(records: list[VideoRecord]) -> GroundTruth:
    return {r.video_id: [(s.start, s.end, s.label) for s in r.segments] for r in records}


def ambiguous_segments(records: list[VideoRecord]) -> dict[str, np.ndarray]:
    return {r.video_id: np.asarray(r.ambiguous, dtype=np.float64).reshape(-1, 2) for r in records if r.ambiguous}


@torch.inference_mode()
def predict_videos(
    head: WtalHead,
    bank: VideoBank,
    classes: Sequence[str],
    device: torch.device,
    advance: Callable[[], None] | None = None,
    curves: dict[str, np.ndarray] | None = None,
) -> Detections:
    """Detections of every video of ``bank`` (all its steps, one video at a time):
    video -> ``[(start_s, end_s, score, label)]``. With ``curves``, each video's foreground
    attention ``s`` ``[T]`` (the actionness the proposals are cut from) is stored in it too."""
    head.eval()
    out: Detections = {}
    for r in bank.records:
        x = torch.from_numpy(bank.features(r.video_id).astype(np.float32))[None].to(device)
        spans = bank.step_spans(r.video_id)
        result = head(x)
        if curves is not None:
            curves[r.video_id] = result.attention[0].float().cpu().numpy()
        dets = head.detect(result)
        starts = to_seconds(np.array([d[0] for d in dets], dtype=np.float64), spans)
        ends = to_seconds(np.array([d[1] for d in dets], dtype=np.float64), spans)
        out[r.video_id] = [
            (float(s), float(e), float(d[2]), classes[d[3]]) for s, e, d in zip(starts, ends, dets, strict=True)
        ]
        if advance is not None:
            advance()
    return out


class Wtal(LocalizationTask):
    """Weakly-supervised localization: batches of videos, the dataset's mAP table on the test videos."""

    name = "wtal"
    items = "videos"

    def run_name(self, head: str, dataset: str, cfg: LocConfig) -> str:
        """``<head>-<dataset>``: weakly-supervised runs take no shots."""
        return f"{head}-{dataset}"

    def protocol(self, dataset: str) -> MapProtocol:
        return dataset_protocol(dataset)

    def check_data(self, cfg: LocConfig, manifest: Manifest, stores: list[FeatureStore]) -> None:
        WtalObjective(cfg, manifest, stores, None)  # reads no features until a bank is asked for

    def objective(
        self, cfg: LocConfig, manifest: Manifest, stores: list[FeatureStore], cache: Path | None
    ) -> WtalObjective:
        return WtalObjective(cfg, manifest, stores, cache)

    def build(
        self, cfg: LocConfig, manifest: Manifest, stores: list[FeatureStore], run: Path
    ) -> tuple[WtalObjective, torch.nn.Module, Schedule]:
        """As every localization run, with the training batches made before training starts (a
        train split that cannot give them is an input error before the first step)."""
        objective, head, schedule = super().build(cfg, manifest, stores, run)
        objective.batches()
        return objective, head, schedule

    def described(self, scored: Scored, cfg: LocConfig, protocol: MapProtocol) -> dict[str, Any]:
        return {"shots": None, "videos": scored.items}  # weakly supervised: no support shots

    def scored_items(self, payload: dict[str, Any]) -> str:
        return f"{payload['videos']} videos"


WTAL = Wtal()
