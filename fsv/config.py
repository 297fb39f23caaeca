"""Datasets by name: where each one's videos, manifest and feature stores live.

Read from a TOML file (``$FSV_CONFIG``, else ``~/.config/fsv/config.toml``)::

    stores = "/scratch/fsv-stores"          # default parent folder of feature stores

    [datasets.thumos14]
    root = "/data/thumos14"                 # data root that manifest paths are relative to
    manifest = "/data/thumos14/manifest.csv"  # optional: default is built from fsv's shipped files
    stores = "/scratch/thumos14-features"   # optional: this dataset's store folder

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


def config_path() -> Path:
    """The config file in effect."""
    env = os.environ.get("FSV_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fsv" / "config.toml"


def load_config() -> dict[str, Any]:
    path = config_path()
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
    """Resolve dataset ``name`` from the environment, then the config file, then defaults."""
    cfg = load_config()
    entry = cfg.get("datasets", {}).get(name, {})
    env = name.upper().replace("-", "_")

    def pick(key: str) -> str | None:
        return os.environ.get(f"FSV_{env}_{key.upper()}") or entry.get(key)

    root, manifest, stores = pick("root"), pick("manifest"), pick("stores")
    default_stores = os.environ.get("FSV_STORES") or cfg.get("stores") or str(Path.cwd() / "fsv-stores")
    return DatasetLocation(
        name=name,
        root=Path(root).expanduser() if root else None,
        manifest=Path(manifest).expanduser() if manifest else None,
        stores=Path(stores).expanduser() if stores else Path(default_stores).expanduser(),
    )


def configured_names() -> list[str]:
    """Datasets named in the config file (built-in and custom ones)."""
    return sorted(load_config().get("datasets", {}))


def set_dataset(name: str, **values: str | None) -> Path:
    """Set ``root`` / ``manifest`` / ``stores`` of dataset ``name`` in the config file (rewritten whole)."""
    cfg = load_config()
    entry = cfg.setdefault("datasets", {}).setdefault(name, {})
    for key, value in values.items():
        if value is not None:
            entry[key] = str(Path(value).expanduser().resolve())
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dump_toml(cfg), encoding="utf-8")
    return path


def _dump_toml(cfg: dict[str, Any]) -> str:
    """TOML for fsv's two-level config (top-level strings, then ``[datasets.NAME]`` tables)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    for name, entry in sorted(cfg.get("datasets", {}).items()):
        lines += ["", f"[datasets.{json.dumps(name) if not name.replace('_', '').isalnum() else name}]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in sorted(entry.items())]
    return "\n".join(lines) + "\n"
