"""``anet-c3d``: the ActivityNet challenge's C3D features, ``sub_activitynet_v1-3.c3d.hdf5``.

Layout (activity-net.org, 2016 challenge; read by SST, DenseCap and the few-shot common
localization work built on R-C3D)::

    /v_<youtube id>/c3d_features    (T, 500) float: C3D (Sports-1M) fc7, reduced to 500 by PCA

Time base: 16-frame clips every 8 frames at the video's own frame rate, row ``i`` spanning
``[8 i / fps, (8 i + 16) / fps]`` s. The ActivityNet annotations carry no frame rate: with none in
the manifest (``fsv manifest build ... --probe`` fills it from the videos), the rate is taken as
``8 T / duration``, the proportional mapping their readers use (``t / duration · T``).
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
from fsv.pipeline.manifests.model import Manifest, VideoRecord
from fsv.pipeline.spec import FeatureSpec, step_spans

DATASET = "c3d_features"
STRIDE, SNIPPET = 8, 16

SPEC = published_spec(
    "anet-c3d-sports1m-pca500",
    backbone="c3d",
    weights="sports1m (ActivityNet challenge release)",
    sampling={"kind": "snippets", "fps": "native", "snippet": SNIPPET, "stride": STRIDE},
    dim=500,
    provenance="ActivityNet challenge 2016 C3D fc7 PCA-500 features (sub_activitynet_v1-3.c3d.hdf5, activity-net.org)",
)


def _spans(record: VideoRecord, n: int) -> np.ndarray | None:
    """Spans at the record's fps, else at ``8 n / duration``; None when neither is known."""
    fps = record.fps or (STRIDE * n / record.duration if record.duration else None)
    if not fps:
        return None
    return step_spans({"kind": "snippets", "fps": fps, "snippet": SNIPPET, "stride": STRIDE}, n, record.duration)


def read(source: Path, annotations: Path | None, spec: FeatureSpec) -> Iterator[SourceVideo]:
    """The ``v_<id>`` groups of HDF5 file ``source``, each holding ``c3d_features``."""
    if not source.is_file():
        raise FsvInputError(f"{source}: no such file; the anet-c3d format reads sub_activitynet_v1-3.c3d.hdf5")
    try:
        f = h5py.File(source, "r")
    except OSError as e:
        raise FsvInputError(f"{source}: not an HDF5 file ({e})") from e
    try:
        for key in sorted(f):
            node = f[key]
            if not isinstance(node, h5py.Group) or DATASET not in node:
                raise FsvInputError(
                    f"{source}:/{key}: expected a group holding {DATASET!r} (the ActivityNet C3D layout)"
                )

            def load(record: VideoRecord, node: h5py.Group = node) -> Features:
                x = node[DATASET][()]
                return Features({"": x}, spans=_spans(record, len(x)) if x.ndim == 2 else None)

            yield SourceVideo(key, f"{source}:/{key}/{DATASET}", load)
    finally:
        f.close()


def video_ids(key: str) -> tuple[str, ...]:
    """``v_<id>`` stands for ActivityNet id ``<id>`` (fsv's manifests use the bare id)."""
    return (key.removeprefix("v_"), key)


def expected_steps(record: VideoRecord, spec) -> float | None:
    """Checked only where the manifest knows the frame rate (without it the rate is inferred from the length)."""
    return snippet_steps(record, spec) if record.fps else None


def write(store, manifest: Manifest, out: Path) -> list[Path]:
    """HDF5 file ``out`` with a ``v_<id>/c3d_features`` float32 dataset per video of the store
    (written to a temporary name and renamed, so a failed export leaves nothing)."""
    s = store.spec.sampling
    if (
        s.get("kind") != "snippets"
        or (int(s["snippet"]), int(s["stride"])) != (SNIPPET, STRIDE)
        or len(store.spec.fields) != 1
    ):
        raise FsvInputError(
            f"{store.path}: spec {store.spec.name!r} samples {s}, not the ActivityNet C3D time base (16 frames every 8), "
            "which their readers assume; export it as actionformer or video-features instead"
        )

    def put(f: h5py.File, vid: str, x: np.ndarray) -> None:
        f.create_group(vid if vid.startswith("v_") else f"v_{vid}").create_dataset(DATASET, data=x)

    return write_h5_export(store, manifest, out, put)


FORMAT = FeatureFormat(
    name="anet-c3d",
    source="sub_activitynet_v1-3.c3d.hdf5 (annotations: activity_net.v1-3.min.json via fsv manifest build activitynet13)",
    used_by="ActivityNet challenge C3D (activity-net.org); SST, DenseCap, few-shot common action localization (Yang et al. 2020)",
    time_base="16 frames every 8 frames at the video's fps (fps inferred as 8·T/duration when unknown)",
    specs=(SPEC,),
    read=read,
    write=write,
    video_ids=video_ids,
    expected_steps=expected_steps,
)
