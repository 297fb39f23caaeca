"""Features of a split held in RAM (or memory-mapped) once, and episode tensors built by indexing.

A :class:`FeatureBank` pulls the videos of a split from one or more stores in one pass, derives the
view a head consumes and keeps it as one contiguous ``[V, T, *view]`` float16 array, so an
episode is a single gather (numpy's ``take``: on CPU it is about 20x faster than
``torch.index_select`` on float16, see ``bench/episodes.py``):

* ``pooled``  — ``[T, D]``: the 7x7 grid mean-pooled (snippet stores: the features as stored;
  stores with a ``features`` field beside a token grid, CLIP's: that field);
* ``patches`` — ``[T, 16, D]``: the grid (ResNet-50's 7x7, CLIP's 7x7 to 16x16 tokens) adaptively
  max-pooled to 4x4 (STRM);
* ``grid``    — ``[T, D, h, w]``: the grid itself (TA2N).

Several stores (``--store A,B``) are concatenated along the feature axis (e.g. RGB and flow).
Videos with more stored steps than ``seq_len`` are cut to ``seq_len`` steps by TSN sampling: centre
steps for evaluation, a random step per segment for training (temporal jitter across stored
frames); videos with fewer repeat steps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fsv.errors import FsvInputError
from fsv.heads.data.episodes import Episode
from fsv.pipeline.sampling import tsn_indices
from fsv.pipeline.store import FeatureStore

log = logging.getLogger(__name__)

# The views a FeatureBank derives for recognition heads (localization heads read "snippets", one
# vector per stored snippet as stored: VideoBank).
BANK_VIEWS = ("pooled", "patches", "grid")


def derive_view(x: torch.Tensor, view: str) -> torch.Tensor:
    """Stored steps ``[n, *field]`` -> the ``view`` (see module docstring), same dtype."""
    if x.dim() == 2:  # snippet or pooled features [n, D]
        if view != "pooled":
            raise FsvInputError(
                f"the {view} view needs spatial grids (ResNet-50 stores, or a transformer's with --grid); these features are {tuple(x.shape[1:])}"
            )
        return x
    if x.dim() != 4:
        raise FsvInputError(f"cannot derive views from features of shape {tuple(x.shape[1:])}")
    if view == "grid":
        return x
    if view == "pooled":
        return x.float().mean(dim=(2, 3)).to(x.dtype)
    if view == "patches":
        return F.adaptive_max_pool2d(x.float(), 4).flatten(2).transpose(1, 2).to(x.dtype)
    raise FsvInputError(f"unknown view {view!r}; choose one of {', '.join(BANK_VIEWS)}")


@dataclass
class FeatureBank:
    """``data`` ``[V, S, *view]`` float16 numpy array (``S`` stored steps, at least ``seq_len``);
    ``index`` maps video id -> row."""

    data: np.ndarray
    index: dict[str, int]
    view: str
    seq_len: int

    @classmethod
    def load(
        cls,
        stores: Sequence[FeatureStore],
        video_ids: Sequence[str],
        view: str,
        seq_len: int = 8,
        *,
        max_steps: int | None = None,
    ) -> "FeatureBank":
        """Read ``video_ids`` from every store (one pass each), derive ``view``, concatenate stores
        along the feature axis. Stored sequences are brought to a common length: ``max_steps``
        (default: the longest up to ``4 * seq_len``) by uniform resampling."""
        ids = list(dict.fromkeys(video_ids))
        missing = [v for s in stores for v in ids if v not in s]
        if missing:
            raise FsvInputError(
                f"{len(missing)} videos have no features in the store(s), e.g. {missing[:3]}; run fsv extract (or --retry-failed) first"
            )
        per_store = []
        for store in stores:
            packed = store.load(ids, field=store.spec.view_field(view), with_spans=False)
            cap = max_steps or int(min(packed.lengths.max(initial=seq_len), 4 * seq_len))
            steps = max(cap, seq_len)
            rows = []
            for i in range(len(packed)):
                x = torch.from_numpy(np.asarray(packed.video(i)))
                n = len(x)
                take = (
                    np.arange(n)
                    if n == steps
                    else np.clip(np.floor((np.arange(steps) + 0.5) * n / steps).astype(np.int64), 0, n - 1)
                )
                rows.append(derive_view(x[torch.from_numpy(take)], view).to(torch.float16))
            per_store.append(torch.stack(rows))
        lengths = {t.shape[1] for t in per_store}
        if len(lengths) > 1:
            steps = min(lengths)
            per_store = [
                t[
                    :,
                    np.clip(
                        np.floor((np.arange(steps) + 0.5) * t.shape[1] / steps).astype(np.int64), 0, t.shape[1] - 1
                    ),
                ]
                for t in per_store
            ]
        axis = 2 if view in ("pooled", "grid") else 3
        data = np.ascontiguousarray((torch.cat(per_store, dim=axis) if len(per_store) > 1 else per_store[0]).numpy())
        log.info("loaded %d videos, %s view %s (%.1f MB)", len(ids), view, tuple(data.shape[1:]), data.nbytes / 1e6)
        return cls(data, {v: i for i, v in enumerate(ids)}, view, seq_len)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one step of the view, e.g. ``(2048,)``, ``(16, 2048)`` or ``(2048, 7, 7)``."""
        return tuple(self.data.shape[2:])

    def steps(self, n: int, *, train: bool, rng: np.random.Generator | None) -> np.ndarray:
        """Step indices ``[n, seq_len]``: TSN centres, or a random step per segment when training."""
        stored = self.data.shape[1]
        if not train:
            return np.broadcast_to(tsn_indices(stored, self.seq_len), (n, self.seq_len))
        rng = rng or np.random.default_rng()
        edges = np.linspace(0, stored, self.seq_len + 1)
        idx = np.floor(edges[:-1] + rng.random((n, self.seq_len)) * (edges[1:] - edges[:-1]))
        return np.clip(idx.astype(np.int64), 0, stored - 1)

    def gather(
        self, video_ids: Sequence[str], *, train: bool = False, rng: np.random.Generator | None = None
    ) -> torch.Tensor:
        """``[len(video_ids), seq_len, *view]`` float16 of the given videos."""
        rows = np.fromiter((self.index[v] for v in video_ids), dtype=np.int64, count=len(video_ids))
        if self.data.shape[1] == self.seq_len:
            return torch.from_numpy(np.take(self.data, rows, axis=0))
        steps = self.steps(len(rows), train=train, rng=rng)
        return torch.from_numpy(self.data[rows[:, None], steps])


