"""What a published feature format is: its readers, its writer, its spec presets and its time base.

A :class:`FeatureFormat` reads a source in the layout some paper's code reads (yielding one
:class:`SourceVideo` per video, loaded lazily) and writes a store back in that layout. Where the
layout carries annotations, it also builds the manifest. Import itself (matching videos to the
manifest, checking shapes and lengths, writing a store part) is
:func:`fsv.pipeline.store.transfer.import_features`, one routine for every format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from fsv.files import atomic_path
from fsv.errors import FsvInputError
from fsv.pipeline.manifests.model import Manifest, VideoRecord
from fsv.pipeline.spec import FeatureSpec, FieldSpec


class VideoProblem(FsvInputError):
    """One video of a source cannot be imported (its files disagree, or one is missing): it is
    recorded as failed with this message, and the other videos carry on."""


@dataclass
class Features:
    """One video's arrays as the source holds them: ``arrays[name]`` is ``(T, ...)`` (``""`` when
    the source does not name it); ``spans`` ``(T, 2)`` seconds when the source gives real times."""

    arrays: dict[str, np.ndarray]
    spans: np.ndarray | None = None


@dataclass(frozen=True)
class SourceVideo:
    """A video in a source: ``key`` as the source names it, ``where`` (file and member) for
    messages, and ``load(record)`` reading its :class:`Features` (``record`` is its manifest row)."""

    key: str
    where: str
    load: Callable[[VideoRecord], Features]


Reader = Callable[[Path, Path | None, FeatureSpec], Iterator[SourceVideo]]
Writer = Callable[[Any, Manifest, Path], list[Path]]


@dataclass(frozen=True)
class FeatureFormat:
    """A published layout (see the module docstring).

    ``read(source, annotations, spec)`` yields the source's videos (``annotations`` is the format's
    annotation file or folder when it needs one to name them, else None; ``spec`` the store's); ``write(store, manifest,
    out)`` writes the store in this layout under ``out`` and returns the files written;
    ``build_manifest(annotations)`` builds the manifest where the layout carries annotations.
    ``specs`` are its spec presets, the default first; ``video_ids(key)`` the manifest ids a
    source key may stand for; ``expected_steps(record, spec)`` the step count its time base implies
    for a video (None when it cannot be known), against which lengths are checked.
    """

    name: str
    source: str
    used_by: str
    time_base: str
    specs: tuple[FeatureSpec, ...]
    read: Reader
    write: Writer
    build_manifest: Callable[[Path], Manifest] | None = None
    video_ids: Callable[[str], tuple[str, ...]] = lambda key: (key, Path(key).name)
    expected_steps: Callable[[VideoRecord, FeatureSpec], float | None] = field(default=lambda record, spec: None)
    notes: Callable[[FeatureSpec], list[str]] = field(default=lambda spec: [])

    @property
    def spec(self) -> FeatureSpec:
        """The default spec preset."""
        return self.specs[0]


def published_spec(
    name: str,
    *,
    backbone: str,
    weights: str,
    sampling: dict,
    dim: int,
    provenance: str,
    streams: tuple[str, ...] = ("rgb",),
    flow: dict | None = None,
) -> FeatureSpec:
    """The spec of a published feature set: float32 ``features`` of ``(dim,)`` per step (stored as
    published, so an export gives the same numbers back), with its provenance and, for two-stream
    features, their layout in ``extra`` (VQK-Net gives each stream its own branch)."""
    extra: dict = {"provenance": provenance}
    if len(streams) > 1:  # read back by FeatureSpec.streams
        extra["layout"] = " then ".join(f"{st} ({dim // len(streams)})" for st in streams)
    return FeatureSpec(
        name=name,
        backbone=backbone,
        weights={"name": weights, "sha256": None},
        sampling=sampling,
        fields={"features": FieldSpec((dim,), "float32")},
        flow=flow,
        extra=extra,
    )


def snippet_steps(record: VideoRecord, spec: FeatureSpec) -> float | None:
    """Steps of snippets of ``snippet`` frames every ``stride`` frames over the video at the spec's
    rate (the video's own with ``fps: "native"``): ``(N - snippet) / stride + 1`` for ``N`` frames."""
    s = spec.sampling
    fps = record.fps if s.get("fps") == "native" else float(s["fps"])
    if not fps or not record.duration:
        return None
    return max((record.duration * fps - int(s["snippet"])) / int(s["stride"]) + 1, 1.0)


def require_dir(path: Path, what: str) -> Path:
    """``path`` as an existing folder, or an input error saying what it should hold."""
    if not path.is_dir():
        raise FsvInputError(f"{path}: not a folder; expected {what}")
    return path


def fresh_dir(out: Path) -> Path:
    """An export folder: created when absent; refused when it holds files, so nothing is overwritten."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FsvInputError(f"{out}: exists and is not an empty folder; export into a new folder")
    if not out.parent.is_dir():
        raise FsvInputError(f"cannot export to {out}: folder {out.parent} does not exist; create it first")
    out.mkdir(exist_ok=True)
    return out


def stored_records(store: Any, manifest: Manifest) -> list[VideoRecord]:
    """The manifest's videos that ``store`` holds, in manifest order (what an export with
    annotations writes); none is an input error: the manifest is not the store's."""
    records = [r for r in manifest if r.video_id in store.index]
    if not records:
        raise FsvInputError(
            f"{store.path}: holds none of the videos of {manifest.path or manifest.dataset}; export needs the store's manifest"
        )
    return records


def require_h5_names(ids: list[str]) -> None:
    """Refuse video ids that cannot all be HDF5 names: HDF5 reads ``/`` as a group separator, so
    ``misc`` and ``misc/test`` would be the same node (and ``a//b`` or ``/a`` are not names)."""
    taken = set(ids)
    bad = [v for v in ids if not v or v.startswith("/") or "//" in v or v.endswith("/")]
    clash = [
        (v, p) for v in ids for p in ("/".join(v.split("/")[:k]) for k in range(1, v.count("/") + 1)) if p in taken
    ]
    if bad or clash:
        examples = [repr(v) for v in bad[:3]] + [f"{p!r} and {v!r}" for v, p in clash[:3]]
        raise FsvInputError(
            f"{len(bad) + len(clash)} video id(s) cannot be HDF5 names (`/` separates groups), e.g. {', '.join(examples)}; "
            "export to a folder of .npy files instead, or rename the videos in the manifest"
        )


def write_h5_export(
    store: Any, manifest: Manifest, out: Path, put: Callable[[h5py.File, str, np.ndarray], None]
) -> list[Path]:
    """HDF5 file ``out`` holding the pooled features (float32) of the manifest's videos that
    ``store`` holds (all of them when the manifest names none), each placed by ``put(file,
    video_id, features)``. Written to a temporary name and renamed, so a failed export leaves nothing."""
    if out.exists():
        raise FsvInputError(f"{out}: exists; export into a new file")
    if not out.parent.is_dir():
        raise FsvInputError(f"cannot export to {out}: folder {out.parent} does not exist; create it first")
    ids = [r.video_id for r in manifest if r.video_id in store.index] or store.video_ids()
    require_h5_names(ids)
    field = store.spec.view_field("pooled")
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        for vid in ids:
            put(f, vid, np.asarray(store.get(vid, field=field), dtype=np.float32))
    return [out]
