"""What every head offers, one interface per kind of run over one base (in the manner of
mmaction2's recognizers: ``forward`` gives the head's output, ``loss`` a dict of named terms)::

    out = head(*inputs)               # the inputs of its kind of run -> an output dataclass
    terms = head.loss(out, target)    # {"loss": the total training minimises, then each named term}
    head.detect(...)                  # localization heads: detections of one video or episode

* :class:`RecognitionHead` (few-shot recognition) scores queries against an N-way K-shot support
  set: ``head(support, support_labels, query, way)`` -> :class:`HeadOutput` with ``logits [Q, way]``.
  ``support`` is ``[N*K, T, *feat]`` and ``query`` ``[Q, T, *feat]`` in the head's feature ``view``:
  ``pooled`` ``[T, D]`` (a grid mean-pooled; snippet features as they are), ``patches`` ``[T, P, D]``
  with ``P = 16`` (the 7x7 grid adaptively max-pooled to 4x4, STRM) or ``grid`` ``[T, D, 7, 7]``
  (TA2N); ``support_labels`` is ``[N*K]`` int64 in ``0..way-1``.
* :class:`CommonHead` (few-shot common action localization) reads a query video's snippet features
  ``[T, D]`` and ``L`` supports ``[L, num_snippets, D]``; ``detect`` gives segments in steps and scores.
* :class:`WtalHead` (weakly-supervised localization) reads videos ``[B, T, D]``; ``detect`` turns
  the output for one video into ``(start_step, end_step, score, class)``.

Heads hold no device state: move them with ``.to(device)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn


class Head(nn.Module):
    """Base of every head: ``loss(out, target)`` returns the named terms of the paper's objective,
    the total under ``"loss"`` (the key training minimises) first."""

    def loss(self, out: Any, target: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


@dataclass
class HeadOutput:
    """A recognition head's ``logits`` ``[Q, way]``; ``extra`` holds what its loss needs beyond them."""

    logits: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class RecognitionHead(Head):
    """Few-shot recognition: subclasses set ``view`` and implement ``forward`` (and ``loss`` when
    it is not plain cross-entropy on the logits)."""

    view: ClassVar[str] = "pooled"

    def forward(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int) -> HeadOutput:
        raise NotImplementedError

    def loss(self, out: HeadOutput, query_labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy of the logits against ``query_labels`` ``[Q]``."""
        return {"loss": nn.functional.cross_entropy(out.logits, query_labels)}


class CommonHead(Head):
    """Few-shot common action localization. ``forward(query [T, D], supports [L, num_snippets, D],
    pseudo [L] | None, gt [G, 2], distractors [G', 2])`` (steps) is one training episode;
    ``loss(out, gt)`` its terms; ``detect`` the detections of a test episode."""

    feature_dim: int
    num_snippets: int

    def detect(
        self, query: torch.Tensor, supports: torch.Tensor, *, windows: Sequence[int] = (), overlap: float = 0.75
    ) -> tuple[np.ndarray, np.ndarray]:
        """Detections ``[K, 2]`` (steps of ``query``) and their scores ``[K]``, best first."""
        raise NotImplementedError

    def step_actionness(self, query: torch.Tensor) -> torch.Tensor:
        """The support-agnostic actionness of each step of ``query [T, D]`` -> ``[T]``."""
        raise NotImplementedError


class WtalHead(Head):
    """Weakly-supervised localization: ``forward(x [B, T, D])`` gives an output whose ``attention``
    ``[B, T]`` is the foreground curve; ``loss(out, labels [B, C])`` trains on video-level labels."""

    def detect(self, out: Any) -> list[tuple[int, int, float, int]]:
        """Detections of one video (``B == 1``): ``(start_step, end_step_exclusive, score, class)``."""
        raise NotImplementedError