def with_features(stores: list[FeatureStore]) -> set[str]:
    """Ids of the videos that every store holds."""
    return set.intersection(*(set(s.index) for s in stores))


@dataclass
class EpisodeTensors:
    """One episode's tensors: ``support`` ``[way*shot, T, *view]`` float16 with labels ``[way*shot]``,
    ``query`` ``[way*query, T, *view]`` with labels ``[way*query]`` (int64, ``0..way-1``)."""

    support: torch.Tensor
    support_labels: torch.Tensor
    query: torch.Tensor
    query_labels: torch.Tensor
    way: int

    def to(self, device: torch.device) -> "EpisodeTensors":
        """On ``device``, features as float32."""
        return EpisodeTensors(
            self.support.to(device, non_blocking=True).float(),
            self.support_labels.to(device),
            self.query.to(device, non_blocking=True).float(),
            self.query_labels.to(device),
            self.way,
        )


def episode_tensors(
    bank: FeatureBank, episode: Episode, *, train: bool = False, rng: np.random.Generator | None = None
) -> EpisodeTensors:
    """Index an episode's videos out of ``bank`` (one gather for support and query together)."""
    way = len(episode.classes)
    n_support = len(episode.support)
    x = bank.gather(episode.support + episode.query, train=train, rng=rng)
    support_labels = torch.arange(way).repeat_interleave(n_support // way)
    query_labels = torch.arange(way).repeat_interleave(len(episode.query) // way)
    return EpisodeTensors(x[:n_support], support_labels, x[n_support:], query_labels, way)
