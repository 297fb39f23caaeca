"""``videomaev2-tad``: OpenGVLab's VideoMAE V2-g features for temporal action detection
(``th14_mae_g_16_4`` for THUMOS14, ``fineaction_mae_g`` for FineAction; VideoMAEv2 ``docs/TAD.md``).

Layout, as ``extract_tad_feature.py`` writes it and ActionFormer / TriDet / OpenTAD read it::

    <video stem>.npy      (T, 1408) float32: fc_norm(mean of all tokens) of each window

Time base: every native frame, 16-frame windows starting at frames ``range(0, N - 15, 4)`` (THUMOS14;
FineAction: every 16), row ``i`` spanning ``[4 i / fps, (4 i + 16) / fps]`` s at the video's own
rate; the ActionFormer configs that read it say ``feat_stride: 4``, ``num_frames: 16``. The same
features as ``fsv extract --backbone videomaev2-g`` (``--recipe thumos14`` / ``fineaction``) computes.
"""

from __future__ import annotations

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
)
from fsv.pipeline.manifests.model import Manifest
from fsv.pipeline.spec import FeatureSpec

PROVENANCE = "VideoMAE V2-g (Wang et al., CVPR 2023) TAD features, OpenGVLab/VideoMAEv2 extract_tad_feature.py"
SPECS = (
    published_spec(
        "videomaev2-tad-th14-mae-g-16-4",
        backbone="videomaev2-g",
        weights="vit_g_hybrid_pt_1200e_k710_ft (OpenGVLab release)",
        sampling={"kind": "snippets", "fps": "native", "snippet": 16, "stride": 4},
        dim=1408,
        provenance=f"{PROVENANCE}: th14_mae_g_16_4 (THUMOS14); read by ActionFormer, TriDet, OpenTAD",
    ),
    published_spec(
        "videomaev2-tad-fineaction-mae-g-16-16",
        backbone="videomaev2-g",
        weights="vit_g_hybrid_pt_1200e_k710_ft (OpenGVLab release)",
        sampling={"kind": "snippets", "fps": "native", "snippet": 16, "stride": 16},
        dim=1408,
        provenance=f"{PROVENANCE}: fineaction_mae_g (FineAction)",
    ),
)


def read(source: Path, annotations: Path | None, spec: FeatureSpec) -> Iterator[SourceVideo]:
    """The ``<stem>.npy`` files of folder ``source`` (each ``(T, 1408)``)."""
    require_dir(source, "VideoMAE V2's per-video <video stem>.npy feature files")
    for p in sorted(source.glob("*.npy")):
        yield SourceVideo(p.stem, str(p), lambda record, p=p: Features({"": np.load(p, allow_pickle=False)}))


def write(store, manifest: Manifest, out: Path) -> list[Path]:
    """``out/<stem>.npy`` (float32 ``(T, D)``) for every video of the store, as the release names
    them (the video file's stem)."""
    s = store.spec.sampling
    if s.get("kind") != "snippets" or s.get("fps") != "native" or int(s.get("snippet", 0)) != 16:
        raise FsvInputError(
            f"{store.path}: spec {store.spec.name!r} samples {s}, not VideoMAE V2's time base (16 native frames per "
            "window), which the configs that read it assume; export it as actionformer or video-features instead"
        )
    ids = [r.video_id for r in manifest if r.video_id in store.index] or store.video_ids()
    stems = [Path(vid).name for vid in ids]
    if len(set(stems)) < len(stems):
        clash = next(s for s in stems if stems.count(s) > 1)
        raise FsvInputError(
            f"{store.path}: several videos share the file stem {clash!r}; the release names files by stem alone"
        )
    out = fresh_dir(out)
    written = []
    for vid in ids:
        written.append(out / f"{Path(vid).name}.npy")
        np.save(written[-1], np.asarray(store.get(vid, field=store.spec.view_field("pooled")), dtype=np.float32))
    return written


FORMAT = FeatureFormat(
    name="videomaev2-tad",
    source="folder of <video stem>.npy",
    used_by="ActionFormer, TriDet, OpenTAD (VideoMAE V2-g THUMOS14 / FineAction features)",
    time_base="16 native frames every 4 (FineAction: 16) at the video's fps (overlapping)",
    specs=SPECS,
    read=read,
    write=write,
    expected_steps=snippet_steps,
)
