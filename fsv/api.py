"""fsv from Python: fsv's data, episodes and scores around a training loop of your own.

The names in ``__all__`` are kept stable (``tests/test_api.py`` holds them)::

    from torch.utils.data import DataLoader
    from fsv.api import Episodes, evaluate_logits

    train = Episodes("manifest.csv", ["store.zarr"], "train", way=5, shot=1, view="pooled")
    for ep in DataLoader(train, batch_size=None, shuffle=False):   # one episode per item
        ep = ep.to(device)                                        # float32 on the device
        logits = my_head(ep.support, ep.support_labels, ep.query, ep.way)   # [way*query, way]
        loss = F.cross_entropy(logits, ep.query_labels); ...
    result = evaluate_logits(my_head, "manifest.csv", ["store.zarr"], way=5, shot=1)
    result.accuracy, result.ci95, result.episode_file      # what `fsv eval` reports, same episodes

Localization: :func:`localization_videos` gives each video of a split with its snippet features,
their spans and its annotations; :func:`score_detections` scores detections in seconds as
``fsv eval`` scores a weakly-supervised run (the dataset's mAP table, THUMOS14's ambiguous
segments excluded)::

    for video in localization_videos("thumos14.csv", ["i3d.zarr"], "test"):
        detections[video.record.video_id] = my_detector(video.features, video.spans)  # [(start_s, end_s, score, label)]
    table = score_detections(detections, "thumos14.csv", ["i3d.zarr"])   # {"map": {"0.1": ...}, "average_map", "averages"}

Episode ``i`` of the train split, with its temporal jitter, is the one ``fsv train-head`` trains on
for the same seed; the val and test splits give the fixed episodes ``fsv eval`` scores (the same
episode files, under ``$FSV_EPISODES``). Features come as float16 in the view a head reads
(``pooled`` ``[T, D]``, ``patches`` ``[T, 16, D]``, ``grid`` ``[T, D, 7, 7]``), ``T = seq_len``;
:meth:`EpisodeTensors.to` moves an episode to a device as float32.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fsv.device import resolve_device
from fsv.errors import FsvInputError
from fsv.heads.data.episodes import EpisodeConfig, EpisodeSampler, fixed_episodes, videos_by_class
from fsv.heads.data.features import EpisodeTensors, FeatureBank, episode_tensors, with_features
from fsv.heads.data.videos import VideoBank, split_roles
from fsv.heads.engine.runner import load_best
from fsv.heads.tasks.recognition import (
    RECOGNITION,
    EvalResult,
    Logits,
    RecognitionConfig,
    build_head,
    head_logits,
    score_fixed_episodes,
    split_bank,
    training_episode,
)
from fsv.heads.tasks.wtal import ambiguous_segments, ground_truth
from fsv.heads.models import RecognitionHead
from fsv.heads.tasks.localization import Scored, dataset_protocol, score
from fsv.pipeline.manifests import Manifest, VideoRecord
from fsv.pipeline.store import FeatureStore

__all__ = [
    "EpisodeTensors",
    "Episodes",
    "EvalResult",
    "Video",
    "evaluate_logits",
    "load_head",
    "localization_videos",
    "score_detections",
    "split_features",
]

# fsv's defaults: training episodes, the trainer's validation episodes, fsv eval's episodes
DEFAULTS = RecognitionConfig(head="")


def _open(
    manifest: str | Path | Manifest, stores: Sequence[str | Path | FeatureStore]
) -> tuple[Manifest, list[FeatureStore]]:
    m = manifest if isinstance(manifest, Manifest) else Manifest.read(Path(manifest))
    opened = [s if isinstance(s, FeatureStore) else FeatureStore.open(Path(s)) for s in stores]
    if not opened:
        raise FsvInputError("give at least one store")
    return m, opened


def split_features(
    manifest: str | Path | Manifest,
    stores: Sequence[str | Path | FeatureStore],
    split: str,
    *,
    view: str = "pooled",
    seq_len: int = 8,
) -> dict[str, torch.Tensor]:
    """video id -> its features ``[seq_len, *view]`` (float16, TSN centre steps) for the videos of
    ``split`` that every store holds (several stores concatenated along the feature axis)."""
    m, opened = _open(manifest, stores)
    bank = split_bank(m, opened, split, view, seq_len)
    ids = list(bank.index)
    return dict(zip(ids, bank.gather(ids), strict=True))


class Episodes(torch.utils.data.Dataset):
    """N-way K-shot episodes of ``split`` as a dataset of :class:`EpisodeTensors`.

    ``train``: item ``i`` is training episode ``i`` for ``seed`` with its temporal jitter, as
    ``fsv train-head`` draws it; ``len`` is ``count`` (default: ``train_episodes``, 10,000).
    ``val`` / ``test``: ``count`` fixed episodes, whose file is ``episode_file``: by default the
    trainer's validation episodes (``val_episodes``, 1,000) and ``fsv eval``'s test episodes
    (``test_episodes``, 10,000). A count that differs from a run's is another set of episodes."""

    def __init__(
        self,
        manifest: str | Path | Manifest,
        stores: Sequence[str | Path | FeatureStore],
        split: str,
        *,
        way: int = 5,
        shot: int = 5,
        query: int = 5,
        view: str = "pooled",
        seq_len: int = 8,
        count: int | None = None,
        seed: int = 0,
    ) -> None:
        self.manifest, self.stores = _open(manifest, stores)
        self.split, self.seed, self.train = split, seed, split == "train"
        available = with_features(self.stores)
        self.bank: FeatureBank = split_bank(self.manifest, self.stores, split, view, seq_len)
        self.config = EpisodeConfig(split, way, shot, query, seed if self.train else 0)
        self.episode_file: Path | None = None
        if self.train:
            self.sampler = EpisodeSampler(videos_by_class(self.manifest, split, available), self.config)
            self.count = DEFAULTS.train_episodes if count is None else count
        else:
            default = DEFAULTS.val_episodes if split == "val" else DEFAULTS.test_episodes
            self.count = default if count is None else count
            self.episode_file, self.fixed = fixed_episodes(self.manifest, self.config, self.count, available=available)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> EpisodeTensors:
        if not 0 <= i < self.count:
            raise IndexError(i)
        if self.train:
            return training_episode(self.bank, self.sampler, self.seed, i)
        return episode_tensors(self.bank, self.fixed[i])


