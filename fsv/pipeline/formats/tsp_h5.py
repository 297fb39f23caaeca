"""``tsp-h5``: TSP's R(2+1)D-34 features (Alwassel et al., ICCVW 2021; HumamAlwassel/TSP) as one HDF5
file, the layout of its released ActivityNet features and of ``merge_pkl_files_into_one_h5_feature_file.py``.

Layout::

    /<video stem>      (T, 512) float32: the R(2+1)D-34 global average pool of each clip
                       (ActivityNet stems are ``v_<youtube id>``)

Time base (``extract_features.py`` with the released settings): videos re-encoded at 30 fps, every
second frame (15 fps), 16-frame clips every 16 frames (``STRIDE=16``, ActivityNet), row ``i``
spanning ``[16 i / 15, (16 i + 16) / 15]`` s; or every frame (``STRIDE=1``, THUMOS14: preset
``tsp-r2plus1d-34-thumos14-h5``, with ``--spec``). The same features as ``fsv extract --backbone
tsp-r2plus1d-34`` computes (its ``activitynet`` and ``thumos14`` recipes).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from fsv.errors import FsvInputError
from fsv.pipeline.formats.base import (
    FeatureFormat,
    Features,
    SourceVideo,
    write_h5_export,
    published_spec,
    snippet_steps,
)
from fsv.pipeline.manifests.model import Manifest

SPECS = (
    published_spec(
        "tsp-r2plus1d-34-activitynet-h5",
        backbone="tsp-r2plus1d-34",
        weights="r2plus1d_34-tsp_on_activitynet (TSP release)",
        sampling={"kind": "snippets", "fps": 15, "snippet": 16, "stride": 16},
        dim=512,
        provenance="TSP (Alwassel et al., ICCVW 2021) R(2+1)D-34 ActivityNet features, HumamAlwassel/TSP; "
        "read by BMN, G-TAD and ActionFormer's ActivityNet runs",
    ),
    published_spec(
        "tsp-r2plus1d-34-thumos14-h5",
        backbone="tsp-r2plus1d-34",
        weights="r2plus1d_34-tsp_on_thumos14 (TSP release)",
        sampling={"kind": "snippets", "fps": 15, "snippet": 16, "stride": 1},
        dim=512,
        provenance="TSP (Alwassel et al., ICCVW 2021) R(2+1)D-34 THUMOS14 features (dense clips, STRIDE=1), HumamAlwassel/TSP",
    ),
)


def read(source: Path, annotations: Path | None, spec) -> Iterator[SourceVideo]:
    """The top-level datasets of HDF5 file ``source``, one per video."""
    if not source.is_file():
        raise FsvInputError(f"{source}: no such file; the tsp-h5 format reads TSP's merged .h5 feature file")
    try:
        f = h5py.File(source, "r")
    except OSError as e:
        raise FsvInputError(f"{source}: not an HDF5 file ({e})") from e
    try:
        for key in sorted(f):
            node = f[key]
            if not isinstance(node, h5py.Dataset):
                raise FsvInputError(
                    f"{source}:/{key}: expected a dataset of clip features (TSP's layout: one dataset per video)"
                )
            yield SourceVideo(key, f"{source}:/{key}", lambda record, node=node: Features({"": node[()]}))
    finally:
        f.close()


def video_ids(key: str) -> tuple[str, ...]:
    """``v_<id>`` stands for ActivityNet id ``<id>`` (fsv's manifests use the bare id), or itself."""
    return (key.removeprefix("v_"), key)


def write(store, manifest: Manifest, out: Path) -> list[Path]:
    """HDF5 file ``out`` with one float32 dataset per video, named as TSP names them (``v_<id>``
    for ActivityNet ids; written to a temporary name and renamed, so a failed export leaves nothing)."""
    s = store.spec.sampling
    if (
        s.get("kind") != "snippets"
        or s.get("fps") != 15
        or int(s.get("snippet", 0)) != 16
        or len(store.spec.fields[store.spec.view_field("pooled")].shape) != 1
    ):
        raise FsvInputError(
            f"{store.path}: spec {store.spec.name!r} samples {s}, not TSP's time base (16-frame clips at 15 fps), which "
            "its readers assume; export it as actionformer or video-features instead"
        )
    activitynet = manifest.dataset.startswith("activitynet")

    def put(f: h5py.File, vid: str, x: np.ndarray) -> None:
        f.create_dataset(f"v_{vid}" if activitynet and not vid.startswith("v_") else vid, data=x)

    return write_h5_export(store, manifest, out, put)


FORMAT = FeatureFormat(
    name="tsp-h5",
    source="one .h5 file, a dataset per video (TSP's merged features)",
    used_by="TSP's ActivityNet features (HumamAlwassel/TSP); BMN, G-TAD, ActionFormer on ActivityNet",
    time_base="16 frames every 16 (THUMOS14: every 1) at 15 fps",
    specs=SPECS,
    read=read,
    write=write,
    video_ids=video_ids,
    expected_steps=snippet_steps,
)
