"""``fsv store import`` / ``export``: features people already have, in and out of a store.

Import sources: a folder of per-video ``.npy`` / ``.npz`` files (file stem = video id; an ``.npz``
holds one array, or one per spec field) or an HDF5 file with one dataset per video (or, for
multi-field specs, one group per video holding a dataset per field). Arrays are ``(T, *field
shape)``; when a spec field is the concatenation of streams stored apart (e.g. ``rgb`` and ``flow``
of the published THUMOS14 I3D features), ``--concat rgb,flow`` joins them on the last axis.
Pickled arrays are never loaded here (``allow_pickle=False``); published layouts by name
(``--format``, :mod:`fsv.pipeline.formats`) read their object arrays through
:mod:`fsv.safe_pickle.arrays`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from fsv.files import atomic_path
from fsv.errors import FsvError, FsvInputError
from fsv.pipeline.formats.base import FeatureFormat, Features, SourceVideo, VideoProblem, require_h5_names
from fsv.pipeline.manifests.model import Manifest, VideoRecord
from fsv.pipeline.spec import FeatureSpec, step_spans
from fsv.pipeline.store.store import FeatureStore
from fsv.progress import make_progress

log = logging.getLogger(__name__)


@dataclass
class ImportReport:
    imported: int = 0
    skipped_existing: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # video id -> why
    not_in_manifest: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


#: a video's step count may differ from its format's time base by this many steps, or this fraction
LENGTH_SLACK_STEPS, LENGTH_SLACK_FRACTION = 3, 0.05


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def folder_videos(folder: Path) -> Iterator[SourceVideo]:
    """A folder of ``.npy`` / ``.npz`` files, one per video (its path without suffix is the key)."""
    for p in sorted(folder.rglob("*")):
        key = p.relative_to(folder).with_suffix("").as_posix()
        if p.suffix == ".npy":
            yield SourceVideo(key, str(p), lambda record, p=p: Features({"": np.load(p, allow_pickle=False)}))
        elif p.suffix == ".npz":
            yield SourceVideo(key, str(p), lambda record, p=p: Features(_npz_arrays(p)))


def h5_videos(path: Path, field_names: set[str]) -> Iterator[SourceVideo]:
    """An HDF5 file with a dataset per video (or, for multi-field specs, a group of field datasets)."""
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
            yield SourceVideo(
                vid,
                f"{path}:/{vid}",
                lambda record, members=members: Features({k: f[v][()] for k, v in members.items()}),
            )
    finally:
        f.close()


def source_videos(
    source: str | Path, spec: FeatureSpec, fmt: FeatureFormat | None = None, annotations: Path | None = None
) -> Iterator[SourceVideo]:
    """The videos of ``source`` for a store of ``spec``: read by ``fmt`` when given, else a plain
    folder or HDF5 file. The source is opened and checked now (its first video found), so a source
    that cannot be read fails before any store or part is written."""
    source = Path(source)
    if fmt is not None:
        items = fmt.read(source, annotations, spec)
    elif annotations is not None:
        raise FsvInputError("--annotations applies to --format imports only")
    elif source.is_dir():
        items = folder_videos(source)
    elif source.suffix in (".h5", ".hdf5") and source.is_file():
        items = h5_videos(source, set(spec.fields))
    else:
        raise FsvInputError(
            f"{source}: expected a folder of .npy/.npz files or an .h5/.hdf5 file (or name its layout with --format)"
        )
    first = next(items, None)
    return itertools.chain([first], items) if first is not None else iter(())


def _to_fields(
    arrays: dict[str, np.ndarray], store: FeatureStore, concat: list[str] | None, where: str
) -> dict[str, np.ndarray]:
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
    raise FsvInputError(
        f"{where}: holds arrays {sorted(k or '<unnamed>' for k in arrays)}, spec {store.spec.name!r} needs fields {names} (or use --concat)"
    )


def _check_shapes(fields: dict[str, np.ndarray], store: FeatureStore, where: str) -> int:
    """The step count of ``fields`` (equal in every field), or an input error naming the file."""
    lengths = set()
    for name, arr in fields.items():
        want = store.spec.fields[name].shape
        if arr.ndim != len(want) + 1 or tuple(arr.shape[1:]) != want:
            raise FsvInputError(
                f"{where}: field {name!r} has shape {arr.shape}, spec {store.spec.name!r} expects (T, {', '.join(map(str, want))}); "
                "pick the spec that matches these features (--spec)"
            )
        lengths.add(arr.shape[0])
    if len(lengths) != 1:
        raise FsvInputError(f"{where}: its fields have different step counts {sorted(lengths)}")
    return lengths.pop()


def _length_problem(n: int, record: VideoRecord, store: FeatureStore, fmt: FeatureFormat | None) -> str | None:
    """Why ``n`` steps disagree with what ``fmt``'s time base implies for the record's duration, or None."""
    expected = fmt.expected_steps(record, store.spec) if fmt is not None else None
    if expected is None or abs(n - expected) <= max(LENGTH_SLACK_STEPS, LENGTH_SLACK_FRACTION * expected):
        return None
    return (
        f"{n} steps, but {record.duration:g} s at the {fmt.name} time base ({fmt.time_base}) gives about {expected:.0f}; "
        "the features and the annotations are of different videos or releases"
    )


def _spans(features: Features, record: VideoRecord, store: FeatureStore, n: int, where: str) -> np.ndarray:
    """The source's own spans, else the spec's sampling at the video's rate where it says so; a
    :class:`VideoProblem` when that rate is needed and the manifest does not know it."""
    if features.spans is not None:
        return np.asarray(features.spans, dtype=np.float64)
    sampling = dict(store.spec.sampling)
    if sampling.get("fps") == "native" and not record.fps:
        raise VideoProblem(
            f"{where}: the manifest has no fps for {record.video_id}, and the spec {store.spec.name!r} counts steps at the "
            "video's own rate; build the manifest with --probe (or give fps in it)"
        )
    if sampling["kind"] == "frames" or sampling.get("fps") == "native":
        sampling["fps"] = record.fps
    return step_spans(sampling, n, record.duration)


def import_features(
    items: Iterable[SourceVideo],
    store: FeatureStore,
    manifest: Manifest,
    *,
    fmt: FeatureFormat | None = None,
    concat: list[str] | None = None,
    overwrite: bool = False,
) -> ImportReport:
    """Write the arrays of ``items`` (:func:`source_videos`; ``fmt`` the published layout they come
    from, if any) into ``store`` as one new part, keyed by the manifest's video ids. Shapes are checked against the spec (a wrong feature
    dimension stops with the file named); a video whose step count disagrees with the format's
    time base for its duration, or whose file is unreadable, is recorded as failed with the reason
    and the others carry on; ids the manifest does not know are listed and skipped; videos already
    in the store are skipped unless ``overwrite``. Step spans are the source's own timestamps
    where it has them, else the spec's sampling over the manifest's fps and duration.
    """
    records = manifest.by_id()
    report = ImportReport()
    seen: set[str] = set()
    with make_progress() as progress, store.writer(manifest_sha256=manifest.sha256) as writer:
        bar_id = progress.add_task("import", total=None, unit="videos")
        for item in items:
            progress.advance(bar_id)
            keys = fmt.video_ids(item.key) if fmt is not None else (item.key, Path(item.key).name)
            record = next((records[k] for k in keys if k in records), None)
            if record is None:
                report.not_in_manifest.append(item.key)
                continue
            seen.add(record.video_id)
            if record.video_id in store.index and not overwrite:
                report.skipped_existing += 1
                continue
            try:
                features = item.load(record)
            except VideoProblem as e:
                report.failed[record.video_id] = str(e)
            except FsvError:
                raise
            except (OSError, ValueError) as e:
                report.failed[record.video_id] = f"{item.where}: unreadable ({type(e).__name__}: {e})"
            else:
                fields = _to_fields(features.arrays, store, concat, item.where)
                n = _check_shapes(fields, store, item.where)
                problem = _length_problem(n, record, store, fmt)
                if problem is not None:
                    report.failed[record.video_id] = f"{item.where}: {problem}"
                else:
                    try:
                        spans = _spans(features, record, store, n, item.where)
                    except VideoProblem as e:
                        report.failed[record.video_id] = str(e)
            if record.video_id in report.failed:
                writer.fail(record.video_id, report.failed[record.video_id])
                continue
            writer.write(
                record.video_id,
                fields,
                spans=spans,
                fps=record.fps,
                num_frames=record.num_frames,
                duration=record.duration,
                meta={"source": item.where},
            )
            report.imported += 1
    report.missing = [v for v in records if v not in seen and v not in store.index]
    if report.not_in_manifest:
        log.warning(
            "%d arrays match no video of the manifest (first: %s)",
            len(report.not_in_manifest),
            report.not_in_manifest[:3],
        )
    return report


def import_into(
    source: str | Path,
    store: str | Path,
    manifest: Manifest,
    *,
    fmt: str | None = None,
    spec: str | None = None,
    annotations: Path | None = None,
    concat: list[str] | None = None,
    overwrite: bool = False,
) -> ImportReport:
    """``fsv store import``: open (or create) ``store`` under ``spec`` (default: format ``fmt``'s
    preset) and :func:`import_features` ``source`` into it."""
    from fsv.pipeline.formats import feature_format
    from fsv.pipeline.spec_presets import get_spec

    layout = feature_format(fmt) if fmt is not None else None
    if spec is None and layout is None:
        raise FsvInputError("--spec is needed without --format (the spec preset or .json file of these features)")
    feature_spec = get_spec(spec) if spec is not None else layout.spec
    if layout is not None and len(layout.specs) > 1 and feature_spec.name not in {s.name for s in layout.specs}:
        raise FsvInputError(
            f"--format {layout.name} reads the specs {', '.join(s.name for s in layout.specs)}; got {feature_spec.name!r}"
        )
    items = source_videos(source, feature_spec, layout, annotations)
    s = FeatureStore.create(store, feature_spec, manifest_sha256=manifest.sha256, dataset=manifest.dataset)
    return import_features(items, s, manifest, fmt=layout, concat=concat, overwrite=overwrite)


def export_store(
    path: str | Path,
    *,
    h5: Path | None = None,
    fmt: str | None = None,
    out: Path | None = None,
    manifest: Manifest | None = None,
) -> list[str]:
    """``fsv store export``: the store at ``path`` to HDF5 file ``h5`` (:func:`export_h5`), or in
    format ``fmt``'s layout under ``out`` (:func:`export_format`); returns the lines to print."""
    if (h5 is None) == (fmt is None) or (fmt is not None) != (out is not None):
        raise FsvInputError("give either --h5 FILE or --format NAME --out PATH")
    store = FeatureStore.open(path)
    if h5 is not None:
        return [f"wrote {export_h5(store, h5)} videos to {h5}"]
    written, notes = export_format(store, fmt, out, manifest)
    return [f"wrote {len(written)} files to {out}", *notes]


