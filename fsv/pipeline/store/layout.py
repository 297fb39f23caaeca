"""On-disk layout of a feature store, and the commit journal that makes it crash-safe.

::

    STORE/                          Zarr v3 group; attributes["fsv"] = spec, spec key, manifest hash, version
      parts/
        <part>/                     Zarr group, one per writer run (attributes: shard, host, pid, started)
          <field>/                  (rows, *field shape) array, sharded: one file per shard of rows
          span_s/                   (rows, 2) float64: [start_s, end_s] of each feature step
          journal.jsonl             committed videos, one JSON line each, appended after their rows

A writer appends rows, then appends one journal line per video whose rows are written; readers
trust only the journal, so a video is visible whole or not at all. Each writer owns its part, so
any number of processes (cluster jobs) write one store without a lock server, and the file count
grows with shards and parts, not with videos. A torn last journal line (a writer killed mid-line)
is ignored; rows past the last committed video are orphans that no reader sees.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from zlib_ng import zlib_ng

FORMAT_VERSION = 1
ATTRS_KEY = "fsv"
PARTS_DIR = "parts"
JOURNAL = "journal.jsonl"
SPANS = "span_s"


def rows_crc32(rows: np.ndarray) -> int:
    """The CRC-32 (zlib's polynomial, as journals record it) of an array's bytes in C order.

    zlib-ng's folded CRC runs at ~20 GB/s per core here (zlib's at ~4 GB/s), which keeps the
    check that every read makes cheap beside decompression; it releases the GIL, so checks run in
    parallel on threads.
    """
    return zlib_ng.crc32(memoryview(np.ascontiguousarray(rows)).cast("B"))


@dataclass(frozen=True)
class StoreLayout:
    """Chunking and compression of the row arrays.

    ``chunk_bytes`` is the target uncompressed size of one chunk (the unit of a random read),
    ``shard_bytes`` of one shard file (the unit of a write); ``codec`` and ``clevel`` name the
    Blosc compressor (``zstd``, ``lz4``, ``lz4hc``, ``blosclz``, ``zlib``) or ``none``; ``shuffle``
    is ``bitshuffle``, ``shuffle`` or ``noshuffle``. Defaults are chosen by ``bench/store_read.py``.
    """

    chunk_bytes: int = 256 * 1024
    shard_bytes: int = 64 * 1024 * 1024
    codec: str = "lz4hc"
    clevel: int = 5
    shuffle: str = "shuffle"

    def chunk_rows(self, row_bytes: int) -> int:
        return max(1, self.chunk_bytes // max(row_bytes, 1))

    def shard_rows(self, row_bytes: int) -> int:
        rows = self.chunk_rows(row_bytes)
        return rows * max(1, self.shard_bytes // (rows * max(row_bytes, 1)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk_bytes": self.chunk_bytes,
            "shard_bytes": self.shard_bytes,
            "codec": self.codec,
            "clevel": self.clevel,
            "shuffle": self.shuffle,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StoreLayout":
        return cls(**{k: d[k] for k in ("chunk_bytes", "shard_bytes", "codec", "clevel", "shuffle") if k in d})


@dataclass(slots=True)
class Entry:
    """A committed video: where its rows are and what is known about it.

    ``status`` is ``ok`` (rows ``[offset, offset + length)`` of ``part``) or ``failed`` (``error``
    says why; no rows). ``crc32`` maps each field to the CRC-32 of its rows' bytes.
    """

    video_id: str
    status: str
    part: str
    offset: int = 0
    length: int = 0
    fps: float | None = None
    num_frames: int | None = None
    duration: float | None = None
    crc32: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    time: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    line: int = 0

    def to_json(self) -> str:
        d: dict[str, Any] = {"id": self.video_id, "status": self.status, "t": round(self.time, 3)}
        if self.status == "ok":
            d.update(offset=self.offset, length=self.length, crc32=self.crc32)
        else:
            d["error"] = self.error
        for k in ("fps", "num_frames", "duration"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.meta:
            d["meta"] = self.meta
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, part: str, line: int) -> "Entry":
        return cls.from_dict(json.loads(text), part, line)

    @classmethod
    def from_dict(cls, d: dict[str, Any], part: str, line: int) -> "Entry":
        """An entry from a parsed journal line (raises KeyError, TypeError or ValueError on a
        malformed one)."""
        crc = d.get("crc32")
        return cls(
            d["id"],
            d["status"],
            part,
            int(d.get("offset", 0)),
            int(d.get("length", 0)),
            d.get("fps"),
            d.get("num_frames"),
            d.get("duration"),
            {k: int(v) for k, v in crc.items()} if crc else {},
            d.get("error"),
            float(d.get("t", 0.0)),
            d.get("meta") or {},
            line,
        )


@dataclass
class JournalRead:
    """A part's journal: its entries, lines that could not be parsed, and whether the tail is torn."""

    entries: list[Entry]
    bad_lines: list[tuple[int, str]]
    torn_tail: bool


def read_journal(path: Path, part: str) -> JournalRead:
    """Parse ``path``; a final line without its newline is a torn write and is skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return JournalRead([], [], False)
    lines = data.split(b"\n")
    torn = lines[-1] != b""
    complete = lines[:-1]
    try:  # one parse of the whole journal (JSON array of its lines); line by line only when that fails
        parsed = json.loads(b"[" + b",".join(raw for raw in complete if raw.strip()) + b"]")
        numbers = [i for i, raw in enumerate(complete, start=1) if raw.strip()]
        return JournalRead([Entry.from_dict(d, part, i) for d, i in zip(parsed, numbers)], [], torn)
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        pass
    entries, bad = [], []
    for i, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            entries.append(Entry.from_json(raw.decode("utf-8"), part, i))
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
            bad.append((i, f"{type(e).__name__}: {e}"))
    return JournalRead(entries, bad, torn)


def append_lines(path: Path, lines: list[str]) -> None:
    """Append whole lines and fsync, so that a commit is durable before the writer moves on."""
    payload = "".join(line + "\n" for line in lines).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(payload)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
