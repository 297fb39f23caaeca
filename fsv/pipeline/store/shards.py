"""Fast row reads from the sharded Zarr v3 arrays that :class:`PartWriter` writes.

zarr-python spends about a millisecond of Python and event-loop overhead per inner chunk, which
caps whole-split loads near 0.2 GB/s (``bench/store_read.py``). The arrays fsv writes have one
fixed shape: rows chunked along axis 0 only, ``sharding_indexed`` with its index at the end
(``bytes`` + ``crc32c``), inner codecs ``bytes`` (little endian) and optionally ``blosc``. For those,
this module reads the shard index once per shard file, fetches the wanted inner chunks with
coalesced ``pread`` calls and decodes them with Blosc in a thread pool (Blosc releases the GIL).
The files stay standard Zarr: anything else (other codecs, other readers) goes through zarr-python,
and the tests check both paths agree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import google_crc32c
from numcodecs import blosc

from fsv.errors import StoreCorruptError
from fsv.pipeline.store.layout import rows_crc32

# fsv parallelises across chunks itself; Blosc's global thread pool would serialise the calls
# made from the main thread behind one mutex.
blosc.use_threads = False

T = TypeVar("T")
R = TypeVar("R")
EMPTY = np.uint64(2**64 - 1)
_POOL: ThreadPoolExecutor | None = None


def _workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def thread_pool() -> ThreadPoolExecutor:
    """The process-wide pool that fetches and decodes chunks (pread and Blosc release the GIL)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="fsv-shards")
    return _POOL


