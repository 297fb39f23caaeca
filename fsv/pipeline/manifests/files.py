"""Find each manifest row's video file under a data root, whatever its extension or folder."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path, PurePosixPath

VIDEO_EXTENSIONS = (
    ".mp4",
    ".avi",
    ".webm",
    ".mkv",
    ".mov",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".gif",
    ".3gp",
    ".ogv",
)


class FileIndex:
    """Every video file under ``root``, looked up by relative path without extension or by stem.

    Files that differ only in their extension (``a.mp4`` and ``a.avi``) would map to one video id:
    the first found is indexed and all of them are listed in ``clashes`` (key -> paths).

    The tree is walked once, so resolving 220k SSv2 rows costs one directory scan.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._by_key: dict[str, str] = {}
        self.clashes: dict[str, list[str]] = {}
        self._by_stem: dict[str, list[str]] = defaultdict(list)
        for dirpath, _, filenames in os.walk(self.root, followlinks=True):
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                stem, ext = os.path.splitext(name)
                if ext.lower() not in VIDEO_EXTENSIONS:
                    continue
                rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
                key = str(PurePosixPath(rel).with_suffix(""))
                if key in self._by_key:
                    self.clashes.setdefault(key, [self._by_key[key]]).append(rel)
                self._by_key.setdefault(key, rel)
                self._by_stem[stem].append(rel)

    def paths(self) -> list[str]:
        """Every video file found, relative to the root, sorted."""
        return sorted(self._by_key.values())

    def find(self, candidates: list[str], stem: str | None = None) -> str | None:
        """First existing file among ``candidates`` (relative paths without extension), else the
        unique file named ``stem`` anywhere under the root, else None."""
        for key in candidates:
            hit = self._by_key.get(key)
            if hit is not None:
                return hit
        if stem is not None:
            hits = self._by_stem.get(stem, [])
            if len(hits) == 1:
                return hits[0]
        return None
