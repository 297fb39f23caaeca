"""The community's published feature files, by name: ``fsv store import SRC --format NAME`` and
``fsv store export STORE --format NAME`` (see :mod:`fsv.pipeline.formats.base`).

=================  ==========================================================================
``wtalc``          W-TALC lineage ``*-JOINTFeatures.npy`` + ``*-Annotations/`` (:mod:`.wtalc`)
``actionformer``   ActionFormer / TriDet per-video ``.npy`` + ``thumos14.json`` (:mod:`.actionformer`)
``anet-c3d``       ActivityNet challenge C3D PCA-500 HDF5 (:mod:`.anet_c3d`)
``video-features`` v-iashin/video_features ``save_numpy`` outputs (:mod:`.video_features`)
``videomaev2-tad`` VideoMAE V2-g TAD features, per-video ``<stem>.npy`` (:mod:`.videomaev2_tad`)
``tsp-h5``         TSP's R(2+1)D-34 features, one ``.h5`` (:mod:`.tsp_h5`)
=================  ==========================================================================

Adding a format is one module defining ``FORMAT`` plus its line in :data:`FORMATS`; from a package
of your own, :func:`register_format` in a module named by an ``fsv.formats`` entry point
(:mod:`fsv.plugins`).
"""

from __future__ import annotations

from fsv.errors import FsvInputError
from fsv.plugins import load_plugins
from fsv.pipeline.formats import actionformer, anet_c3d, tsp_h5, video_features, videomaev2_tad, wtalc
from fsv.pipeline.formats.base import FeatureFormat, Features, SourceVideo

FORMATS: dict[str, FeatureFormat] = {
    m.FORMAT.name: m.FORMAT for m in (wtalc, actionformer, anet_c3d, video_features, videomaev2_tad, tsp_h5)
}


def register_format(fmt: FeatureFormat) -> FeatureFormat:
    """Add ``fmt`` to :data:`FORMATS`, as a plugin does; a name fsv has already is refused."""
    formats = feature_formats()
    if fmt.name in formats:
        raise ValueError(f"feature format {fmt.name!r} is registered already; choose another name")
    taken = {s.name for f in formats.values() for s in f.specs}
    clash = sorted({s.name for s in fmt.specs} & taken)
    if clash:
        raise ValueError(f"spec presets {clash} are another format's; choose other names")
    FORMATS[fmt.name] = fmt
    return fmt


def feature_formats() -> dict[str, FeatureFormat]:
    """Every format: the built-ins, then the installed plugins' (loaded on first use)."""
    load_plugins("fsv.formats")
    return FORMATS


def feature_format(name: str) -> FeatureFormat:
    """The format called ``name``; an unknown name is an input error listing the known ones."""
    formats = feature_formats()
    if name not in formats:
        raise FsvInputError(f"unknown feature format {name!r}; choose one of {', '.join(formats)}")
    return formats[name]


__all__ = [
    "FORMATS",
    "FeatureFormat",
    "Features",
    "SourceVideo",
    "feature_format",
    "feature_formats",
    "register_format",
]
