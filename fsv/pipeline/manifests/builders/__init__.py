"""Manifest builders by dataset name: ``build_manifest("thumos14", root=..., annotations=...)``."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from fsv.errors import FsvInputError
from fsv.plugins import load_plugins
from fsv.pipeline.manifests.builders.activitynet import build_activitynet12, build_activitynet13
from fsv.pipeline.manifests.builders.fewshot import FEWSHOT_DATASETS, build_fewshot
from fsv.pipeline.manifests.builders.generic import build_csv, build_folder
from fsv.pipeline.manifests.builders.thumos14 import build_thumos14
from fsv.pipeline.manifests.model import Manifest

Builder = Callable[..., Manifest]

BUILDERS: dict[str, Builder] = {
    "thumos14": build_thumos14,
    "activitynet12": build_activitynet12,
    "activitynet13": build_activitynet13,
    **{name: partial(build_fewshot, name) for name in FEWSHOT_DATASETS},
    "folder": build_folder,
    "csv": build_csv,
}

ALIASES = {
    "ucf101": "ucf101_arn",
    "hmdb51": "hmdb51_arn",
    "kinetics100": "kinetics_cmn",
    "kinetics_100": "kinetics_cmn",
}


def register_dataset(name: str, builder: Builder) -> Builder:
    """Add ``builder`` (``builder(*, root, annotations, splits, task) -> Manifest``, the paths None
    when not given, as :func:`build_manifest` calls the built-in ones) to :data:`BUILDERS` under
    ``name``, as a plugin does; a name fsv has already is refused."""
    name = canonical_name(name)
    if name in BUILDERS or name in ALIASES or name in _format_builders():
        raise ValueError(f"dataset {name!r} is registered already; choose another name")
    BUILDERS[name] = builder
    return builder


def dataset_names() -> list[str]:
    """Dataset names accepted by :func:`build_manifest` (aliases included; the feature formats
    that carry annotations are accepted too, but are not datasets); installed plugins' datasets
    are loaded first."""
    load_plugins("fsv.datasets")
    return sorted(set(BUILDERS) | set(ALIASES))


def _format_builders() -> dict[str, Callable[[Path], Manifest]]:
    """The published feature formats that carry annotations (imported late: formats read manifests)."""
    from fsv.pipeline.formats import feature_formats

    return {name: f.build_manifest for name, f in feature_formats().items() if f.build_manifest is not None}


def canonical_name(dataset: str) -> str:
    name = dataset.lower().replace("-", "_")
    return ALIASES.get(name, name)


def build_manifest(
    dataset: str,
    *,
    root: str | Path | None = None,
    annotations: str | Path | None = None,
    splits: str | Path | None = None,
    task: str | None = None,
) -> Manifest:
    """Build ``dataset``'s manifest; every problem in the sources is raised at once.

    ``dataset`` may also name a published feature format that carries annotations (``wtalc``,
    ``actionformer``: :mod:`fsv.pipeline.formats`). ``root`` is the data root (paths are resolved against the files found there), ``annotations``
    an annotation file or folder (THUMOS14, ActivityNet, CSV), ``splits`` a folder of split lists
    replacing the shipped ones, ``task`` forces the manifest's task (generic builders).
    """
    name = canonical_name(dataset)
    from_format = _format_builders().get(dataset)
    if from_format is not None:
        if annotations is None or root is not None or splits is not None:
            raise FsvInputError(
                f"the {dataset} format builds its manifest from --annotations PATH alone (no --root or --splits)"
            )
        return from_format(Path(annotations))
    load_plugins("fsv.datasets")
    builder = BUILDERS.get(name)
    if builder is None:
        raise FsvInputError(f"unknown dataset {dataset!r}; choose one of {', '.join(dataset_names())}")
    return builder(
        root=Path(root) if root is not None else None,
        annotations=Path(annotations) if annotations is not None else None,
        splits=Path(splits) if splits is not None else None,
        task=task,
    )
