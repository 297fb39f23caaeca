"""Read speed and size of the feature store against one ``.npy`` per video and one HDF5 file.

Same data in every format: ``--videos`` videos of ``8 x 2048`` (pooled) and ``8 x 16 x 2048``
(4x4 patches) float16 features, derived the way fsv derives them at load time from ResNet-50's
``2048 x 7 x 7`` layer4 grid: a post-ReLU grid (``--sparsity`` of its values exactly zero) is
mean-pooled (pooled) or 4x4 adaptive-max-pooled (patches).

Measured per format:
- episode reads: batches of 30 random videos (one 5-way 5-shot episode with queries), videos/s;
- whole-split load: every video into one array, GB/s of decoded features (best of two passes; of six
  for the store, taking turns with the unchecked load),
  and for the store the same load with its per-video CRC-32 checks over without them (``x
  unchecked``: 1.00 means the integrity check is free);
- bytes on disk (allocated blocks, as ``du`` counts) and file count.
Each is printed as a ratio to the npy-per-video baseline measured in the same run. ``--cold``
evicts the files from the page cache (``posix_fadvise(DONTNEED)``) before every read pass, so
reads come from the disk instead of RAM.

    python bench/store_read.py                    # 5,000 videos, all store layouts
    python bench/store_read.py --videos 1000 --layouts zstd3-bitshuffle-256k
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
from rich.console import Console
from rich.table import Table

from fsv.pipeline.spec import FeatureSpec, FieldSpec
from fsv.pipeline.store import FeatureStore, StoreLayout

LAYOUTS = {
    "none-256k": StoreLayout(chunk_bytes=256 * 1024, codec="none", clevel=0, shuffle="noshuffle"),
    "lz4-bitshuffle-256k": StoreLayout(chunk_bytes=256 * 1024, codec="lz4", clevel=5, shuffle="bitshuffle"),
    "lz4hc-shuffle-256k": StoreLayout(chunk_bytes=256 * 1024, codec="lz4hc", clevel=5, shuffle="shuffle"),
    "zstd1-shuffle-64k": StoreLayout(chunk_bytes=64 * 1024, codec="zstd", clevel=1, shuffle="shuffle"),
    "zstd1-shuffle-256k": StoreLayout(chunk_bytes=256 * 1024, codec="zstd", clevel=1, shuffle="shuffle"),
    "zstd1-bitshuffle-256k": StoreLayout(chunk_bytes=256 * 1024, codec="zstd", clevel=1, shuffle="bitshuffle"),
    "lz4hc9-shuffle-128k": StoreLayout(chunk_bytes=128 * 1024, codec="lz4hc", clevel=9, shuffle="shuffle"),
}
KINDS = {"pooled": (2048,), "patches": (16, 2048)}
STEPS = 8
EPISODE = 30


def make_features(kind: str, n: int, sparsity: float, seed: int) -> list[np.ndarray]:
    """``n`` videos of ``(8, *KINDS[kind])`` float16 derived from post-ReLU 7x7 grids."""
    rng = np.random.default_rng(seed)
    threshold = float(np.quantile(rng.standard_normal(100_000), sparsity))
    out = []
    for _ in range(n):
        grid = rng.standard_normal((STEPS, 2048, 7, 7), dtype=np.float32) - threshold
        np.maximum(grid, 0, out=grid)
        if kind == "pooled":
            feats = grid.mean(axis=(2, 3))
        else:  # adaptive max-pool 7 -> 4: windows [0:2], [1:4], [3:6], [5:7]
            bins = [(0, 2), (1, 4), (3, 6), (5, 7)]
            feats = np.stack([grid[:, :, a:b, c:d].max(axis=(2, 3)) for a, b in bins for c, d in bins], axis=1)
        out.append(feats.astype(np.float16))
    return out


def disk_usage(path: Path) -> tuple[int, int]:
    """(allocated bytes, file count) under ``path``."""
    size = files = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            size += st.st_blocks * 512
            files += 1
    return size, files


def evict(path: Path) -> None:
    """Drop ``path``'s files from the page cache (fadvise DONTNEED after fsync)."""
    for dirpath, _, names in os.walk(path):
        for name in names:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def timed(fn: Callable[[], object], seconds: float) -> tuple[int, float]:
    """Run ``fn`` repeatedly for about ``seconds``; (calls, elapsed)."""
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return calls, elapsed


class Format:
    """One on-disk format: write all videos, read a batch, load everything."""

    name: str
    path: Path

    def write(self, ids: list[str], feats: list[np.ndarray]) -> None: ...
    def read_batch(self, ids: list[str]) -> list[np.ndarray]: ...
    def load_all(self, ids: list[str]) -> np.ndarray: ...


class NpyFormat(Format):
    def __init__(self, path: Path) -> None:
        self.name, self.path = "npy per video", path

    def write(self, ids, feats):
        self.path.mkdir(parents=True)
        for v, x in zip(ids, feats):
            np.save(self.path / f"{v}.npy", x)

    def read_batch(self, ids):
        return [np.load(self.path / f"{v}.npy") for v in ids]

    def load_all(self, ids):
        return np.concatenate([np.load(self.path / f"{v}.npy") for v in ids])


