"""A kind of run as an object: everything that differs between few-shot recognition,
weakly-supervised localization and few-shot common localization, in one place.

A :class:`Task` carries its configuration class, the user options that apply to it, its data
check, how it builds the objective and the head for the one entry sequence
(:func:`fsv.heads.engine.runner.train_run`), its evaluation and the mean over seeds, its run
folder name, its report sections and its ``fsv eval`` table. The kinds are registered in
:data:`fsv.heads.tasks.TASKS` by the name head cards give in ``task``; a new kind of run is a new
module here and one line there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from rich.table import Table

from fsv.errors import FsvInputError
from fsv.heads.engine.config import Layer, Resolved, build_config, dataset_family
from fsv.heads.engine.loop import Objective, Schedule, TrainResult
from fsv.heads.engine.runner import train_run
from fsv.heads.engine.run_folder import DataSource, read_run_record, run_source
from fsv.heads.models import head_card
from fsv.pipeline.manifests import Manifest
from fsv.pipeline.store import FeatureStore
from fsv.report.page import Page


def card_layers(head: str, dataset: str | None) -> tuple[list[Layer], str | None]:
    """The head card's paper preset and its preset for ``dataset`` (the key used, or None)."""
    card = head_card(head)
    layers = [Layer(f"{head} paper preset", card.preset, given=False)]
    key = None
    if dataset:
        key = next((k for k in (dataset, dataset_family(dataset)) if k in card.dataset_presets), None)
        if key is not None:
            layers.append(Layer(f"{head} {key} preset", card.dataset_presets[key], given=False))
    return layers, key


class Task:
    """A kind of run. Subclasses set the class attributes and implement the methods that raise."""

    name: ClassVar[str]
    #: the configuration dataclass of its runs (data only)
    config_class: ClassVar[type]
    #: how the length of training is given: (option, configuration field), and what a head of this
    #: kind says to the other option
    length: ClassVar[tuple[str, str]]
    length_words: ClassVar[str]
    #: keys renamed when settings are resolved (a preset's ``train_iterations`` -> ``train_steps``)
    aliases: ClassVar[dict[str, str]] = {}
    #: whether ``--way`` applies
    takes_way: ClassVar[bool] = False
    #: whether ``--benchmark`` (imported episodes) applies
    takes_benchmark: ClassVar[bool] = False
    #: the evaluation's headline key and its words (a sweep page's column)
    headline: ClassVar[tuple[str, str]]

    # ------------------------------------------------------------------ configuration
    def fixed(self, head: str) -> dict[str, Any]:
        """Fields set by the head itself, not by layers."""
        return {"head": head}

    def resolve(self, head: str, dataset: str | None, given: list[Layer]) -> tuple[Any, Resolved]:
        """The configuration of ``head`` on ``dataset``: the card's layers, then the user's ``given``."""
        layers, key = card_layers(head, dataset)
        cfg, resolved = build_config(self.config_class, layers + given, self.fixed(head), aliases=self.aliases)
        resolved.dataset_preset, resolved.dataset = key, dataset
        self.check_config(cfg)
        return cfg, resolved

    def check_config(self, cfg: Any) -> None:
        """Raise :class:`FsvInputError` on values no run of this kind takes."""

    def options(
        self, head: str, *, way: int | None, episodes: int | None, steps: int | None
    ) -> dict[str, tuple[str, Any]]:
        """The named options that apply (``{field: (option, value)}``); the others are input errors."""
        if way is not None and not self.takes_way:
            raise FsvInputError(f"--way does not apply to {head} (a localization head)")
        option, field = self.length
        given = {"--episodes": episodes, "--steps": steps}
        if any(value is not None for other, value in given.items() if other != option):
            raise FsvInputError(f"{head} {self.length_words}")
        return {"way": ("--way", way), field: (option, given[option])}

    def check_benchmark(self, benchmark: str | None) -> None:
        if benchmark is not None and not self.takes_benchmark:
            raise FsvInputError("--benchmark applies to few-shot common localization runs (cdcca, protomatch)")

    def run_name(self, head: str, dataset: str, cfg: Any) -> str:
        """The default run folder's name: ``<head>-<dataset>-<shot>shot``."""
        return f"{head}-{dataset}-{cfg.shot}shot"

    def load(self, run: Path) -> tuple[Any, DataSource]:
        """Run folder ``run``'s configuration and data source; a run of another kind, or a
        configuration this fsv cannot read, is an input error naming the folder."""
        config = read_run_record(run)["config"]
        kind = head_card(config["head"]).task
        if kind != self.name:
            raise FsvInputError(
                f"{run} is a {kind} run ({config['head']}), not a {self.name} run (`fsv eval RUN` chooses for you)"
            )
        try:
            cfg = self.config_class(**config)
        except TypeError as e:
            raise FsvInputError(
                f"{run / 'config.json'}: does not match {config['head']}'s run configuration ({e}); train again with a new --out folder"
            ) from None
        return cfg, run_source(run)

    # ------------------------------------------------------------------ training
    def check_data(self, cfg: Any, manifest: Manifest, stores: list[FeatureStore]) -> None:
        """Raise :class:`FsvInputError` before any feature is loaded when the data cannot give the run."""
        raise NotImplementedError

    def build(
        self, cfg: Any, manifest: Manifest, stores: list[FeatureStore], run: Path
    ) -> tuple[Objective, torch.nn.Module, Schedule]:
        """The objective, the (untrained) head and the schedule of the run."""
        raise NotImplementedError

    def train(
        self, cfg: Any, source: DataSource, run: Path, *, device: str = "auto", stop_after: int | None = None
    ) -> TrainResult:
        """Train (or resume) ``cfg`` into ``run`` (:func:`fsv.heads.engine.runner.train_run`)."""
        return train_run(
            cfg,
            source,
            run,
            lambda manifest, stores: self.check_data(cfg, manifest, stores),
            lambda manifest, stores, folder: self.build(cfg, manifest, stores, folder),
            device=device,
            stop_after=stop_after,
        )

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        run: Path,
        *,
        split: str,
        episodes: int | None,
        benchmark: str | None,
        device: str,
    ) -> dict[str, Any]:
        """``fsv eval`` of one run folder as a JSON-ready dict."""
        raise NotImplementedError

    def write_predictions(
        self, run: Path, out_file: Path, *, split: str = "test", benchmark: str | None = None, device: str = "auto"
    ) -> str:
        """``fsv predict``: the run's detections written to ``out_file``; the line saying what was written."""
        raise FsvInputError(
            f"{run} is a {self.name} run; fsv predict writes detections of localization runs (cdcca, protomatch, vqknet)"
        )

    def mean_over_seeds(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """The result of a seed sweep from its seeds' results."""
        raise NotImplementedError

    def eval_table(self, folder: Path, split: str, payload: dict[str, Any]) -> Table:
        """``fsv eval``'s table of :meth:`evaluate`'s (or :meth:`mean_over_seeds`') payload."""
        raise NotImplementedError

    def report(self, page: Page, run: Path, *, episodes: int | None, device: str, videos: int) -> dict[str, Any]:
        """The sections of ``fsv report``'s run page that depend on the kind of run; what they show, as data."""
        raise NotImplementedError
