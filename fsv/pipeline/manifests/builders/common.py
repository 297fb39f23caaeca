"""Helpers shared by the builders: reading annotation JSON, resolving files, finishing a manifest."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from fsv.errors import FsvInputError
from fsv.pipeline.manifests.files import FileIndex
from fsv.pipeline.manifests.model import Manifest, VideoRecord
from fsv.pipeline.manifests.problems import ProblemList


def read_json(path: Path) -> Any:
    """Parse a JSON annotation file, naming the file and line of a syntax error."""
    if not path.is_file():
        raise FsvInputError(f"annotation file {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise FsvInputError(f"{path}:{e.lineno}: invalid JSON ({e.msg}, column {e.colno})") from e
    except UnicodeDecodeError as e:
        raise FsvInputError(f"{path}: not a UTF-8 text file ({e.reason})") from e


def resolve_files(
    records: list[VideoRecord], root: Path | None, candidates: dict[str, list[str]], stems: dict[str, str]
) -> list[VideoRecord]:
    """Replace each record's default path by the file found under ``root``.

    ``candidates[video_id]`` lists relative paths without extension to try in order, ``stems[video_id]``
    the file stem to look for anywhere; rows whose file is not found keep their default path, and
    ``fsv manifest check --root`` reports them.
    """
    if root is None:
        return records
    if not root.is_dir():
        raise FsvInputError(f"data root {root} is not a directory")
    index = FileIndex(root)
    out = []
    for r in records:
        hit = index.find(candidates.get(r.video_id, []), stems.get(r.video_id))
        out.append(r if hit is None else replace(r, path=hit))
    return out


def finish(manifest: Manifest, problems: ProblemList, what: str) -> Manifest:
    """Add duplicate-id problems, raise all problems at once, or return the manifest."""
    seen: dict[str, int | None] = {}
    for r in manifest.records:
        if r.video_id in seen:
            problems.add(what, r.line, f"duplicate video_id (first at line {seen[r.video_id]})", r.video_id)
        seen.setdefault(r.video_id, r.line)
    problems.raise_if_any(f"cannot build the {manifest.dataset} manifest")
    return manifest
