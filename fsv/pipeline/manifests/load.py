"""A manifest by file or by dataset name."""

from __future__ import annotations

from pathlib import Path

from fsv.errors import FsvInputError
from fsv.pipeline.manifests.builders import build_manifest, canonical_name, dataset_names
from fsv.pipeline.manifests.model import Manifest


def load_manifest(spec: str, root: Path | None = None) -> Manifest:
    """A manifest file, or a dataset name (its configured manifest, else built from shipped files)."""
    from fsv.locations import configured_names, locate

    path = Path(spec)
    if path.is_file():
        return Manifest.read(path)
    name = spec if spec in configured_names() else canonical_name(spec)
    builtin = name in dataset_names()
    if builtin or name in configured_names():
        loc = locate(name)
        if loc.manifest is not None:
            return Manifest.read(loc.manifest)
        if not builtin:
            raise FsvInputError(f"dataset {name!r} has no manifest: run `fsv datasets set {name} --manifest FILE`")
        return build_manifest(name, root=root or loc.root)
    names = sorted(set(dataset_names()) | set(configured_names()))
    raise FsvInputError(
        f"{spec}: neither a manifest file nor a dataset name ({', '.join(names)}); add your own with `fsv datasets set`"
    )
