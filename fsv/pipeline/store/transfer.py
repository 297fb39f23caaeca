"""``fsv store import`` / ``export``: features people already have, in and out of a store.

Import sources: a folder of per-video ``.npy`` / ``.npz`` files (file stem = video id; an ``.npz``
holds one array, or one per spec field) or an HDF5 file with one dataset per video (or, for
multi-field specs, one group per video holding a dataset per field). Arrays are ``(T, *field
shape)``; when a spec field is the concatenation of streams stored apart (e.g. ``rgb`` and ``flow``
of the published THUMOS14 I3D features), ``--concat rgb,flow`` joins them on the last axis.
Pickled arrays are never loaded (``allow_pickle=False``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from fsv.errors import FsvError, FsvInputError
from fsv.pipeline.manifests.model import Manifest
from fsv.pipeline.spec import step_spans
from fsv.pipeline.store.store import FeatureStore
from fsv.progress import make_progress

log = logging.getLogger(__name__)


@dataclass
class ImportReport:
    imported: int = 0
    skipped_existing: int = 0
    failed: list[str] = field(default_factory=list)
    not_in_manifest: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _folder_items(folder: Path) -> Iterator[tuple[str, str, Callable[[], dict[str, np.ndarray]]]]:
    for p in sorted(folder.rglob("*")):
        if p.suffix == ".npy":
            yield p.relative_to(folder).with_suffix("").as_posix(), str(p), lambda p=p: {"": np.load(p, allow_pickle=False)}
        elif p.suffix == ".npz":
            yield p.relative_to(folder).with_suffix("").as_posix(), str(p), lambda p=p: _npz_arrays(p)


def _h5_items(path: Path, field_names: set[str]) -> Iterator[tuple[str, str, Callable[[], dict[str, np.ndarray]]]]:
    f = h5py.File(path, "r")
    found: list[str] = []
    f.visit(lambda name: found.append(name) if isinstance(f[name], h5py.Dataset) else None)
    groups: dict[str, dict[str, str]] = {}
    for name in found:
        parent, _, leaf = name.rpartition("/")
        if parent and leaf in field_names and len(field_names) > 1:
            groups.setdefault(parent, {})[leaf] = name
        else:
            groups.setdefault(name, {})[""] = name
    try:
        for vid, members in groups.items():
            yield vid, f"{path}:/{vid}", lambda members=members: {k: f[v][()] for k, v in members.items()}
    finally:
        f.close()


def _to_fields(arrays: dict[str, np.ndarray], store: FeatureStore, concat: list[str] | None, where: str) -> dict[str, np.ndarray]:
    names = list(store.spec.fields)
    if concat:
        missing = [k for k in concat if k not in arrays]
        if missing:
            raise FsvInputError(f"{where}: has arrays {sorted(arrays)}, --concat needs {missing}")
        if len(names) != 1:
            raise FsvInputError(f"--concat needs a single-field spec; {store.spec.name!r} has {names}")
        return {names[0]: np.concatenate([np.asarray(arrays[k]) for k in concat], axis=-1)}
    if set(arrays) == set(names):
        return arrays
    if len(arrays) == 1 and len(names) == 1:
        return {names[0]: next(iter(arrays.values()))}
    raise FsvInputError(f"{where}: holds arrays {sorted(k or '<unnamed>' for k in arrays)}, spec {store.spec.name!r} needs fields {names} (or use --concat)")


def import_features(source: str | Path, store: FeatureStore, manifest: Manifest, *, concat: list[str] | None = None, overwrite: bool = False) -> ImportReport:
    """Write ``source``'s arrays into ``store`` as one new part, keyed by the manifest's video ids.

    Shapes are checked against the spec (a wrong feature dimension stops with the file named);
    ids the manifest does not know are listed and skipped; videos already in the store are
    skipped unless ``overwrite``. Step spans come from the spec's sampling and the manifest's
    duration.
    """
    source = Path(source)
    if source.is_dir():
        items = _folder_items(source)
    elif source.suffix in (".h5", ".hdf5") and source.is_file():
        items = _h5_items(source, set(store.spec.fields))
    else:
        raise FsvInputError(f"{source}: expected a folder of .npy/.npz files or an .h5/.hdf5 file")
    records = manifest.by_id()
    report = ImportReport()
    seen: set[str] = set()
    with make_progress() as progress, store.writer(manifest_sha256=manifest.sha256) as writer:
        task = progress.add_task("import", total=None, unit="videos")
        for vid, where, load in items:
            progress.advance(task)
            record = records.get(vid) or records.get(Path(vid).name)
            if record is None:
                report.not_in_manifest.append(vid)
                continue
            seen.add(record.video_id)
            if record.video_id in store.index and not overwrite:
                report.skipped_existing += 1
                continue
            try:
                fields = _to_fields(load(), store, concat, where)
            except (OSError, ValueError) as e:
                if isinstance(e, FsvError):
                    raise
                writer.fail(record.video_id, f"{where}: unreadable ({type(e).__name__}: {e})")
                report.failed.append(record.video_id)
                continue
            first = next(iter(fields.values()))
            n = first.shape[0] if first.ndim else 0
            for name, arr in fields.items():
                want = store.spec.fields[name].shape
                if arr.ndim != len(want) + 1 or tuple(arr.shape[1:]) != want:
                    raise FsvInputError(
                        f"{where}: field {name!r} has shape {arr.shape}, spec {store.spec.name!r} expects (T, {', '.join(map(str, want))}); "
                        "pick the spec that matches these features (--spec)"
                    )
            sampling = dict(store.spec.sampling)
            if sampling["kind"] == "frames" and record.fps:
                sampling["fps"] = record.fps
            writer.write(
                record.video_id,
                fields,
                spans=step_spans(sampling, n, record.duration),
                fps=record.fps,
                num_frames=record.num_frames,
                duration=record.duration,
                meta={"source": where},
            )
            report.imported += 1
    report.missing = [v for v in records if v not in seen and v not in store.index]
    if report.not_in_manifest:
        log.warning("%d arrays in %s match no video of the manifest (first: %s)", len(report.not_in_manifest), source, report.not_in_manifest[:3])
    return report


def export_h5(store: FeatureStore, path: str | Path) -> int:
    """Write every committed video to HDF5: a dataset per video id (a group of datasets per field
    for multi-field specs), with ``span_s``, ``fps``, ``duration`` as attributes and the spec as
    file attributes. Written to a temporary name and renamed, so a failed export leaves nothing."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FsvInputError(f"cannot export to {path}: folder {path.parent} does not exist; create it first")
    tmp = path.with_name(path.name + ".partial")
    fields = list(store.spec.fields)
    ids = store.video_ids()
    require_h5_names(ids)
    try:
        _write_h5(store, tmp, ids, fields)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed export leaves nothing
        raise
    tmp.replace(path)
    return len(ids)


