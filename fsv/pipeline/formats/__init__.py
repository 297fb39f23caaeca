"""The community's published feature files, by name: ``fsv store import SRC --format NAME`` and
``fsv store export STORE --format NAME`` (see :mod:`fsv.pipeline.formats.base`).

=================  ==========================================================================
``wtalc``          W-TALC lineage ``*-JOINTFeatures.npy`` + ``*-Annotations/`` (:mod:`.wtalc`)
``actionformer``   ActionFormer / TriDet per-video ``.npy`` + ``thumos14.json`` (:mod:`.actionformer`)
``anet-c3d``       ActivityNet challenge C3D PCA-500 HDF5 (:mod:`.anet_c3d`)
``video-features`` v-iashin/video_features ``save_numpy`` outputs (:mod:`.video_features`)
=================  ==========================================================================

Adding a format is one module defining ``FORMAT`` plus its line in :data:`FORMATS`.
"""

from __future__ import annotations

from fsv.errors import FsvInputError
from fsv.pipeline.formats import actionformer, anet_c3d, video_features, wtalc
from fsv.pipeline.formats.base import FeatureFormat, Features, SourceVideo

FORMATS: dict[str, FeatureFormat] = {m.FORMAT.name: m.FORMAT for m in (wtalc, actionformer, anet_c3d, video_features)}


def feature_format(name: str) -> FeatureFormat:
    """The format called ``name``; an unknown name is an input error listing the known ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise FsvInputError(f"unknown feature format {name!r}; choose one of {', '.join(FORMATS)}") from None


__all__ = ["FORMATS", "FeatureFormat", "Features", "SourceVideo", "feature_format"]
