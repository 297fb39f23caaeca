"""Dataset manifests: the table of videos every other stage is keyed by.

>>> from fsv.pipeline.manifests import build_manifest, check_manifest
>>> m = build_manifest("ucf101_arn")          # from the shipped split lists
>>> problems = check_manifest(m, root="/data/ucf101")
"""

from fsv.pipeline.manifests.builders import build_manifest, canonical_name, dataset_names
from fsv.pipeline.manifests.check import check_manifest, check_source
from fsv.pipeline.manifests.load import load_manifest
from fsv.pipeline.manifests.model import Manifest, Segment, VideoRecord
from fsv.pipeline.manifests.probe import probe_manifest
from fsv.pipeline.manifests.problems import Problem, ProblemList

__all__ = [
    "Manifest",
    "Problem",
    "ProblemList",
    "Segment",
    "VideoRecord",
    "build_manifest",
    "canonical_name",
    "check_manifest",
    "check_source",
    "dataset_names",
    "load_manifest",
    "probe_manifest",
]