def require_h5_names(ids: list[str]) -> None:
    """Refuse video ids that cannot all be HDF5 names: HDF5 reads ``/`` as a group separator, so
    ``misc`` and ``misc/test`` would be the same node (and ``a//b`` or ``/a`` are not names)."""
    taken = set(ids)
    bad = [v for v in ids if not v or v.startswith("/") or "//" in v or v.endswith("/")]
    clash = [(v, p) for v in ids for p in ("/".join(v.split("/")[:k]) for k in range(1, v.count("/") + 1)) if p in taken]
    if bad or clash:
        examples = [repr(v) for v in bad[:3]] + [f"{p!r} and {v!r}" for v, p in clash[:3]]
        raise FsvInputError(f"{len(bad) + len(clash)} video id(s) cannot be HDF5 names (`/` separates groups), e.g. {', '.join(examples)}; "
                            "export to a folder of .npy files instead, or rename the videos in the manifest")


def _write_h5(store: FeatureStore, tmp: Path, ids: list[str], fields: list[str]) -> None:
    with make_progress() as progress, h5py.File(tmp, "w") as f:
        f.attrs["fsv_spec"] = store.spec.canonical_json()
        f.attrs["fsv_spec_key"] = store.spec.key
        f.attrs["fsv_spec_name"] = store.spec.name
        task = progress.add_task("export", total=len(ids), unit="videos")
        for start in range(0, len(ids), 256):
            batch = ids[start:start + 256]
            packed = {name: store.load(batch, field=name, with_spans=(name == fields[0])) for name in fields}
            spans = packed[fields[0]].spans
            for i, vid in enumerate(batch):
                e = store.index[vid]
                o, n = int(packed[fields[0]].offsets[i]), int(packed[fields[0]].lengths[i])
                if len(fields) == 1:
                    node = f.create_dataset(vid, data=packed[fields[0]].video(i))
                else:
                    node = f.create_group(vid)
                    for name in fields:
                        node.create_dataset(name, data=packed[name].video(i))
                node.attrs["span_s"] = spans[o:o + n]
                for k in ("fps", "duration", "num_frames"):
                    if getattr(e, k) is not None:
                        node.attrs[k] = getattr(e, k)
            progress.advance(task, len(batch))