def evaluate_logits(
    logits: Logits | torch.nn.Module,
    manifest: str | Path | Manifest,
    stores: Sequence[str | Path | FeatureStore],
    *,
    split: str = "test",
    way: int = 5,
    shot: int = 5,
    query: int = 5,
    view: str = "pooled",
    seq_len: int = 8,
    episodes: int | None = None,
    name: str = "custom",
    device: str = "auto",
) -> EvalResult:
    """Mean query accuracy ± 95% CI of ``logits`` — a callable ``(support, support_labels, query,
    way) -> logits [Q, way]``, or an fsv recognition head — on the fixed episodes of ``split``
    (``episodes`` of them, default ``test_episodes`` as ``fsv eval``): the same episodes, the same
    computation and the same :class:`EvalResult` as ``fsv eval``. A module is moved to the device
    and scored in eval mode, then given back in the mode it came in."""
    m, opened = _open(manifest, stores)
    dev = resolve_device(device)
    bank = split_bank(m, opened, split, view, seq_len)
    count = DEFAULTS.test_episodes if episodes is None else episodes
    config = EpisodeConfig(split, way, shot, query, 0)
    if not isinstance(logits, torch.nn.Module):
        return score_fixed_episodes(logits, name, m, opened, bank, config, count, dev)[0]
    training = logits.training
    logits.to(dev).eval()
    fn = head_logits(logits) if isinstance(logits, RecognitionHead) else logits
    try:
        return score_fixed_episodes(fn, name, m, opened, bank, config, count, dev)[0]
    finally:
        logits.train(training)


def load_head(run: str | Path, device: str = "auto") -> torch.nn.Module:
    """The best model of recognition run folder ``run`` (``best.pt``), on ``device``, in eval mode."""
    run = Path(run)
    cfg, source = RECOGNITION.load(run)
    dev = resolve_device(device)
    manifest, stores = source.open()
    bank = split_bank(manifest, stores, "test", cfg.view, cfg.seq_len)
    return load_best(run, build_head(cfg, bank).to(dev), dev).eval()


@dataclass
class Video:
    """One video of a localization split: its manifest ``record`` (segments, labels, ambiguous
    spans), its snippet ``features`` ``[T, D]`` float32 (stores concatenated) and their ``spans``
    ``[T, 2]`` in seconds."""

    record: VideoRecord
    features: torch.Tensor
    spans: np.ndarray


def _localization_records(manifest: Manifest, stores: list[FeatureStore], split: str) -> list[VideoRecord]:
    """The videos of ``split`` (``train`` or ``test`` by the manifest's roles: THUMOS14 tests on
    ``test``, ActivityNet on ``validation``) that every store holds; a split without annotated
    segments among them is an input error."""
    roles = split_roles(manifest)
    named = {"train": roles.train, "test": roles.test}.get(split)
    if named is None:
        raise FsvInputError(f"split must be train or test (the roles of the manifest's splits), got {split!r}")
    have = with_features(stores)
    records = [r for r in manifest.select(named) if r.video_id in have]
    if not any(r.segments for r in records):
        raise FsvInputError(
            f"the {named} split of {manifest.path or manifest.dataset} has no annotated segments among the videos with features"
        )
    return records


def localization_videos(
    manifest: str | Path | Manifest, stores: Sequence[str | Path | FeatureStore], split: str = "test"
) -> Iterator[Video]:
    """Each video of ``split`` with features (:class:`Video`); the split's features are read once,
    here (bad input is an error here, not at the first video), and given a video at a time. The
    ``train`` split is every training video: fsv's trainer holds some out for validation when the
    manifest has no val split."""
    m, opened = _open(manifest, stores)
    records = _localization_records(m, opened, split)
    bank = VideoBank.load(opened, records)
    return (
        Video(r, torch.from_numpy(bank.features(r.video_id).astype(np.float32)), bank.step_spans(r.video_id))
        for r in records
    )


def score_detections(
    detections: dict[str, list[tuple[float, float, float, str]]],
    manifest: str | Path | Manifest,
    stores: Sequence[str | Path | FeatureStore],
    split: str = "test",
) -> dict[str, Any]:
    """The mAP table of ``detections`` (video -> ``[(start_s, end_s, score, label)]``) against the
    annotated videos of ``split`` that every store holds, by the dataset's protocol: ``{"map":
    {tIoU: mAP}, "average_map", "averages"}``, what ``fsv eval`` reports for a weakly-supervised run."""
    m, opened = _open(manifest, stores)
    records = _localization_records(m, opened, split)
    table = score(Scored(detections, ground_truth(records), ambiguous_segments(records)), dataset_protocol(m.dataset))
    table.pop("select")
    return table