def export_format(
    store: FeatureStore, fmt: str, out: str | Path, manifest: Manifest | None
) -> tuple[list[Path], list[str]]:
    """Write ``store`` in format ``fmt``'s layout under ``out``; returns the files written and
    notes for the user (the settings their code needs)."""
    from fsv.pipeline.formats import feature_format

    layout = feature_format(fmt)
    if manifest is None:
        if layout.build_manifest is not None:
            raise FsvInputError(f"--format {fmt} writes the annotations too: pass the store's --manifest")
        manifest = Manifest(store.attrs.get("dataset") or "store", [], [], "classification")
    notes = layout.notes(store.spec)  # refuses a spec the format cannot express before anything is written
    return layout.write(store, manifest, Path(out)), notes


def export_h5(store: FeatureStore, path: str | Path) -> int:
    """Write every committed video to HDF5: a dataset per video id (a group of datasets per field
    for multi-field specs), with ``span_s``, ``fps``, ``duration`` as attributes and the spec as
    file attributes. Written to a temporary name and renamed, so a failed export leaves nothing."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FsvInputError(f"cannot export to {path}: folder {path.parent} does not exist; create it first")
    fields = list(store.spec.fields)
    ids = store.video_ids()
    require_h5_names(ids)
    with atomic_path(path) as tmp:  # a failed export leaves nothing
        _write_h5(store, tmp, ids, fields)
    return len(ids)


def _write_h5(store: FeatureStore, tmp: Path, ids: list[str], fields: list[str]) -> None:
    with make_progress() as progress, h5py.File(tmp, "w") as f:
        f.attrs["fsv_spec"] = store.spec.canonical_json()
        f.attrs["fsv_spec_key"] = store.spec.key
        f.attrs["fsv_spec_name"] = store.spec.name
        bar_id = progress.add_task("export", total=len(ids), unit="videos")
        for start in range(0, len(ids), 256):
            batch = ids[start : start + 256]
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
                node.attrs["span_s"] = spans[o : o + n]
                for k in ("fps", "duration", "num_frames"):
                    if getattr(e, k) is not None:
                        node.attrs[k] = getattr(e, k)
            progress.advance(bar_id, len(batch))
