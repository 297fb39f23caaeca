"""How a run's configuration is resolved from layers of settings, with where each value came from.

Layers apply in order, later ones winning (the kind of run, :meth:`fsv.heads.tasks.base.Task.resolve`,
puts them together):

1. the head card's paper preset (``register_head(preset=...)``);
2. the card's preset for the run's dataset (``dataset_presets``: the exact dataset name, else its
   family, :func:`dataset_family`: ``ssv2_otam`` and ``ssv2_cmn`` take the ``ssv2`` preset);
3. ``--config FILE`` (a JSON object of settings);
4. ``--set KEY=VALUE`` and the named options (``--way``, ``--shot``, ``--episodes``, ``--seed``).

A key that names a field of the run's configuration class sets that field; any other key of a
preset goes to the head's constructor (``head_args``). A user-given key must be a field,
``head_args.NAME`` (or an object ``"head_args": {NAME: VALUE}``), or a head argument a preset
already holds; anything else is an input error
listing the known keys. :func:`resolve` returns the values and, per key, the layer that set it
(``fsv train-head NAME ... --print-config`` prints both).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fsv.errors import FsvInputError

# Name prefixes (lower case, without "-" and "_") of the built-in datasets' families.
FAMILIES = (
    ("thumos", "thumos14"),
    ("activitynet", "activitynet"),
    ("anet", "activitynet"),
    ("ssv2", "ssv2"),
    ("somethingsomething", "ssv2"),
    ("ucf101", "ucf101"),
    ("hmdb51", "hmdb51"),
    ("kinetics", "kinetics100"),
)


def dataset_family(dataset: str) -> str:
    """The family of a dataset name (``thumos14``, ``activitynet``, ``ssv2``, ``ucf101``,
    ``hmdb51``, ``kinetics100``), or the name itself for datasets outside them."""
    d = dataset.lower().replace("-", "").replace("_", "")
    for prefix, family in FAMILIES:
        if d.startswith(prefix):
            return family
    return dataset


@dataclass(frozen=True)
class Layer:
    """One source of settings: ``source`` names it (``"ta2n paper preset"``, ``"--set"``);
    ``given`` when a user wrote it (unknown keys are then errors, not head arguments)."""

    source: str
    values: dict[str, Any]
    given: bool = True


@dataclass
class Resolved:
    """Resolved settings: ``fields`` of the configuration class, ``head_args`` for the head's
    constructor, ``sources`` (``"lr"`` or ``"head_args.NAME"`` -> the layer that set it), the
    run's dataset and the dataset preset applied (its key, or None)."""

    fields: dict[str, Any] = field(default_factory=dict)
    head_args: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    dataset_preset: str | None = None
    dataset: str | None = None


def user_layers(
    config: Path | None = None, sets: list[str] | None = None, options: dict[str, tuple[str, Any]] | None = None
) -> list[Layer]:
    """Layers 3 and 4: ``config`` (a JSON file), ``sets`` (``["lr=0.01", "lr_milestones=[1000]"]``,
    values parsed as JSON when they are JSON) and ``options`` (``{"shot": ("--shot", 1)}``, unset
    ones None)."""
    layers = []
    if config is not None:
        if not config.is_file():
            raise FsvInputError(f"config file {config} does not exist")
        try:
            values = json.loads(config.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise FsvInputError(f"{config}:{e.lineno}: invalid JSON ({e.msg})") from e
        if not isinstance(values, dict):
            raise FsvInputError(f"{config}: expected a JSON object of settings, got {type(values).__name__}")
        layers.append(Layer(f"--config {config}", values))
    if sets:
        layers.append(Layer("--set", parse_sets(sets)))
    for key, (option, value) in (options or {}).items():
        if value is not None:
            layers.append(Layer(option, {key: value}))
    return layers


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["lr=0.01", "lr_milestones=[1000,2000]"]`` -> values parsed as JSON when they are JSON."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise FsvInputError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def resolve(names: set[str], layers: list[Layer], aliases: dict[str, str] | None = None) -> Resolved:
    """Apply ``layers`` in order onto the fields ``names`` (keys renamed by ``aliases`` first)."""
    aliases = aliases or {}
    out = Resolved()
    for layer in layers:
        items = [(f"head_args.{k}", v) for k, v in layer.values.get("head_args", {}).items()]
        for key, value in [*((k, v) for k, v in layer.values.items() if k != "head_args"), *items]:
            key = aliases.get(key, key)
            if key in names:
                out.fields[key] = value
                out.sources[key] = layer.source
                continue
            arg = key.split(".", 1)[1] if key.startswith("head_args.") else key
            if layer.given and not key.startswith("head_args.") and arg not in out.head_args:
                raise FsvInputError(f"unknown setting {key!r}; known: {', '.join(sorted(names))}, head_args.NAME")
            out.head_args[arg] = value
            out.sources[f"head_args.{arg}"] = layer.source
    return out


def build_config(
    cls: type,
    layers: list[Layer],
    fixed: dict[str, Any],
    *,
    aliases: dict[str, str] | None = None,
) -> tuple[Any, Resolved]:
    """Dataclass ``cls`` from ``layers`` applied onto every field but ``head_args`` and those in
    ``fixed`` (set as given), and the resolution."""
    names = {f.name for f in fields(cls)} - set(fixed) - {"head_args"}
    resolved = resolve(names, layers, aliases)
    return cls(**fixed, **resolved.fields, head_args=resolved.head_args), resolved


def explain(cfg: Any, resolved: Resolved) -> dict[str, Any]:
    """``{"head", "dataset", "dataset_preset", "config", "sources"}``: every value of ``cfg`` and
    the layer it came from (``"default"`` for the configuration class's own default)."""
    config = asdict(cfg)
    keys = [k for k in config if k not in ("head", "task", "head_args")] + [
        f"head_args.{k}" for k in config["head_args"]
    ]
    return {
        "head": cfg.head,
        "dataset": resolved.dataset,
        "dataset_preset": resolved.dataset_preset,
        "config": config,
        "sources": {k: resolved.sources.get(k, "default") for k in keys},
    }
