"""fsv from Python: fsv's data, episodes and scores around a training loop of your own.

The names in ``__all__`` are kept stable (``tests/test_api.py`` holds them)::

    from torch.utils.data import DataLoader
    from fsv.api import Episodes, evaluate_logits

    train = Episodes("manifest.csv", ["store.zarr"], "train", way=5, shot=1, view="pooled")
    for ep in DataLoader(train, batch_size=None, shuffle=False):   # one episode per item
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
from fsv.heads.tasks.recognition import EvalResult, Logits, head_logits, score_fixed_episodes, split_bank
from fsv.heads.tasks.recognition import RECOGNITION, build_head
from fsv.heads.engine.runner import load_best
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

# How many fixed episodes fsv scores by default (RecognitionConfig's val_episodes, test_episodes).
FIXED_COUNTS = {"val": 1000, "test": 10000}


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
    ``fsv train-head`` draws it; ``len`` is ``count`` (default 10,000). ``val`` / ``test``: the
    fixed episodes ``fsv eval`` scores (``count`` of them: default 1,000 and 10,000), whose file is
    ``episode_file``."""

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
            self.count = count or 10000
        else:
            self.count = count or FIXED_COUNTS.get(split, 1000)
            self.episode_file, self.fixed = fixed_episodes(self.manifest, self.config, self.count, available=available)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> EpisodeTensors:
        if not 0 <= i < self.count:
            raise IndexError(i)
        if self.train:
            rng = np.random.default_rng([self.seed, i, 1])  # the generator fsv's trainer gives episode i
            return episode_tensors(self.bank, self.sampler.episode(i), train=True, rng=rng)
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
    way) -> logits [Q, way]``, or an fsv recognition head — on the fixed episodes of ``split``:
    the same episodes, the same computation and the same :class:`EvalResult` as ``fsv eval``."""
    m, opened = _open(manifest, stores)
    dev = resolve_device(device)
    if isinstance(logits, RecognitionHead):
        fn = head_logits(logits)
    else:
        if isinstance(logits, torch.nn.Module):
            logits.eval()
        fn = logits
    bank = split_bank(m, opened, split, view, seq_len)
    count = episodes or FIXED_COUNTS.get(split, 1000)
    return score_fixed_episodes(fn, name, m, opened, bank, EpisodeConfig(split, way, shot, query, 0), count, dev)[0]


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
    ``test``, ActivityNet on ``validation``) that every store holds."""
    roles = split_roles(manifest)
    named = {"train": roles.train, "test": roles.test}.get(split)
    if named is None:
        raise FsvInputError(f"split must be train or test (the roles of the manifest's splits), got {split!r}")
    have = with_features(stores)
    return [r for r in manifest.select(named) if r.video_id in have]


def localization_videos(
    manifest: str | Path | Manifest, stores: Sequence[str | Path | FeatureStore], split: str = "test"
) -> Iterator[Video]:
    """Each video of ``split`` with features, one at a time (:class:`Video`)."""
    m, opened = _open(manifest, stores)
    records = _localization_records(m, opened, split)
    bank = VideoBank.load(opened, records)
    for r in records:
        yield Video(r, torch.from_numpy(bank.features(r.video_id).astype(np.float32)), bank.step_spans(r.video_id))


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
    truth = {r.video_id: [(s.start, s.end, s.label) for s in r.segments] for r in records}
    ambiguous = {r.video_id: np.asarray(r.ambiguous, dtype=np.float64).reshape(-1, 2) for r in records if r.ambiguous}
    table = score(Scored(detections, truth, ambiguous), dataset_protocol(m.dataset))
    table.pop("select")
    return table
