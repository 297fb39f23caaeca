"""A manifest by file or by dataset name."""

from __future__ import annotations

from pathlib import Path

from fsv.errors import FsvInputError
from fsv.pipeline.manifests.builders import build_manifest, canonical_name, dataset_names
from fsv.pipeline.manifests.model import Manifest


def load_manifest(spec: str, root: Path | None = None) -> Manifest:
    """A manifest file, or a dataset name (its configured manifest, else built from shipped files)."""
    from fsv.config import locate

    path = Path(spec)
    if path.is_file():
        return Manifest.read(path)
    name = canonical_name(spec)
    if name in dataset_names():
        loc = locate(name)
        if loc.manifest is not None:
            return Manifest.read(loc.manifest)
        return build_manifest(name, root=root or loc.root)
    raise FsvInputError(f"{spec}: neither a manifest file nor a dataset name ({', '.join(dataset_names())})")
