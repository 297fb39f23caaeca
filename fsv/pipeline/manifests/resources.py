"""Paths of the dataset definitions shipped with fsv (the resource package ``fsv.pipeline.manifests.shipped``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fsv.errors import FsvInputError

SHIPPED = "fsv.pipeline.manifests.shipped"


def resource_path(*parts: str) -> Path:
    """Filesystem path of a shipped file, e.g. ``resource_path("splits", "ucf101_arn", "train.txt")``."""
    path = Path(str(resources.files(SHIPPED).joinpath(*parts)))
    if not path.exists():
        raise FsvInputError(f"fsv ships no {'/'.join(parts)} (looked in {path.parent}); reinstall fsv")
    return path