def run_sliced(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]`` across the pool in one slice per worker (the calling thread
    takes the first), so per-item thread hand-offs do not eat the gain on small items."""
    n = min(_workers(), len(items))
    if n <= 1:
        return [fn(x) for x in items]
    bounds = [len(items) * i // n for i in range(n + 1)]
    slices = [items[bounds[i] : bounds[i + 1]] for i in range(n)]
    futures = [thread_pool().submit(lambda sl: [fn(x) for x in sl], sl) for sl in slices[1:]]
    out = [fn(x) for x in slices[0]]
    for f in futures:
        out += f.result()
    return out


@dataclass(frozen=True)
class ChunkTask:
    """An encoded inner chunk whose first row is ``chunk_row``, decoded once; for each target
    ``(a, b, lo, out)`` its rows ``[a, b)`` go to ``out[a - lo : b - lo]``; for each check
    ``(a, b, crc)`` its rows ``[a, b)`` must have that CRC-32, computed on the decoded chunk while
    it is in cache (see :meth:`ShardedRows.decode`)."""

    raw: memoryview
    chunk_row: int
    targets: tuple[tuple[int, int, int, np.ndarray], ...]
    path: Path
    checks: tuple[tuple[int, int, int], ...] = ()


# Wanted chunks of one shard closer than this are fetched by one pread (the gap is read and dropped);
# sparse selections read little more than their chunks.
COALESCE_GAP = 64 << 10


@dataclass(frozen=True)
class _Meta:
    shape: tuple[int, ...]
    dtype: np.dtype
    shard_rows: int
    chunk_rows: int
    compressed: bool
    fill_value: Any
    key_suffix: str


def parse_meta(array_dir: Path) -> _Meta | None:
    """The layout of ``array_dir`` when it is one this reader handles, else None."""
    meta = json.loads((array_dir / "zarr.json").read_text())
    try:
        (codec,) = meta["codecs"]
        if codec["name"] != "sharding_indexed":
            return None
        cfg = codec["configuration"]
        shape = tuple(meta["shape"])
        shard_shape = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
        chunk_shape = tuple(cfg["chunk_shape"])
        if shard_shape[1:] != shape[1:] or chunk_shape[1:] != shape[1:] or cfg.get("index_location", "end") != "end":
            return None
        names = [c["name"] for c in cfg["codecs"]]
        if (
            names not in (["bytes"], ["bytes", "blosc"])
            or cfg["codecs"][0].get("configuration", {}).get("endian", "little") != "little"
        ):
            return None
        if [c["name"] for c in cfg["index_codecs"]] != ["bytes", "crc32c"]:
            return None
        if meta["chunk_key_encoding"] != {"name": "default", "configuration": {"separator": "/"}}:
            return None
        dtype = np.dtype(meta["data_type"]).newbyteorder("<")
    except (KeyError, TypeError, ValueError):
        return None
    fill = meta.get("fill_value", 0)
    fill = float(fill) if isinstance(fill, str) else fill  # "NaN", "Infinity"
    return _Meta(shape, dtype, shard_shape[0], chunk_shape[0], len(names) == 2, fill, "/0" * (len(shape) - 1))


class ShardedRows:
    """Row reader of one array directory; shard indexes are cached by (size, mtime) of the file."""

    def __init__(self, array_dir: Path, meta: _Meta) -> None:
        self.dir = array_dir
        self.meta = meta
        self.row_shape = meta.shape[1:]
        self.row_items = int(np.prod(self.row_shape, dtype=np.int64))
        self.chunks_per_shard = meta.shard_rows // meta.chunk_rows
        self._index: dict[int, tuple[tuple[int, int], np.ndarray | None]] = {}

    @classmethod
    def open(cls, array_dir: Path) -> "ShardedRows | None":
        meta = parse_meta(array_dir)
        return None if meta is None else cls(array_dir, meta)

    def shard_path(self, shard: int) -> Path:
        return self.dir / "c" / f"{shard}{self.meta.key_suffix}"

    def shard_index(self, shard: int) -> np.ndarray | None:
        """``(chunks_per_shard, 2)`` uint64 (offset, nbytes) of a shard's inner chunks; None if absent."""
        path = self.shard_path(shard)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_size, st.st_mtime_ns)
        hit = self._index.get(shard)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        n = self.chunks_per_shard
        size = 16 * n + 4
        with open(path, "rb") as f:
            f.seek(st.st_size - size)
            raw = f.read(size)
        if len(raw) != size:
            raise StoreCorruptError(
                f"{path}: truncated shard file (size {st.st_size}); the store is damaged: run `fsv store verify` on it"
            )
        if google_crc32c.value(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
            raise StoreCorruptError(
                f"{path}: the shard index does not match its checksum; the store is damaged: run `fsv store verify` on it"
            )
        index = np.frombuffer(raw[:-4], dtype="<u8").reshape(n, 2)
        self._index[shard] = (stamp, index)
        return index

    def read(self, lo: int, hi: int, out: np.ndarray | None = None, *, parallel: bool = True) -> np.ndarray:
        """Rows ``[lo, hi)`` as ``(hi - lo, *row shape)``, decoded into ``out`` when given;
        chunks decode on the thread pool when ``parallel``."""
        if out is None:
            out = np.empty((hi - lo, *self.row_shape), dtype=self.meta.dtype)
        tasks, _ = self.plan([(lo, hi, out)])
        if parallel and self.meta.compressed:
            run_sliced(self.decode, tasks)
        else:
            for t in tasks:
                self.decode(t)
        return out

    def plan(
        self, pieces: Sequence[tuple[int, int, np.ndarray]], checks: Sequence[tuple[int, int, int]] = ()
    ) -> tuple[list[ChunkTask], list[tuple[int, int, int]]]:
        """Fetch the encoded chunks that hold rows ``[lo, hi)`` of every piece ``(lo, hi, out)``
        (coalesced ``pread`` calls per shard), fill absent chunks and return one decoding task
        per chunk, however many pieces share it (see :meth:`decode`).

        Each check ``(a, b, crc)`` whose rows lie in one stored chunk travels with that chunk's
        task; the others (rows across chunks, or in a chunk never written because it held only
        the fill value) are returned for the caller to check on the output."""
        cr, per = self.meta.chunk_rows, self.chunks_per_shard
        wanted: dict[int, list[tuple[int, int, int, np.ndarray]]] = {}
        for lo, hi, out in pieces:
            for chunk in range(lo // cr, (hi - 1) // cr + 1) if hi > lo else ():
                r0 = chunk * cr
                wanted.setdefault(chunk, []).append((max(lo, r0), min(hi, r0 + cr), lo, out))
        by_chunk: dict[int, list[tuple[int, int, int]]] = {}
        rest: list[tuple[int, int, int]] = []
        for c in checks:
            if c[1] > c[0] and c[0] // cr == (c[1] - 1) // cr and c[0] // cr in wanted:
                by_chunk.setdefault(c[0] // cr, []).append(c)
            else:
                rest.append(c)
        by_shard: dict[int, list[int]] = {}
        for chunk in sorted(wanted):
            by_shard.setdefault(chunk // per, []).append(chunk)
        tasks: list[ChunkTask] = []
        for shard, chunks in by_shard.items():
            tasks += self._fetch(shard, chunks, wanted, by_chunk, rest)
        return tasks, rest

    def decode(self, task: ChunkTask) -> list[tuple[int, int, int]]:
        """Decode one fetched chunk into its rows of every output that wants them; returns the
        task's checks that fail."""
        try:
            data = blosc.decompress(task.raw) if self.meta.compressed else task.raw
            block = np.frombuffer(data, dtype=self.meta.dtype).reshape(-1, *self.row_shape)
        except (RuntimeError, ValueError) as e:  # blosc on a damaged chunk, or a chunk of the wrong size
            raise StoreCorruptError(
                f"{task.path}: the chunk of rows from {task.chunk_row} cannot be decoded ({e}); the store is damaged: "
                "run `fsv store verify` on it"
            ) from e
        for a, b, lo, out in task.targets:
            out[a - lo : b - lo] = block[a - task.chunk_row : b - task.chunk_row]
        r0 = task.chunk_row
        return [c for c in task.checks if rows_crc32(block[c[0] - r0 : c[1] - r0]) != c[2]]

    def _fetch(
        self,
        shard: int,
        chunks: list[int],
        wanted: dict[int, list[tuple[int, int, int, np.ndarray]]],
        checks: dict[int, list[tuple[int, int, int]]],
        rest: list[tuple[int, int, int]],
    ) -> list[ChunkTask]:
        cr = self.meta.chunk_rows
        index = self.shard_index(shard)
        base = shard * self.chunks_per_shard
        tasks: list[ChunkTask] = []
        present: list[tuple[int, int, int]] = []  # chunk, offset, nbytes
        for chunk in chunks:
            off, nbytes = (EMPTY, 0) if index is None else (index[chunk - base, 0], int(index[chunk - base, 1]))
            if off == EMPTY:
                for a, b, lo, out in wanted[chunk]:
                    out[a - lo : b - lo] = self.meta.fill_value
                rest += checks.get(chunk, ())
            else:
                present.append((chunk, int(off), nbytes))
        present.sort(key=lambda c: c[1])
        groups: list[list[tuple[int, int, int]]] = []
        for c in present:
            if groups and c[1] - (groups[-1][-1][1] + groups[-1][-1][2]) <= COALESCE_GAP:
                groups[-1].append(c)
            else:
                groups.append([c])
        if not groups:
            return tasks
        path = self.shard_path(shard)
        fd = os.open(path, os.O_RDONLY)
        try:
            for group in groups:
                start, stop = group[0][1], max(off + n for _, off, n in group)
                buf = os.pread(fd, stop - start, start)
                if len(buf) != stop - start:
                    raise StoreCorruptError(
                        f"{path}: truncated shard file; the store is damaged: run `fsv store verify` on it"
                    )
                view = memoryview(buf)
                for chunk, off, nbytes in group:
                    tasks.append(
                        ChunkTask(
                            view[off - start : off - start + nbytes],
                            chunk * cr,
                            tuple(wanted[chunk]),
                            path,
                            tuple(checks.get(chunk, ())),
                        )
                    )
        finally:
            os.close(fd)
        return tasks
