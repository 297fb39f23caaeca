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
from pathlib import Path

from fsv.errors import FsvInputError
from fsv.pipeline.backbones import BACKBONES
from fsv.pipeline.formats import FORMATS
from fsv.pipeline.spec import FeatureSpec

PRESETS: dict[str, FeatureSpec] = {
    **{card.published.preset: card.published_spec() for card in BACKBONES.values()},
    **{r.preset: card.published_spec(name) for card in BACKBONES.values() for name, r in card.recipes.items()},
    **{spec.name: spec for fmt in FORMATS.values() for spec in fmt.specs},
}


def spec_names() -> list[str]:
    return sorted(PRESETS)


def get_spec(name_or_path: str | Path) -> FeatureSpec:
    """A preset by name, or a spec JSON file."""
    text = str(name_or_path)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise FsvInputError(f"feature spec file {path} does not exist")
        try:
            return FeatureSpec.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise FsvInputError(f"{path}:{e.lineno}: invalid JSON in feature spec ({e.msg})") from e
    raise FsvInputError(f"unknown feature spec {text!r}; presets: {', '.join(spec_names())}, or give a spec .json file")
