"""The registry of heads (in the manner of timm's ``register_model`` / ``create_model``): each head
module registers its card with :func:`register_head`; :func:`create_head` builds a head by name.
What a head offers is :mod:`fsv.heads.models.interface`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from fsv.errors import FsvInputError
from fsv.heads.models.interface import Head
from fsv.plugins import load_plugins


@dataclass(frozen=True)
class HeadCard:
    """A registered head's card: its builder, the paper's training preset, its presets per dataset
    (keyed by dataset name or family, :func:`fsv.heads.engine.config.dataset_family`; applied on top of
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
    preferred_datasets: tuple[str, ...] = ()  # read first when a command names no dataset (fsv.heads.setup)


HEADS: dict[str, HeadCard] = {}


def register_head(
    name: str,
    preset: dict[str, Any],
    description: str,
    task: str = "recognition",
    dataset_presets: dict[str, dict[str, Any]] | None = None,
    preferred_spec: str | None = None,
    preferred_datasets: tuple[str, ...] = (),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class decorator adding a head's card to :data:`HEADS` under ``name``; ``task`` names its
    kind of run (one of :data:`fsv.heads.tasks.TASKS`, which the registry does not import). A
    name that is registered already is refused (a plugin cannot replace a built-in head)."""
    if name in HEADS:
        raise ValueError(
            f"head {name!r} is registered already (by {HEADS[name].build.__module__}); choose another name"
        )

    def wrap(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        HEADS[name] = HeadCard(
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


def head_cards() -> dict[str, HeadCard]:
    """Every registered head's card: the built-ins, then the installed plugins' (loaded on first use)."""
    import fsv.heads.models  # noqa: F401  (the registry's self-registration: importing the package registers the heads)

    load_plugins("fsv.heads")
    return HEADS


def head_card(name: str) -> HeadCard:
    """The card of head ``name``; an unknown name is an input error listing the heads."""
    cards = head_cards()
    if name not in cards:
        raise FsvInputError(f"unknown head {name!r}; choose one of {', '.join(sorted(cards))}")
    return cards[name]


def create_head(name: str, **kwargs: Any) -> Head:
    """Head ``name`` built with ``kwargs`` (e.g. ``feature_dim=2048``, ``seq_len=8``): a
    :class:`~fsv.heads.models.interface.RecognitionHead`, :class:`~fsv.heads.models.interface.CommonHead` or
    :class:`~fsv.heads.models.interface.WtalHead`, as its card's ``task`` says."""
    return head_card(name).build(**kwargs)
