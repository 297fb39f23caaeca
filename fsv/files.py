"""Files written whole or not at all: a temporary file beside the target, renamed over it once
complete (a killed or failed write leaves the previous file, or none, and no half file)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def partial_path(path: Path) -> Path:
    """The temporary name :func:`atomic_path` writes ``path`` under (same folder and suffix, so
    writers that add a suffix, such as ``np.savez``, keep it)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to: renamed over ``path`` when the block ends,
    removed when it raises."""
    tmp = partial_path(path)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """``path.write_text(text)`` (UTF-8), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
