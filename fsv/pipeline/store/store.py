"""The feature store: one Zarr store per (dataset, feature spec), written in parts, read as one.

>>> store = FeatureStore.create("thumos14-i3d.zarr", spec, manifest_sha256=m.sha256, dataset="thumos14")
>>> with store.writer(shard="0/4") as w:
...     w.write("video_test_0000004", {"features": x}, spans=spans, fps=30.0)
>>> FeatureStore.open("thumos14-i3d.zarr").get("video_test_0000004")     # (T, 2048)

See :mod:`fsv.pipeline.store.layout` for the files and the commit protocol.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from fsv import __version__
from fsv.errors import FsvInputError, SpecMismatchError, StoreCorruptError, storage_error
from fsv.pipeline.spec import FeatureSpec
from fsv.pipeline.store.shards import ShardedRows, run_sliced
from fsv.pipeline.store.layout import (
    ATTRS_KEY,
    FORMAT_VERSION,
    JOURNAL,
    PARTS_DIR,
    SPANS,
    Entry,
    JournalRead,
    StoreLayout,
    read_journal,
    rows_crc32,
)

if TYPE_CHECKING:
    import dask.array
    import xarray

    from fsv.pipeline.manifests import Manifest
    from fsv.pipeline.store.writer import PartWriter

log = logging.getLogger(__name__)


@dataclass
class PackedFeatures:
    """Videos' features packed back to back in one array.

    ``data``: ``(ΣT, *field shape)``; video ``i`` is ``data[offsets[i] : offsets[i] + lengths[i]]``,
    its step spans ``spans[offsets[i] : ...]`` (``(ΣT, 2)`` seconds).
    """

    video_ids: list[str]
    offsets: np.ndarray
    lengths: np.ndarray
    data: np.ndarray
    spans: np.ndarray

    def __len__(self) -> int:
        return len(self.video_ids)

    def video(self, i: int) -> np.ndarray:
        """Features of the ``i``-th video, ``(T, *field shape)`` (a view)."""
        o = int(self.offsets[i])
        return self.data[o : o + int(self.lengths[i])]


class FeatureStore:
    """A feature store on a local or cluster file system (see module docstring)."""

    def __init__(self, path: Path, attrs: dict[str, Any]) -> None:
        self.path = path
        self.attrs = attrs
        self.spec = FeatureSpec.from_dict(attrs["spec"])
        self.layout = StoreLayout.from_dict(attrs.get("layout", {}))
        self._index: dict[str, Entry] | None = None
        self._failures: dict[str, Entry] | None = None
        self._journals: dict[str, JournalRead] = {}
        self._arrays: dict[tuple[str, str], zarr.Array] = {}
        self._fast: dict[tuple[str, str], ShardedRows | None] = {}

    # ------------------------------------------------------------------------ create / open
    @classmethod
    def create(
        cls,
        path: str | Path,
        spec: FeatureSpec,
        *,
        manifest_sha256: str | None = None,
        dataset: str | None = None,
        layout: StoreLayout | None = None,
    ) -> "FeatureStore":
        """Create the store, or open it when it exists with the same spec.

        Safe when many processes call it at once: the store is built in a temporary folder and
        renamed into place, so exactly one wins and the others open the winner's. An existing store
        of another spec raises :class:`SpecMismatchError`.
        """
        path = Path(path)
        if (path / "zarr.json").exists():
            store = cls.open(path)
            store.require_spec(spec)
            return store
        layout = layout or StoreLayout()
        attrs = {
            "format": FORMAT_VERSION,
            "spec": spec.to_dict(),
            "spec_key": spec.key,
            "manifest_sha256": manifest_sha256,
            "dataset": dataset,
            "fsv_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "layout": layout.to_dict(),
        }
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.creating")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            root = zarr.open_group(LocalStore(tmp), mode="w-", attributes={ATTRS_KEY: attrs})
            root.create_group(PARTS_DIR)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise storage_error(e, f"creating store {path}") from None
        try:
            os.rename(tmp, path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not (path / "zarr.json").exists():
                raise FsvInputError(f"{path} exists and is not a feature store; choose another --store path") from None
        store = cls.open(path)
        store.require_spec(spec)
        return store

    @classmethod
    def open(cls, path: str | Path) -> "FeatureStore":
        """Open an existing store; a clear error when ``path`` is not one."""
        path = Path(path)
        meta = path / "zarr.json"
        if not meta.is_file():
            raise FsvInputError(
                f"{path} is not a feature store (no zarr.json); create it with `fsv extract` or `fsv store import`"
            )
        try:
            attrs = json.loads(meta.read_text())["attributes"][ATTRS_KEY]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise FsvInputError(f"{meta}: not an fsv feature store ({type(e).__name__}: {e})") from e
        if attrs.get("format", 0) > FORMAT_VERSION:
            raise FsvInputError(f"{path} was written by a newer fsv (store format {attrs['format']}); upgrade fsv")
        return cls(path, attrs)

    def require_spec(self, spec: FeatureSpec) -> None:
        """Raise :class:`SpecMismatchError` unless ``spec`` has this store's key."""
        if spec.key != self.spec.key:
            raise SpecMismatchError(
                f"store {self.path} holds features of spec {self.spec.name!r} (key {self.spec.key}); "
                f"refusing features of spec {spec.name!r} (key {spec.key}). Differences: "
                f"{self.spec.describe_difference(spec)}. Use another --store for this spec."
            )

    # ------------------------------------------------------------------------------- writing
    def writer(
        self,
        *,
        shard: str | None = None,
        manifest_sha256: str | None = None,
        commit_interval_s: float = 10.0,
        manifest_changed_from: list[str] | None = None,
    ) -> "PartWriter":
        """A writer of a new part of this store (one per process or job); ``manifest_changed_from``
        records the store's earlier manifest hashes when the user allowed another manifest."""
        from fsv.pipeline.store.writer import PartWriter

        return PartWriter(
            self,
            shard=shard,
            manifest_sha256=manifest_sha256,
            commit_interval_s=commit_interval_s,
            manifest_changed_from=manifest_changed_from,
        )

    def manifest_hashes(self) -> list[str]:
        """SHA-256 of every manifest the store was created or extended under (creation first)."""
        hashes = [self.attrs.get("manifest_sha256")] + [
            self.part_meta(p).get("manifest_sha256") for p in self.part_names()
        ]
        return [h for h in dict.fromkeys(hashes) if h]

    def require_manifest(self, manifest: "Manifest", *, allow_change: bool = False) -> list[str] | None:
        """Check that this store may be extended under ``manifest``; returns the store's earlier
        manifest hashes to record in the new part when the manifest differs (None when it does not).

        A manifest that only adds or drops videos is accepted. One that names another file for a
        committed video is refused unless ``allow_change`` (committed videos are kept as they are,
        never re-extracted), as is one whose committed videos predate recorded paths."""
        known = self.manifest_hashes()
        if not known or manifest.sha256 in known:
            return None
        by_id = manifest.by_id()
        committed = [e for e in self.index.values() if e.video_id in by_id]
        moved = [
            f"{e.video_id} ({e.meta['path']} -> {by_id[e.video_id].path})"
            for e in committed
            if "path" in e.meta and e.meta["path"] != by_id[e.video_id].path
        ]
        unknown = sum("path" not in e.meta for e in committed)
        if not moved and not unknown:
            log.info("store %s: manifest %s adds or drops videos only; extending the store", self.path, manifest.path)
            return known
        if allow_change:
            log.warning(
                "store %s: extending it under manifest %s (sha256 %s...), not the one it was made under (%s...); "
                "committed videos are kept as they are",
                self.path,
                manifest.path,
                manifest.sha256[:12],
                ", ".join(h[:12] for h in known),
            )
            return known
        what = (
            f"{len(moved)} committed video(s) now name another file, e.g. {', '.join(moved[:3])}"
            if moved
            else f"{unknown} committed video(s) were written without their file recorded, so fsv cannot tell whether they changed"
        )
        raise FsvInputError(
            f"store {self.path} was made under another manifest (sha256 {', '.join(h[:12] for h in known)}...) than {manifest.path} "
            f"(sha256 {manifest.sha256[:12]}...): {what}. Committed videos are skipped, not re-extracted. Use the store's manifest, "
            "a new --store, or --allow-manifest-change to keep the committed videos and extract only the missing ones (recorded in the store)"
        )

    def part_meta(self, part: str) -> dict[str, Any]:
        """A part's attributes (shard, host, pid, started, manifest_sha256, fsv_version...)."""
        return json.loads((self.path / PARTS_DIR / part / "zarr.json").read_text()).get("attributes", {})

    def new_part(
        self, shard: str | None, manifest_sha256: str | None, manifest_changed_from: list[str] | None = None
    ) -> tuple[str, zarr.Group]:
        """Create an empty part group with a unique name; returns (name, group)."""
        now = time.time()  # microseconds in the stamp: a repair part sorts after the part it supersedes
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}"
        label = (shard or "all").replace("/", "of")
        name = f"{label}-{stamp}-{uuid.uuid4().hex[:8]}"
        attrs = {
            "shard": shard,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "manifest_sha256": manifest_sha256,
            "fsv_version": __version__,
        }
        if manifest_changed_from:
            attrs["manifest_changed_from"] = manifest_changed_from
        try:
            group = zarr.open_group(LocalStore(self.path / PARTS_DIR / name), mode="w-", attributes=attrs)
        except OSError as e:
            raise storage_error(e, f"writing store {self.path}") from None
        return name, group

    # ------------------------------------------------------------------------------- index
    def part_names(self) -> list[str]:
        """Parts in creation order (their names start with the shard label, then a UTC stamp)."""
        folder = self.path / PARTS_DIR
        names = (
            [p.name for p in folder.iterdir() if p.is_dir() and (p / "zarr.json").exists()] if folder.is_dir() else []
        )
        return sorted(names, key=lambda n: (n.split("-")[-2], n))

    def refresh(self) -> None:
        """Forget the cached index and arrays (other writers may have committed since)."""
        self._index = self._failures = None
        self._journals = {}
        self._arrays = {}
        self._fast = {}

    def journals(self) -> dict[str, JournalRead]:
        """Every part's journal, parsed once. The cyclic garbage collector is paused meanwhile:
        hundreds of thousands of new entries would make it rescan the heap over and over (half
        the open time of a 220,847-video store, ``bench/store_scale.py``)."""
        if not self._journals:
            enabled = gc.isenabled()
            gc.disable()
            try:
                self._journals = {p: read_journal(self.path / PARTS_DIR / p / JOURNAL, p) for p in self.part_names()}
            finally:
                if enabled:
                    gc.enable()
        return self._journals

    def _build_index(self) -> None:
        index: dict[str, Entry] = {}
        failures: dict[str, Entry] = {}
        for journal in self.journals().values():
            for e in journal.entries:
                if e.status == "ok":
                    index[e.video_id] = e  # the latest commit wins
                    failures.pop(e.video_id, None)
                elif e.video_id not in index:
                    failures[e.video_id] = e
        self._index, self._failures = index, failures

    @property
    def index(self) -> dict[str, Entry]:
        """Committed videos by id (the latest ``ok`` commit of each)."""
        if self._index is None:
            self._build_index()
        assert self._index is not None
        return self._index

    @property
    def failures(self) -> dict[str, Entry]:
        """Videos whose latest attempts failed and that have no ``ok`` commit, with the reason."""
        if self._failures is None:
            self._build_index()
        assert self._failures is not None
        return self._failures

    def video_ids(self) -> list[str]:
        return list(self.index)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.index

    def __len__(self) -> int:
        return len(self.index)

    # ------------------------------------------------------------------------------- reads
    def array(self, part: str, name: str) -> zarr.Array:
        """The Zarr array ``name`` (a field or ``span_s``) of ``part``."""
        key = (part, name)
        arr = self._arrays.get(key)
        if arr is None:
            arr = zarr.open_array(LocalStore(self.path / PARTS_DIR / part / name), mode="r")
            self._arrays[key] = arr
        return arr

    def _field(self, field: str | None) -> str:
        if field is None:
            if len(self.spec.fields) != 1:
                raise FsvInputError(f"store {self.path} has fields {sorted(self.spec.fields)}; name one")
            return next(iter(self.spec.fields))
        if field not in self.spec.fields and field != SPANS:
            raise FsvInputError(f"store {self.path} has no field {field!r}; it has {sorted(self.spec.fields)}")
        return field

    def entry(self, video_id: str) -> Entry:
        e = self.index.get(video_id)
        if e is None:
            why = self.failures.get(video_id)
            if why is not None:
                raise KeyError(f"{video_id!r} failed extraction ({why.error}); retry with --retry-failed")
            raise KeyError(f"{video_id!r} is not in store {self.path}")
        return e

    def get(self, video_id: str, field: str | None = None) -> np.ndarray:
        """One video's features, ``(T, *field shape)``, checked against its committed CRC-32."""
        e = self.entry(video_id)
        name = self._field(field)
        data = self.read_range(e.part, name, e.offset, e.offset + e.length)
        if self.damaged_rows([e], [0], data, name):
            raise StoreCorruptError(self._damage_message([e], name))
        return data

    def spans(self, video_id: str) -> np.ndarray:
        """Time span of each of the video's steps, ``(T, 2)`` seconds."""
        e = self.entry(video_id)
        return self.read_range(e.part, SPANS, e.offset, e.offset + e.length)

    def get_many(self, video_ids: Sequence[str], field: str | None = None) -> list[np.ndarray]:
        """Several videos' features in one batched read (rows grouped per part, chunks fetched
        concurrently); ``[(T_i, *field shape)]`` in the order asked."""
        packed = self.load(video_ids, field=field, with_spans=False)
        return [packed.video(i) for i in range(len(packed))]

    def load(
        self,
        video_ids: Iterable[str] | None = None,
        *,
        field: str | None = None,
        mmap_path: str | Path | None = None,
        with_spans: bool = True,
        check: bool = True,
    ) -> PackedFeatures:
        """Pull many videos (default: all) into one array in a single pass.

        Each part's rows are read with as few Zarr calls as possible (whole committed ranges when
        most rows are wanted) and decompressed in parallel. With ``mmap_path`` the result is written
        to a ``.npy`` file and returned memory-mapped, so later runs can ``np.load(mmap_mode="r")`` it.
        Every video is checked against its committed CRC-32 (``check``; off only to measure what
        the check costs), so a missing or damaged file raises :class:`StoreCorruptError` instead of
        returning wrong features; the check runs on each chunk as it is decoded, while it is in
        cache.
        """
        name = self._field(field)
        ids = list(self.index) if video_ids is None else list(video_ids)
        entries = [self.entry(v) for v in ids]
        lengths = np.array([e.length for e in entries], dtype=np.int64)
        offsets = np.zeros(len(entries), dtype=np.int64)
        if len(entries):
            np.cumsum(lengths[:-1], out=offsets[1:])
        total = int(lengths.sum())
        fspec = self.spec.fields[name]
        shape = (total, *fspec.shape)
        if mmap_path is not None:
            data = np.lib.format.open_memmap(Path(mmap_path), mode="w+", dtype=np.dtype(fspec.dtype), shape=shape)
        else:
            data = np.empty(shape, dtype=np.dtype(fspec.dtype))
        spans = np.empty((total, 2), dtype=np.float64) if with_spans else np.empty((0, 2))
        names = [name, SPANS] if with_spans else [name]
        outputs = {name: data, SPANS: spans}
        damaged = self._gather(entries, offsets, names, outputs, check=name if check else None)
        if damaged:
            raise StoreCorruptError(self._damage_message(damaged, name))
        if mmap_path is not None:
            data.flush()
        return PackedFeatures(ids, offsets, lengths, data, spans)

    def damaged_rows(
        self, entries: Sequence[Entry], offsets: Sequence[int], data: np.ndarray, name: str
    ) -> list[Entry]:
        """The entries whose rows of field ``name`` in ``data`` (``data[offsets[i] : offsets[i] +
        length]``) lack the CRC-32 committed in their journal; computed on the shard pool's
        threads (the CRC releases the GIL)."""

        def damaged(i: int) -> bool:
            e, o = entries[i], int(offsets[i])
            want = e.crc32.get(name)
            return want is not None and rows_crc32(data[o : o + e.length]) != want

        return [entries[i] for i, hit in enumerate(run_sliced(damaged, range(len(entries)))) if hit]

    def _damage_message(self, damaged: list[Entry], name: str) -> str:
        e = damaged[0]
        files = self.row_files(e.part, name, e.offset, e.offset + e.length)
        missing = [f for f in files if not f.exists()]
        what = (
            f"its file(s) {', '.join(str(f) for f in missing)} are missing"
            if missing
            else f"its rows in {', '.join(str(f) for f in files)} do not match the committed checksum"
        )
        more = f" (and {len(damaged) - 1} more video(s))" if len(damaged) > 1 else ""
        return (
            f"store {self.path}, part {e.part}, video {e.video_id!r}, field {name!r}: {what}{more}; the store is damaged. "
            f"Run `fsv store verify {self.path}` for every damaged video, then repair them: the same `fsv extract` command "
            "with --redo-corrupt (imported features: `fsv store import ... --overwrite`)"
        )

    def row_files(self, part: str, name: str, lo: int, hi: int) -> list[Path]:
        """The shard files that hold rows ``[lo, hi)`` of a part's array ``name``."""
        fast = self.rows_reader(part, name)
        folder = self.path / PARTS_DIR / part / name
        if fast is None:
            return [folder]
        rows = fast.meta.shard_rows
        return [fast.shard_path(k) for k in range(lo // rows, (max(hi, lo + 1) - 1) // rows + 1)]

    def rows_reader(self, part: str, name: str) -> ShardedRows | None:
        """The fast reader of a part's array (None when its layout needs zarr-python)."""
        key = (part, name)
        if key not in self._fast:
            self._fast[key] = ShardedRows.open(self.path / PARTS_DIR / part / name)
        return self._fast[key]

    def read_range(self, part: str, name: str, lo: int, hi: int, *, parallel: bool = True) -> np.ndarray:
        """Rows ``[lo, hi)`` of a part's array ``name``."""
        fast = self.rows_reader(part, name)
        if fast is not None:
            return fast.read(lo, hi, parallel=parallel)
        return np.asarray(self.array(part, name)[lo:hi])

    def _gather(
        self,
        entries: list[Entry],
        offsets: np.ndarray,
        names: list[str],
        outputs: dict[str, np.ndarray],
        check: str | None = None,
    ) -> list[Entry]:
        """Copy each entry's rows of arrays ``names`` to ``outputs[name][offsets[i]:...]``; with
        ``check``, return the entries whose rows of that field fail their committed CRC-32.

        Videos adjacent in both the part and the output merge into one run; each part's runs are
        fetched together (parts concurrently), and every chunk is decoded once on the thread pool,
        straight into all the outputs that want rows of it. A video's CRC is computed on the
        decoded chunk when the chunk holds all its rows, otherwise on the output afterwards.
        """
        runs: list[tuple[str, int, int, int]] = []  # part, src lo, src hi, dst lo
        for e, dst in zip(entries, offsets):
            dst = int(dst)
            if (
                runs
                and runs[-1][0] == e.part
                and runs[-1][2] == e.offset
                and runs[-1][3] + runs[-1][2] - runs[-1][1] == dst
            ):
                part, lo, _, d = runs[-1]
                runs[-1] = (part, lo, e.offset + e.length, d)
            else:
                runs.append((e.part, e.offset, e.offset + e.length, dst))
        by_part: dict[str, list[tuple[int, int, int]]] = {}
        for run in runs:
            by_part.setdefault(run[0], []).append(run[1:])
        at: dict[tuple[str, int], int] = {}  # (part, first row) -> index of the entry to check
        checks: dict[str, list[tuple[int, int, int]]] = {}
        if check is not None:
            for i, e in enumerate(entries):
                want = e.crc32.get(check)
                if want is not None:
                    at[(e.part, e.offset)] = i
                    checks.setdefault(e.part, []).append((e.offset, e.offset + e.length, want))
        failed: list[int] = []
        for name in names:
            out = outputs[name]
            own = name == check

            def plan(
                part: str, name: str = name, out: np.ndarray = out, own: bool = own
            ) -> tuple[list, list[tuple[int, int, int]]]:
                wanted = checks.get(part, []) if own else []
                fast = self.rows_reader(part, name)
                if fast is None:
                    for lo, hi, d in by_part[part]:
                        out[d : d + hi - lo] = self.array(part, name)[lo:hi]
                    return [], [(part, *c) for c in wanted]
                tasks, rest = fast.plan([(lo, hi, out[d : d + hi - lo]) for lo, hi, d in by_part[part]], wanted)
                return [(fast, part, t) for t in tasks], [(part, *c) for c in rest]

            planned = run_sliced(plan, list(by_part))
            tasks = [t for ts, _ in planned for t in ts]
            fails = run_sliced(lambda ft: [(ft[1], *c) for c in ft[0].decode(ft[2])], tasks)
            if own:
                failed += [at[(part, a)] for fs in fails for part, a, _, _ in fs]
                rest = [at[(part, a)] for _, r in planned for part, a, _, _ in r]
                late = self.damaged_rows([entries[i] for i in rest], [offsets[i] for i in rest], out, name)
                failed += [at[(e.part, e.offset)] for e in late]
        return [entries[i] for i in sorted(set(failed))]

    # ------------------------------------------------------------------------------ views
    def to_dask(self, field: str | None = None) -> tuple["dask.array.Array", list[str], np.ndarray, np.ndarray]:
        """A lazy ``(ΣT, *field shape)`` dask array over every committed video, with the video ids,
        offsets and lengths that slice it (videos ordered by part, then by position in the part)."""
        import dask.array as da

        name = self._field(field)
        parts = {p: i for i, p in enumerate(self.part_names())}
        entries = sorted(self.index.values(), key=lambda e: (parts[e.part], e.offset))
        ids = [e.video_id for e in entries]
        lengths = np.array([e.length for e in entries], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if ids else np.zeros(0, np.int64)
        pieces = []
        for part in dict.fromkeys(e.part for e in entries):
            rows = np.concatenate([np.arange(e.offset, e.offset + e.length) for e in entries if e.part == part])
            pieces.append(da.from_zarr(self.array(part, name))[rows])
        shape = self.spec.fields[name].shape if name != SPANS else (2,)
        arr = da.concatenate(pieces, axis=0) if pieces else da.zeros((0, *shape))
        return arr, ids, offsets, lengths

    def to_xarray(self, field: str | None = None) -> "xarray.Dataset":
        """An xarray view: variable ``field`` over dims ``(step, d0, ...)`` with per-step coordinates
        ``video_id``, ``step_index``, ``t_start`` and ``t_end``."""
        import xarray as xr

        name = self._field(field)
        arr, ids, offsets, lengths = self.to_dask(name)
        spans = self.load(ids, field=name).spans if ids else np.zeros((0, 2))
        vid = np.repeat(np.array(ids, dtype=object), lengths)
        step = np.concatenate([np.arange(n) for n in lengths]) if ids else np.zeros(0, np.int64)
        dims = ("step", *[f"{name}_d{i}" for i in range(arr.ndim - 1)])
        return xr.Dataset(
            {name: (dims, arr)},
            coords={
                "video_id": ("step", vid),
                "step_index": ("step", step),
                "t_start": ("step", spans[:, 0]),
                "t_end": ("step", spans[:, 1]),
            },
            attrs={"spec": self.spec.canonical_json(), "spec_key": self.spec.key, "store": str(self.path)},
        )

    # ------------------------------------------------------------------------------- info
    #: the entries of :meth:`info` that ``fsv store info`` and the store's report page show
    SUMMARY_KEYS = (
        "dataset",
        "spec_name",
        "spec_key",
        "manifest_sha256",
        "fsv_version",
        "created",
        "videos",
        "failed",
        "steps",
        "parts",
        "files",
        "bytes_on_disk",
    )

    def info(self) -> dict[str, Any]:
        """A summary: spec, key, manifest hash, counts, parts, files and bytes on disk."""
        files = 0
        size = 0
        for dirpath, _, names in os.walk(self.path):
            files += len(names)
            size += sum(os.path.getsize(os.path.join(dirpath, n)) for n in names)
        steps = sum(e.length for e in self.index.values())
        part_hashes = set()
        for p in self.part_names():
            meta = self.part_meta(p)
            if meta.get("manifest_sha256"):
                part_hashes.add(meta["manifest_sha256"])
        return {
            "path": str(self.path),
            "dataset": self.attrs.get("dataset"),
            "spec_name": self.spec.name,
            "spec_key": self.spec.key,
            "spec": self.spec.to_dict(),
            "manifest_sha256": self.attrs.get("manifest_sha256"),
            "part_manifest_sha256": sorted(part_hashes),
            "fsv_version": self.attrs.get("fsv_version"),
            "created": self.attrs.get("created"),
            "layout": self.layout.to_dict(),
            "videos": len(self.index),
            "failed": len(self.failures),
            "steps": steps,
            "parts": len(self.part_names()),
            "files": files,
            "bytes_on_disk": size,
        }
