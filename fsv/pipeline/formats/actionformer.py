"""``actionformer``: ActionFormer / TriDet THUMOS14 I3D features (happyharrycn/actionformer_release).

Layout, as ``libs/datasets/thumos14.py`` reads it::

    i3d_features/<video_id>.npy      (T, 2048) float: RGB I3D then flow I3D
    annotations/thumos14.json        {"database": {video_id: {"subset": "Validation" | "Test",
                                      "duration": s, "fps": f, "annotations": [{"label", "segment": [s, e],
                                      "label_id"}, ...]}}}

Time base (their config: ``feat_stride: 4``, ``num_frames: 16``, fps from each video's entry):
row ``i`` is the 16-frame clip starting at frame ``4 i`` of the video at its own rate, spanning
``[4 i / fps, (4 i + 16) / fps]`` s; its centre ``(4 i + 8) / fps`` is where their decoder puts it
(``(i · stride + 0.5 · num_frames) / fps``). The stride is not the snippet length: spans overlap.
"""

from __future__ import annotations

import json
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
from fsv.pipeline.manifests.model import Manifest
from fsv.pipeline.spec import FeatureSpec

ANNOTATION_FILE = "thumos14.json"

SPEC = published_spec(
    "actionformer-i3d-rgbflow-stride4",
    backbone="i3d",
    weights="kinetics400 (ActionFormer release)",
    sampling={"kind": "snippets", "fps": "native", "snippet": 16, "stride": 4},
    dim=2048,
    streams=("rgb", "flow"),
    flow={"method": "tvl1"},
    provenance="ActionFormer (Zhang et al., ECCV 2022) THUMOS14 I3D features, happyharrycn/actionformer_release; also read by TriDet",
)


def build_manifest(path: Path) -> Manifest:
    """The THUMOS14 manifest of ActionFormer's ``thumos14.json`` (subsets lower-cased to fsv's
    ``validation`` / ``test``)."""
    from fsv.pipeline.manifests.builders.thumos14 import build_thumos14

    return build_thumos14(annotations=path)


def read(source: Path, annotations: Path | None, spec: FeatureSpec) -> Iterator[SourceVideo]:
    """The ``<video_id>.npy`` files of folder ``source`` (each ``(T, 2048)``)."""
    require_dir(source, "ActionFormer's per-video <video_id>.npy feature files")
    for p in sorted(source.glob("*.npy")):
        yield SourceVideo(p.stem, str(p), lambda record, p=p: Features({"": np.load(p, allow_pickle=False)}))


def write(store, manifest: Manifest, out: Path) -> list[Path]:
    """``out/i3d_features/<video_id>.npy`` (float32, ``(T, D)``) and ``out/annotations/thumos14.json``
    for the manifest's videos that the store holds. Their config must state the store's time base
    (:func:`config_for`), printed by ``fsv store export``."""
    out = fresh_dir(out)
    records = stored_records(store, manifest)
    feats, ann = out / "i3d_features", out / "annotations"
    feats.mkdir()
    ann.mkdir()
    written = []
    for r in records:
        written.append(feats / f"{r.video_id}.npy")
        written[-1].parent.mkdir(parents=True, exist_ok=True)  # ids with "/" keep their folders
        np.save(written[-1], np.asarray(store.get(r.video_id, field=store.spec.view_field("pooled")), dtype=np.float32))
    label_id = {c: k for k, c in enumerate(manifest.classes)}
    database = {}
    for r in records:
        fps = r.fps or store.entry(r.video_id).fps
        database[r.video_id] = {
            "subset": r.split.capitalize(),
            "duration": r.duration,
            "fps": fps,
            "annotations": [
                {
                    "label": s.label,
                    "segment": [s.start, s.end],
                    **({"segment(frames)": [s.start * fps, s.end * fps]} if fps else {}),
                    "label_id": label_id[s.label],
                }
                for s in r.segments
            ],
        }
    written.append(ann / ANNOTATION_FILE)
    written[-1].write_text(json.dumps({"version": f"{manifest.dataset}-fsv", "database": database}), encoding="utf-8")
    return written


def config_notes(spec: FeatureSpec) -> list[str]:
    """The dataset-config lines of ActionFormer that read an export of a ``spec`` store."""
    return [
        "set in the ActionFormer dataset config:",
        *(f"  {k}: {'null' if v is None else v}" for k, v in config_for(spec).items()),
    ]


def config_for(spec: FeatureSpec) -> dict[str, object]:
    """The ActionFormer dataset-config values that read a store of ``spec`` right (``feat_stride``,
    ``num_frames``, ``default_fps``: None means each video's fps from the JSON, ``input_dim``)."""
    s = spec.sampling
    if s.get("kind") != "snippets":
        raise FsvInputError(
            f"spec {spec.name!r} samples {s.get('kind')}, not snippets: ActionFormer reads snippet features only"
        )
    fps = None if s.get("fps") == "native" else float(s["fps"])
    return {
        "feat_stride": int(s["stride"]),
        "num_frames": int(s["snippet"]),
        "default_fps": fps,
        "input_dim": int(np.prod(spec.fields[spec.view_field("pooled")].shape)),
    }


FORMAT = FeatureFormat(
    name="actionformer",
    source="folder of <video_id>.npy (annotations: thumos14.json)",
    used_by="ActionFormer (happyharrycn/actionformer_release), TriDet",
    time_base="16 frames every 4 frames at the video's fps (overlapping)",
    specs=(SPEC,),
    read=read,
    write=write,
    build_manifest=build_manifest,
    expected_steps=snippet_steps,
    notes=config_notes,
)
