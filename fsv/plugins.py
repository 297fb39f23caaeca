"""Plugins: installed packages that add heads, backbones, feature formats or datasets, found by
their entry points, so that a new head or backbone lives in its author's repository, not a fork.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."fsv.heads"]
    my-head = "my_package.head"              # a module that calls register_head
    [project.entry-points."fsv.backbones"]
    my-backbone = "my_package.backbone"      # ... register_backbone
    [project.entry-points."fsv.formats"]     # ... register_format
    [project.entry-points."fsv.datasets"]    # ... register_dataset

Each registry loads its group the first time it is asked for an entry (``head_card``,
``backbone_card``, ``feature_format``, ``build_manifest`` and their listings; :func:`load_plugins`),
never while fsv's modules are being imported: the entry point's module is imported and registers
what it defines through the registry's own function, exactly as a built-in does, so the CLI,
presets, ``--print-config``, the contract tests and reports see it. A name that a built-in (or
another plugin) holds is refused; a plugin that fails to import is reported by name (``fsv
plugins``, and a warning) and the rest of fsv works without it. What a plugin registered before it
failed stays registered (register everything at the end of the module to avoid that).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import entry_points

log = logging.getLogger(__name__)

GROUPS = ("fsv.heads", "fsv.backbones", "fsv.formats", "fsv.datasets")


@dataclass(frozen=True)
class Plugin:
    """One entry point: its ``group``, ``name``, the module it names (``value``), the distribution
    that declares it (``name version``), and ``error`` when it failed to load (None when loaded)."""

    group: str
    name: str
    value: str
    distribution: str
    error: str | None = None


_LOADED: dict[str, list[Plugin]] = {}


def load_plugins(group: str) -> list[Plugin]:
    """Import the modules of ``group``'s entry points once (registering what they define); a
    failure is recorded and logged, not raised."""
    if group in _LOADED:
        return _LOADED[group]
    _LOADED[group] = found = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "?"
        try:
            ep.load()
            found.append(Plugin(group, ep.name, ep.value, dist))
        except Exception as e:  # noqa: BLE001  (a broken plugin must not take fsv down)
            error = type(e).__name__ + (f": {str(e).splitlines()[0]}" if str(e) else "")
            found.append(Plugin(group, ep.name, ep.value, dist, error))
            log.warning("plugin %s (%s, from %s) was not loaded: %s", ep.name, group, dist, error)
    return found


def all_plugins() -> list[Plugin]:
    """Every group's plugins, loading the groups not loaded yet (a plugin's module imports the
    registry it registers with, which registers the built-ins first)."""
    return [p for group in GROUPS for p in load_plugins(group)]