class H5Format(Format):
    def __init__(self, path: Path) -> None:
        self.name, self.path = "hdf5 (one file)", path
        self._file: h5py.File | None = None

    def write(self, ids, feats):
        self.path.mkdir(parents=True)
        with h5py.File(self.path / "features.h5", "w") as f:
            for v, x in zip(ids, feats):
                f.create_dataset(v, data=x)

    def _f(self) -> h5py.File:
        if self._file is None:
            self._file = h5py.File(self.path / "features.h5", "r")
        return self._file

    def read_batch(self, ids):
        f = self._f()
        return [f[v][()] for v in ids]

    def load_all(self, ids):
        f = self._f()
        return np.concatenate([f[v][()] for v in ids])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class StoreFormat(Format):
    def __init__(self, path: Path, layout_name: str, shape: tuple[int, ...]) -> None:
        self.name, self.path = f"fsv store {layout_name}", path
        self.layout = LAYOUTS[layout_name]
        self.spec = FeatureSpec(
            "bench",
            "bench",
            {"name": "random"},
            {"kind": "tsn", "num_segments": STEPS},
            {"features": FieldSpec(shape, "float16")},
        )
        self.store: FeatureStore | None = None

    def write(self, ids, feats):
        store = FeatureStore.create(self.path, self.spec, layout=self.layout)
        spans = np.zeros((STEPS, 2))
        with store.writer() as w:
            for v, x in zip(ids, feats):
                w.write(v, x, spans=spans)

    def _s(self) -> FeatureStore:
        if self.store is None:
            self.store = FeatureStore.open(self.path)
        return self.store

    def read_batch(self, ids):
        return self._s().get_many(ids)

    def load_all(self, ids, check: bool = True):
        return self._s().load(ids, with_spans=False, check=check).data


def best_load_s(
    loads: Sequence[Callable[[], np.ndarray]], path: Path, cold: bool, passes: int = 2
) -> tuple[list[float], int]:
    """Seconds of the fastest of ``passes`` runs of each load, the loads taking turns within a
    pass so that a shared machine's slow spells hit them alike (the first pass also pays the VM's
    first-touch page faults); and the bytes each load returned. Each array is dropped before the
    next load, so no pass pays for another's memory."""
    best = [float("inf")] * len(loads)
    nbytes = set()
    for _ in range(passes):
        for k, load in enumerate(loads):
            t0 = time.perf_counter()
            loaded = load()
            best[k] = min(best[k], time.perf_counter() - t0)
            nbytes.add(loaded.nbytes)
            del loaded
            if cold:
                evict(path)
    assert len(nbytes) == 1, f"the loads returned different sizes: {sorted(nbytes)}"
    return best, nbytes.pop()


def run(args: argparse.Namespace) -> None:
    console = Console(width=200)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="fsv-bench-"))
    ids = [f"video_{i:06d}" for i in range(args.videos)]
    rng = random.Random(0)
    batches = [rng.sample(ids, EPISODE) for _ in range(200)]
    try:
        for kind in args.kinds:
            feats = make_features(kind, args.videos, args.sparsity, seed=1)
            raw = sum(x.nbytes for x in feats)
            formats: list[Format] = [NpyFormat(work / kind / "npy"), H5Format(work / kind / "h5")]
            formats += [StoreFormat(work / kind / f"store-{name}", name, KINDS[kind]) for name in args.layouts]
            rows = []
            for fmt in formats:
                t0 = time.perf_counter()
                fmt.write(ids, feats)
                write_s = time.perf_counter() - t0
                size, files = disk_usage(fmt.path)
                check = fmt.read_batch(batches[0][:3])
                for v, x in zip(batches[0][:3], check):
                    assert np.array_equal(x, feats[ids.index(v)]), f"{fmt.name} returned wrong data for {v}"
                if args.cold:
                    evict(fmt.path)
                it = iter(batches * 100)
                calls, elapsed = timed(lambda: fmt.read_batch(next(it)), args.seconds)
                episode_vps = calls * EPISODE / elapsed
                if args.cold:
                    evict(fmt.path)
                loads = [lambda: fmt.load_all(ids)]
                if isinstance(fmt, StoreFormat):  # what the per-video CRC-32 check on every read costs
                    loads.append(lambda: fmt.load_all(ids, check=False))
                (load_s, *unchecked), loaded_bytes = best_load_s(
                    loads, fmt.path, args.cold, passes=6 if len(loads) > 1 else 2
                )
                unchecked_s = unchecked[0] if unchecked else None
                assert loaded_bytes == raw
                if isinstance(fmt, H5Format):
                    fmt.close()
                rows.append(
                    (
                        fmt.name,
                        episode_vps,
                        raw / load_s / 1e9,
                        size,
                        files,
                        write_s,
                        None if unchecked_s is None else unchecked_s / load_s,
                    )
                )
            base = rows[0]
            table = Table(
                title=f"{kind}: {args.videos} videos x {feats[0].shape} float16 ({raw / 1e6:.0f} MB raw), {'cold' if args.cold else 'warm'} page cache"
            )
            for col in (
                "format",
                "episode reads videos/s",
                "x npy",
                "split load GB/s",
                "x npy",
                "x unchecked",
                "disk MB",
                "x npy",
                "files",
                "write s",
            ):
                table.add_column(col, justify="left" if col == "format" else "right")
            for name, vps, gbs, size, files, write_s, vs_unchecked in rows:
                table.add_row(
                    name,
                    f"{vps:,.0f}",
                    f"{vps / base[1]:.2f}",
                    f"{gbs:.2f}",
                    f"{gbs / base[2]:.2f}",
                    "-" if vs_unchecked is None else f"{vs_unchecked:.2f}",
                    f"{size / 1e6:.1f}",
                    f"{size / base[3]:.2f}",
                    f"{files}",
                    f"{write_s:.1f}",
                )
            console.print(table)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=5000)
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    p.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    p.add_argument("--sparsity", type=float, default=0.5, help="fraction of zeros in the post-ReLU 7x7 grid")
    p.add_argument("--seconds", type=float, default=3.0, help="duration of each episode-read measurement")
    p.add_argument("--cold", action="store_true", help="evict files from the page cache before each read pass")
    p.add_argument("--workdir", help="where to write the formats (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the written files")
    run(p.parse_args())


if __name__ == "__main__":
    main()
