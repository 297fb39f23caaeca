"""Named feature-spec presets, derived from the backbone cards (never written out by hand).

Each card's published features (:class:`fsv.pipeline.backbones.Published`) and each of its
published extraction recipes (:class:`fsv.pipeline.backbones.Recipe`) are a preset, the way
torchvision's weights enums carry their metadata, and so is each published feature format's time
base and provenance (:mod:`fsv.pipeline.formats`)::

    spec = get_spec("i3d-kinetics400-rgbflow-25fps")   # or a path to a spec JSON file
    spec.key, spec.fields["features"].shape            # ('3f0c…', (2048,))

``fsv store import --spec NAME`` binds imported features to one of these.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from fsv.errors import FsvInputError
from fsv.pipeline.backbones import backbone_cards
from fsv.pipeline.formats import feature_formats
from fsv.pipeline.spec import FeatureSpec


@cache
def presets() -> dict[str, FeatureSpec]:
    """Every preset by name: each card's published features and recipes, each format's specs
    (installed plugins' cards and formats included; computed once, on first use)."""
    cards, formats = backbone_cards(), feature_formats()
    found: dict[str, FeatureSpec] = {}
    for spec in [
        *(card.published_spec() for card in cards.values()),
        *(card.published_spec(name) for card in cards.values() for name in card.recipes),
        *(spec for fmt in formats.values() for spec in fmt.specs),
    ]:
        if found.get(spec.name, spec) != spec:  # a card's default recipe is its published preset, the same spec
            raise FsvInputError(f"two backbones or formats define the spec preset {spec.name!r}; rename one")
        found[spec.name] = spec
    return found


def spec_names() -> list[str]:
    return sorted(presets())


def get_spec(name_or_path: str | Path) -> FeatureSpec:
    """A preset by name, or a spec JSON file."""
    text = str(name_or_path)
    if text in presets():
        return presets()[text]
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise FsvInputError(f"feature spec file {path} does not exist")
        try:
            return FeatureSpec.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise FsvInputError(f"{path}:{e.lineno}: invalid JSON in feature spec ({e.msg})") from e
    raise FsvInputError(f"unknown feature spec {text!r}; presets: {', '.join(spec_names())}, or give a spec .json file")
