"""The few-shot head interface and the registry of heads (in the manner of timm's ``create_model``).

A recognition head scores queries against an N-way K-shot support set::

    out = head(support, support_labels, query, way)   # HeadOutput
    out.logits                                         # [Q, way], higher = more likely
    loss = head.loss(out, query_labels)                # scalar, training objective of the paper

``support`` is ``[N*K, T, *feat]`` and ``query`` ``[Q, T, *feat]``, in the head's feature ``view``:

* ``pooled``  — ``[T, D]`` frame features (7x7 grid mean-pooled; snippet features as they are);
* ``patches`` — ``[T, P, D]`` with ``P = 16`` (the 7x7 grid adaptively max-pooled to 4x4, STRM);
* ``grid``    — ``[T, D, 7, 7]`` (the ResNet-50 layer4 grid, TA2N).

``support_labels`` is ``[N*K]`` int64 in ``0..way-1``. Heads hold no device state: move them with
``.to(device)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from fsv.errors import FsvInputError

VIEWS = ("pooled", "patches", "grid")


@dataclass
class HeadOutput:
    """``logits`` ``[Q, way]``; ``extra`` holds what a head's loss needs beyond them."""

    logits: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class FewShotHead(nn.Module):
    """Base class: subclasses set ``view`` and implement ``forward`` (and ``loss`` when it is not
    plain cross-entropy on the logits)."""

    view: ClassVar[str] = "pooled"

    def forward(self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int) -> HeadOutput:
        raise NotImplementedError

    def loss(self, out: HeadOutput, query_labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the logits against ``query_labels`` ``[Q]``."""
        return nn.functional.cross_entropy(out.logits, query_labels)


@dataclass(frozen=True)
class HeadEntry:
    """A registered head's card: its builder, the paper's training preset, its presets per dataset
    (keyed by dataset name or family, :func:`fsv.presets.dataset_family`; applied on top of
    ``preset``), the features its paper used (``preferred_spec``), the datasets it reads first when
    a command names none (``preferred_datasets``), a one-line description and its task: ``recognition`` (few-shot classification),
    ``common`` (few-shot common action localization) or ``wtal`` (weakly-supervised temporal
    action localization)."""

    build: Callable[..., nn.Module]
    preset: dict[str, Any]
    description: str
    task: str = "recognition"
    dataset_presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    preferred_spec: str | None = (
        None  # spec name prefix of its paper's features ("c3d"), chosen among a dataset's stores
    )
    preferred_datasets: tuple[str, ...] = ()  # read first when a command names no dataset (fsv.run_defaults)


HEADS: dict[str, HeadEntry] = {}


TASKS = ("recognition", "common", "wtal")


def register_head(
    name: str,
    preset: dict[str, Any],
    description: str,
    task: str = "recognition",
    dataset_presets: dict[str, dict[str, Any]] | None = None,
    preferred_spec: str | None = None,
    preferred_datasets: tuple[str, ...] = (),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class decorator adding a head's card to :data:`HEADS` under ``name``."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")

    def wrap(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        HEADS[name] = HeadEntry(
            build,
            dict(preset),
            description,
            task,
            {k: dict(v) for k, v in (dataset_presets or {}).items()},
            preferred_spec,
            tuple(preferred_datasets),
        )
        return build

    return wrap


def head_card(name: str) -> HeadEntry:
    """The card of head ``name``; an unknown name is an input error listing the heads."""
    import fsv.heads  # noqa: F401  (registers the heads)

    if name not in HEADS:
        raise FsvInputError(f"unknown head {name!r}; choose one of {', '.join(sorted(HEADS))}")
    return HEADS[name]


def create_head(name: str, **kwargs: Any) -> FewShotHead:
    """Head ``name`` built with ``kwargs`` (e.g. ``feature_dim=2048``, ``seq_len=8``)."""
    return head_card(name).build(**kwargs)
