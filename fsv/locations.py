"""Where datasets live, by name: each one's videos, manifest and feature stores (the datasets file).

Read from a TOML file (``$FSV_CONFIG``, else ``~/.config/fsv/config.toml``)::

    stores = "/scratch/fsv-stores"          # default parent folder of feature stores
    runs = "/scratch/fsv-runs"              # default parent folder of run folders (also $FSV_RUNS)

    [datasets.thumos14]
    root = "/data/thumos14"                 # data root that manifest paths are relative to
    manifest = "/data/thumos14/manifest.csv"  # optional: default is built from fsv's shipped files
    stores = "/scratch/thumos14-features"   # optional: this dataset's store folder
    default = true                          # optional: read by heads when a command names no dataset

and overridden per dataset by environment variables ``FSV_<NAME>_ROOT``, ``FSV_<NAME>_MANIFEST``,
``FSV_<NAME>_STORES`` (``FSV_THUMOS14_ROOT=/data/thumos14``) and ``FSV_STORES`` for the default.
``fsv datasets set NAME --root DIR`` writes the file; ``fsv datasets list`` shows what resolves.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsv.errors import FsvInputError
from fsv.files import write_text_atomic


def datasets_file() -> Path:
    """The datasets file in effect."""
    env = os.environ.get("FSV_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fsv" / "config.toml"


def read_datasets_file() -> dict[str, Any]:
    path = datasets_file()
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise FsvInputError(f"{path}: invalid TOML ({e}); fix or remove it") from e


@dataclass(frozen=True)
class DatasetLocation:
    """Where a named dataset lives. ``manifest`` None means: build from the shipped definitions."""

    name: str
    root: Path | None
    manifest: Path | None
    stores: Path

    def store_path(self, spec_name: str, spec_key: str) -> Path:
        """The store of this dataset for a feature spec: ``<stores>/<name>/<spec name>-<key>.zarr``."""
        return self.stores / self.name / f"{spec_name}-{spec_key}.zarr"


def locate(name: str) -> DatasetLocation:
    """Resolve dataset ``name`` from the environment, then the datasets file, then defaults."""
    settings = read_datasets_file()
    entry = settings.get("datasets", {}).get(name, {})
    env = name.upper().replace("-", "_")

    def pick(key: str) -> str | None:
        return os.environ.get(f"FSV_{env}_{key.upper()}") or entry.get(key)

    root, manifest, stores = pick("root"), pick("manifest"), pick("stores")
    default_stores = os.environ.get("FSV_STORES") or settings.get("stores") or str(Path.cwd() / "fsv-stores")
    return DatasetLocation(
        name=name,
        root=Path(root).expanduser() if root else None,
        manifest=Path(manifest).expanduser() if manifest else None,
        stores=Path(stores).expanduser() if stores else Path(default_stores).expanduser(),
    )


def configured_names() -> list[str]:
    """Datasets named in the datasets file (built-in and custom ones)."""
    return sorted(read_datasets_file().get("datasets", {}))


def is_default(name: str) -> bool:
    """Whether dataset ``name`` is marked ``default = true`` (``fsv datasets set NAME --default``)."""
    return bool(read_datasets_file().get("datasets", {}).get(name, {}).get("default", False))


def set_dataset(name: str, *, default: bool = False, **values: str | Path | None) -> Path:
    """Set ``root`` / ``manifest`` / ``stores`` of dataset ``name`` in the datasets file (rewritten
    whole); ``default`` marks it as the dataset heads read when a command names none
    (:func:`fsv.heads.setup.default_dataset`), and unmarks any other. A name that is not built in needs a manifest
    (given now or before)."""
    from fsv.pipeline.manifests.builders import canonical_name, dataset_names

    if canonical_name(name) not in dataset_names() and values.get("manifest") is None and locate(name).manifest is None:
        raise FsvInputError(
            f"{name!r} is not a built-in dataset ({', '.join(dataset_names())}): give its --manifest FILE too"
        )
    settings = read_datasets_file()
    entry = settings.setdefault("datasets", {}).setdefault(name, {})
    for key, value in values.items():
        if value is not None:
            entry[key] = str(Path(value).expanduser().resolve())
    if default:  # one default: marking this one unmarks the others
        for other in settings["datasets"].values():
            other.pop("default", None)
        entry["default"] = True
    path = datasets_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, _dump_toml(settings))
    return path


def datasets_overview() -> list[dict[str, str]]:
    """Every known dataset (built in, then configured) with its resolved root, manifest and stores."""
    from fsv.pipeline.manifests.builders import dataset_names

    builtin = dataset_names()
    rows = []
    for name in builtin + [n for n in configured_names() if n not in builtin]:
        loc = locate(name)
        default = "(built from shipped files)" if name in builtin else "-"
        rows.append(
            {
                "name": name,
                "root": str(loc.root or "-"),
                "manifest": str(loc.manifest or default),
                "stores": str(loc.stores),
            }
        )
    return rows


def _dump_toml(settings: dict[str, Any]) -> str:
    """TOML for the datasets file (top-level strings, then ``[datasets.NAME]`` tables)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items() if not isinstance(v, dict)]
    for name, entry in sorted(settings.get("datasets", {}).items()):
        lines += ["", f"[datasets.{json.dumps(name) if not name.replace('_', '').isalnum() else name}]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in sorted(entry.items())]
    return "\n".join(lines) + "\n"
