"""Writing one part of a feature store: buffered appends, then a journal commit.

Rows are buffered in memory and written to the part's sharded arrays in large blocks; only after a
block's rows are written (Zarr writes each shard file atomically) are the journal lines of its
videos appended and fsynced. A writer killed at any moment therefore leaves every committed video
intact and no video half-visible; its uncommitted videos are simply redone by the next run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from fsv.errors import FsvInputError, SpecMismatchError, storage_error
from fsv.pipeline.store.layout import JOURNAL, PARTS_DIR, SPANS, Entry, append_lines, rows_crc32

if TYPE_CHECKING:
    from fsv.pipeline.store.store import FeatureStore

log = logging.getLogger(__name__)


def _compressors(codec: str, clevel: int, shuffle: str) -> Any:
    if codec == "none":
        return None
    return BloscCodec(cname=codec, clevel=clevel, shuffle=shuffle)


class PartWriter:
    """Appends videos to a new part of ``store``; use as a context manager (or call :meth:`close`).

    ``commit_interval_s`` bounds how much work a crash can lose: buffered videos are committed at
    least that often, and whenever a full shard of rows is buffered.
    """

    def __init__(
        self,
        store: "FeatureStore",
        *,
        shard: str | None = None,
        manifest_sha256: str | None = None,
        commit_interval_s: float = 10.0,
        manifest_changed_from: list[str] | None = None,
    ) -> None:
        self.store = store
        self.spec = store.spec
        self.commit_interval_s = commit_interval_s
        self.part, self._group = store.new_part(shard, manifest_sha256, manifest_changed_from)
        self._journal = store.path / PARTS_DIR / self.part / JOURNAL
        layout = store.layout
        row_bytes = sum(f.row_bytes for f in self.spec.fields.values())
        self._flush_rows = layout.shard_rows(max(f.row_bytes for f in self.spec.fields.values()))
        self._flush_bytes = max(layout.shard_bytes, row_bytes)
        compressors = _compressors(layout.codec, layout.clevel, layout.shuffle)
        self._arrays: dict[str, zarr.Array] = {}
        for name, f in self.spec.fields.items():
            chunk = layout.chunk_rows(f.row_bytes)
            self._arrays[name] = self._group.create_array(
                name,
                shape=(0, *f.shape),
                chunks=(chunk, *f.shape),
                shards=(layout.shard_rows(f.row_bytes), *f.shape),
                dtype=f.dtype,
                compressors=compressors,
                fill_value=0,
            )
        self._arrays[SPANS] = self._group.create_array(
            SPANS,
            shape=(0, 2),
            chunks=(4096, 2),
            shards=(4096 * 256, 2),
            dtype="float64",
            compressors=_compressors("zstd", 3, "shuffle"),
            fill_value=np.nan,
        )
        self._rows = 0
        self._pending: list[tuple[Entry, dict[str, np.ndarray]]] = []
        self._pending_failures: list[Entry] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._last_commit = time.monotonic()
        self.written = 0
        self.failed = 0
        self._closed = False
        self._broken = False

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    # --------------------------------------------------------------------------- public
    def write(
        self,
        video_id: str,
        features: Mapping[str, np.ndarray] | np.ndarray,
        *,
        spans: np.ndarray,
        fps: float | None = None,
        num_frames: int | None = None,
        duration: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Queue one video: ``features[field]`` is ``(T, *field shape)`` (a bare array when the spec
        has one field), ``spans`` is ``(T, 2)`` seconds. Shapes are checked against the spec and
        values cast to its dtype; non-finite values are refused."""
        fields = self._check(video_id, features, spans)
        n = len(spans)
        entry = Entry(
            video_id=video_id,
            status="ok",
            part=self.part,
            length=n,
            fps=fps,
            num_frames=num_frames,
            duration=duration,
            crc32={k: rows_crc32(v) for k, v in fields.items() if k != SPANS},
            time=time.time(),
            meta=meta or {},
        )
        self._pending.append((entry, fields))
        self._pending_rows += n
        self._pending_bytes += sum(v.nbytes for v in fields.values())
        self._maybe_commit()

    def fail(self, video_id: str, reason: str, **meta: Any) -> None:
        """Record that ``video_id`` could not be processed, and why (listed by ``fsv store info``
        and retried by ``--retry-failed``)."""
        self._pending_failures.append(
            Entry(video_id=video_id, status="failed", part=self.part, error=reason, time=time.time(), meta=meta)
        )
        self._maybe_commit()

    def commit(self) -> None:
        """Write buffered rows, then append their journal lines (the commit point). An OS error
        (a full disk) loses only the buffered videos: the part stays as its last commit left it,
        and the writer refuses further work."""
        if self._broken:
            return
        try:
            self._commit()
        except OSError as e:
            self._broken = True
            lost = len(self._pending)
            self._pending, self._pending_failures = [], []
            raise storage_error(
                e, f"writing store {self.store.path}, part {self.part} ({lost} video(s) not committed)"
            ) from None

    def _commit(self) -> None:
        if self._pending:
            n = self._pending_rows
            start = self._rows
            for name, arr in self._arrays.items():
                block = np.concatenate([f[name] for _, f in self._pending], axis=0)
                arr.resize((start + n, *arr.shape[1:]))
                arr[start : start + n] = block
            lines = []
            offset = start
            for entry, _ in self._pending:
                lines.append(replace(entry, offset=offset).to_json())
                offset += entry.length
            lines += [e.to_json() for e in self._pending_failures]
            append_lines(self._journal, lines)
            self._rows += n
            self.written += len(self._pending)
        elif self._pending_failures:
            append_lines(self._journal, [e.to_json() for e in self._pending_failures])
        self.failed += len(self._pending_failures)
        self._pending, self._pending_failures = [], []
        self._pending_rows = self._pending_bytes = 0
        self._last_commit = time.monotonic()

    def close(self) -> None:
        """Commit what is buffered; the part is complete."""
        if not self._closed:
            self.commit()
            self._closed = True
            self.store.refresh()

    # -------------------------------------------------------------------------- helpers
    def _maybe_commit(self) -> None:
        if (
            self._pending_rows >= self._flush_rows
            or self._pending_bytes >= self._flush_bytes
            or time.monotonic() - self._last_commit >= self.commit_interval_s
        ):
            self.commit()

    def _check(
        self, video_id: str, features: Mapping[str, np.ndarray] | np.ndarray, spans: np.ndarray
    ) -> dict[str, np.ndarray]:
        if self._closed:
            raise RuntimeError("writer is closed")
        if not isinstance(features, Mapping):
            if len(self.spec.fields) != 1:
                raise SpecMismatchError(
                    f"{video_id}: spec {self.spec.name!r} has fields {sorted(self.spec.fields)}; pass a dict"
                )
            features = {next(iter(self.spec.fields)): features}
        if set(features) != set(self.spec.fields):
            raise SpecMismatchError(
                f"{video_id}: fields {sorted(features)} do not match spec {self.spec.name!r} fields {sorted(self.spec.fields)}"
            )
        spans = np.asarray(spans, dtype=np.float64)
        if spans.ndim != 2 or spans.shape[1] != 2:
            raise FsvInputError(f"{video_id}: spans must be (T, 2), got {spans.shape}")
        n = len(spans)
        if n == 0:
            raise FsvInputError(f"{video_id}: no feature steps to write")
        out = {SPANS: spans}
        for name, value in features.items():
            fspec = self.spec.fields[name]
            value = np.asarray(value)
            if value.shape != (n, *fspec.shape):
                raise SpecMismatchError(
                    f"{video_id}: field {name!r} has shape {value.shape}, spec {self.spec.name!r} expects ({n}, {', '.join(map(str, fspec.shape))})"
                )
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, with the video and field
                stored = np.ascontiguousarray(value, dtype=fspec.dtype)
            if stored.dtype.kind == "f" and not np.isfinite(stored).all():  # what is stored, after the cast
                raise FsvInputError(
                    f"{video_id}: field {name!r} {_non_finite_reason(value, stored)}; nothing of this video was written"
                )
            out[name] = stored
        return out


def _non_finite_reason(value: np.ndarray, stored: np.ndarray) -> str:
    """Why ``stored`` (``value`` cast to the spec's dtype) holds NaN or infinite values."""
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        return "contains NaN or infinite values"
    limit = float(np.finfo(stored.dtype).max)
    return (
        f"has values up to {float(np.abs(value).max()):.6g}, beyond {stored.dtype}'s largest finite value {limit:.6g}, which would be "
        f"stored as infinity; use a spec with a wider dtype (e.g. float32) or scale the features"
    )
