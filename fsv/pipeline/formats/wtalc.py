"""``wtalc``: the W-TALC lineage's feature bundle (W-TALC, 3C-Net, CO2-Net, HAM-Net; VQK-Net's lineage).

Layout, as sujoyp/wtalc-pytorch and its successors read it::

    Thumos14reduced-I3D-JOINTFeatures.npy     NumPy object array: one (T, 2048) array per video
    Thumos14reduced-Annotations/
        videoname.npy   |S (N,)   video names, index-aligned with the feature array
        subset.npy      |S (N,)   b"validation" (their training set) / b"test"
        classlist.npy   |S (C,)   the classes, alphabetical
        segments.npy    object (N,)  per video a list of [start_s, end_s]
        labels.npy      object (N,)  per video a list of labels, one per segment
        labels_all.npy  object (N,)  per video its video-level labels
        duration.npy    float64 (N, 1) seconds ((N,) for ActivityNet 1.2)
        original_fps.npy  float64 (N,), optional: the video's frame rate
        Ambiguous_test.txt  optional: "video  start end" per ambiguous segment

Every row of a feature array is RGB I3D (1024) then flow I3D (1024) of 16 frames at 25 fps
without overlap: row ``i`` covers ``[0.64 i, 0.64 (i + 1)]`` s (their evaluation's factor 25/16).
The object arrays are pickles (Python 2 ones, read with ``encoding="bytes"`` by their code): fsv
reads them with :func:`fsv.safe_pickle.arrays.load_npy`, which admits NumPy arrays only. The manifest's
video-level labels are ``labels_all``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fsv.errors import FsvInputError
from fsv.pipeline.formats.base import (
    FeatureFormat,
    Features,
    SourceVideo,
    fresh_dir,
    published_spec,
    require_dir,
    snippet_steps,
    stored_records,
)
from fsv.pipeline.manifests.model import LABEL_SEP, Manifest, Segment, VideoRecord
from fsv.pipeline.spec import FeatureSpec
from fsv.files import atomic_path
from fsv.pipeline.formats.npy_pickle import save_object_array
from fsv.safe_pickle.arrays import load_npy

FEATURES_NAME = re.compile(r"^(?P<prefix>.+)-(?P<kind>[A-Za-z0-9]+)-JOINTFeatures\.npy$")
#: dataset name in fsv <-> the file prefix the lineage uses
PREFIXES = {"thumos14": "Thumos14reduced", "activitynet12": "ActivityNet1.2"}
AMBIGUOUS_FILE = "Ambiguous_test.txt"

SPEC = published_spec(
    "wtalc-i3d-rgbflow-25fps",
    backbone="i3d",
    weights="kinetics400 (W-TALC release)",
    sampling={"kind": "snippets", "fps": 25, "snippet": 16, "stride": 16},
    dim=2048,
    streams=("rgb", "flow"),
    flow={"method": "tvl1"},
    provenance="W-TALC (Paul et al., ECCV 2018) I3D features, sujoyp/wtalc-pytorch; read unchanged by 3C-Net, CO2-Net, HAM-Net and VQK-Net",
)


def annotations_of(features: Path) -> Path:
    """The annotation folder beside a ``<prefix>-<kind>-JOINTFeatures.npy`` file: ``<prefix>-Annotations``."""
    m = FEATURES_NAME.match(features.name)
    if m is None:
        raise FsvInputError(
            f"{features}: not a W-TALC feature file name (<prefix>-I3D-JOINTFeatures.npy); pass --annotations DIR"
        )
    return features.with_name(f"{m['prefix']}-Annotations")


def _strings(a: np.ndarray) -> list[str]:
    return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in np.asarray(a).ravel()]


def _read_arrays(folder: Path) -> dict[str, np.ndarray]:
    require_dir(folder, "the W-TALC annotation arrays (videoname.npy, subset.npy, ...)")
    names = ("videoname", "subset", "classlist", "segments", "labels", "labels_all", "duration")
    missing = [n for n in names if not (folder / f"{n}.npy").is_file()]
    if missing:
        raise FsvInputError(
            f"{folder}: missing {', '.join(f'{n}.npy' for n in missing)} (the W-TALC annotation layout)"
        )
    arrays = {n: load_npy(folder / f"{n}.npy") for n in names}
    if (folder / "original_fps.npy").is_file():
        arrays["original_fps"] = load_npy(folder / "original_fps.npy")
    n = len(arrays["videoname"])
    for name, a in arrays.items():
        if name != "classlist" and len(a) != n:
            raise FsvInputError(
                f"{folder / (name + '.npy')}: {len(a)} entries, videoname.npy has {n}; the arrays must be index-aligned"
            )
    return arrays


def build_manifest(folder: Path) -> Manifest:
    """The manifest of a W-TALC annotation folder: one row per ``videoname`` with its subset,
    ``labels_all`` as its labels, segments, ambiguous segments and duration (and fps when given)."""
    a = _read_arrays(folder)
    classes = _strings(a["classlist"])
    ambiguous: dict[str, list[tuple[float, float]]] = {}
    if (folder / AMBIGUOUS_FILE).is_file():
        for k, line in enumerate((folder / AMBIGUOUS_FILE).read_text(encoding="utf-8").splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                ambiguous.setdefault(parts[0], []).append((float(parts[-2]), float(parts[-1])))
            except (IndexError, ValueError):
                raise FsvInputError(
                    f"{folder / AMBIGUOUS_FILE}:{k}: expected 'video start end', got {line.strip()!r}"
                ) from None
    records = []
    for i, vid in enumerate(_strings(a["videoname"])):
        seg_list, lab_list = list(a["segments"][i]), _strings(np.asarray(list(a["labels"][i]), dtype=object))
        if len(seg_list) != len(lab_list):
            raise FsvInputError(f"{folder}: video {vid} has {len(seg_list)} segments but {len(lab_list)} labels")
        segments = tuple(
            sorted(
                (Segment(float(s), float(e), lab) for (s, e), lab in zip(seg_list, lab_list)),
                key=lambda s: (s.start, s.end),
            )
        )
        subset = _strings(a["subset"][i : i + 1])[0]
        fps = float(a["original_fps"][i]) if "original_fps" in a else None
        records.append(
            VideoRecord(
                video_id=vid,
                path=f"{subset}/{vid}.mp4",
                label=LABEL_SEP.join(_strings(np.asarray(list(a["labels_all"][i]), dtype=object))),
                split=subset,
                fps=fps,
                duration=float(np.asarray(a["duration"][i]).ravel()[0]),
                segments=segments,
                ambiguous=tuple(ambiguous.get(vid, ())),
            )
        )
    prefix = folder.name.removesuffix("-Annotations")
    dataset = next((d for d, p in PREFIXES.items() if p == prefix), prefix.lower())
    return Manifest(dataset, records, classes, "localization")


def read(source: Path, annotations: Path | None, spec: FeatureSpec) -> Iterator[SourceVideo]:
    """The videos of a ``*-JOINTFeatures.npy`` file, named by the ``videoname.npy`` of
    ``annotations`` (default: the ``<prefix>-Annotations`` folder beside it)."""
    if not source.is_file():
        raise FsvInputError(f"{source}: no such file; the wtalc format reads a <prefix>-I3D-JOINTFeatures.npy file")
    folder = annotations if annotations is not None else annotations_of(source)
    names = _strings(load_npy(require_dir(folder, "the W-TALC annotation arrays") / "videoname.npy"))
    features = load_npy(source)
    if features.ndim != 1 or len(features) != len(names):
        raise FsvInputError(
            f"{source}: holds {features.shape} arrays but {folder / 'videoname.npy'} names {len(names)} videos; "
            "the feature file and the annotations must come from the same release"
        )
    for i, vid in enumerate(names):
        yield SourceVideo(
            vid, f"{source}[{i}] ({vid})", lambda record, x=features[i]: Features({"": np.asarray(x, dtype=np.float32)})
        )


def write(store, manifest: Manifest, out: Path) -> list[Path]:
    """``out/<prefix>-I3D-JOINTFeatures.npy`` and ``out/<prefix>-Annotations/`` for the manifest's
    videos that the store holds, in manifest order (index-aligned, as the lineage reads them)."""
    field = store.spec.fields.get("features")
    if store.spec.sampling != SPEC.sampling or field is None or field.shape != (2048,):
        raise FsvInputError(
            f"{store.path}: spec {store.spec.name!r} ({store.spec.sampling}, fields {dict(store.spec.fields)}) is not the W-TALC "
            f"time base {SPEC.sampling} with 2048-d RGB then flow rows, which their code assumes; export it as actionformer "
            "or video-features, whose readers take the time base from their config or timestamps"
        )
    out = fresh_dir(out)
    prefix = PREFIXES.get(manifest.dataset, manifest.dataset)
    records = stored_records(store, manifest)
    features = np.empty(len(records), dtype=object)
    for i, r in enumerate(records):
        features[i] = np.asarray(store.get(r.video_id, field=store.spec.view_field("pooled")), dtype=np.float32)
    ann = out / f"{prefix}-Annotations"
    ann.mkdir()

    def obj(items: list) -> np.ndarray:
        a = np.empty(len(items), dtype=object)
        a[:] = items
        return a

    files = {
        "videoname": np.array([r.video_id.encode() for r in records]),
        "subset": np.array([r.split.encode() for r in records]),
        "classlist": np.array([c.encode() for c in manifest.classes]),
        "segments": obj([[[s.start, s.end] for s in r.segments] for r in records]),
        "labels": obj([[s.label for s in r.segments] for r in records]),
        "labels_all": obj([list(r.labels) for r in records]),
        "duration": np.array([r.duration if r.duration is not None else np.nan for r in records], dtype=np.float64),
    }
    if prefix.startswith("Thumos"):
        files["duration"] = files["duration"][:, None]  # THUMOS's file is (N, 1); their code reads duration[i, 0]
    if all(r.fps for r in records):
        files["original_fps"] = np.array([r.fps for r in records], dtype=np.float64)
    written = [out / f"{prefix}-I3D-JOINTFeatures.npy"]
    save_object_array(written[0], features)
    for name, array in files.items():
        if array.dtype == object:
            save_object_array(ann / f"{name}.npy", array)
        else:
            with atomic_path(ann / f"{name}.npy") as tmp:
                np.save(tmp, array)
        written.append(ann / f"{name}.npy")
    lines = [f"{r.video_id}  {s:g} {e:g}" for r in records for s, e in r.ambiguous]
    if lines:
        (ann / AMBIGUOUS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(ann / AMBIGUOUS_FILE)
    return written


FORMAT = FeatureFormat(
    name="wtalc",
    source="<prefix>-I3D-JOINTFeatures.npy (annotations: the <prefix>-Annotations folder beside it)",
    used_by="W-TALC (sujoyp/wtalc-pytorch), 3C-Net, CO2-Net (harlanhong/MM2021-CO2-Net), HAM-Net, VQK-Net",
    time_base="16 frames at 25 fps per row, no overlap (0.64 s)",
    specs=(SPEC,),
    read=read,
    write=write,
    build_manifest=build_manifest,
    expected_steps=snippet_steps,
)
