"""Feature specs: everything that changes the numbers in a feature store.

A spec names the backbone, the weights (identity and sha256), the frame sampling, the preprocessing
(resize, crop, normalisation), the optical-flow method and the stored fields with their shapes and
dtype. Its canonical JSON (sorted keys, the human ``name`` left out) is hashed into a short ``key``;
a store is bound to one key and refuses features of another.

Named presets (the features each backbone's published weights give) live in
:mod:`fsv.pipeline.spec_presets`, derived from the backbone cards.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fsv.errors import FsvInputError

KEY_LENGTH = 16


@dataclass(frozen=True)
class FieldSpec:
    """One stored array per feature step: its shape (without the step axis) and dtype."""

    shape: tuple[int, ...]
    dtype: str = "float16"

    def __post_init__(self) -> None:
        try:
            np.dtype(self.dtype)
        except TypeError as e:
            raise FsvInputError(f"unknown dtype {self.dtype!r} in feature spec") from e
        if any(int(d) <= 0 for d in self.shape):
            raise FsvInputError(f"feature shape {self.shape} must have positive sizes")

    @property
    def row_bytes(self) -> int:
        """Bytes of one feature step."""
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class FeatureSpec:
    """A feature spec (see module docstring).

    ``sampling`` is one of ``{"kind": "tsn", "num_segments": 8, "mode": "center"}``,
    ``{"kind": "snippets", "fps": 25, "snippet": 16, "stride": 16}`` (``"fps": "native"``: every
    frame; ``"count": "ceil"``: resampled frames up to the video's end, see
    :func:`fsv.pipeline.sampling.resample_indices`) or ``{"kind": "frames"}``;
    ``weights`` is ``{"name": ..., "sha256": ...}`` or ``{"name": "random", "seed": ...}``.
    """

    name: str
    backbone: str
    weights: dict[str, Any]
    sampling: dict[str, Any]
    fields: dict[str, FieldSpec]
    preprocess: dict[str, Any] = field(default_factory=dict)
    flow: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.fields:
            raise FsvInputError(f"feature spec {self.name!r} declares no fields")
        if self.sampling.get("kind") not in ("tsn", "snippets", "frames"):
            raise FsvInputError(
                f"feature spec {self.name!r}: sampling kind must be tsn, snippets or frames, got {self.sampling}"
            )

    @property
    def streams(self) -> tuple[str, ...]:
        """The streams the features concatenate, in order (``rgb``, ``flow``): the per-stream
        weights of an extracted spec, else the ``extra["layout"]`` of a published one
        (``"rgb (1024) then flow (1024)"``); empty when the spec names none."""
        named = tuple(k for k in self.weights if k in ("rgb", "flow"))
        layout = tuple(
            part.split(" (")[0].strip() for part in str(self.extra.get("layout", "")).split(" then ") if part.strip()
        )
        return named or (layout if len(layout) > 1 else ())

    def to_dict(self, *, with_name: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "backbone": self.backbone,
            "weights": self.weights,
            "sampling": self.sampling,
            "preprocess": self.preprocess,
            "flow": self.flow,
            "fields": {k: v.to_dict() for k, v in sorted(self.fields.items())},
            "extra": self.extra,
        }
        if with_name:
            d = {"name": self.name, **d}
        return d

    def canonical_json(self) -> str:
        """The hashed form: sorted keys, no whitespace, without ``name``."""
        return json.dumps(self.to_dict(with_name=False), sort_keys=True, separators=(",", ":"))

    @property
    def key(self) -> str:
        """Short hash of :meth:`canonical_json`; equal keys mean interchangeable features."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:KEY_LENGTH]

    def view_field(self, view: str) -> str:
        """The field a view of the features reads: the only one; in a spec with pooled features
        beside a patch-token grid (``--grid``), ``features`` for ``pooled`` (what the pooled view,
        localization and the published layouts read: the model's own pooled output, not a mean of
        its tokens) and ``grid`` for ``patches`` / ``grid``."""
        names = list(self.fields)
        if len(names) == 1:
            return names[0]
        name = "features" if view == "pooled" else "grid"
        if name not in names:
            raise FsvInputError(f"feature spec {self.name!r} has fields {names}; the {view} view reads field {name!r}")
        return name

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureSpec":
        try:
            return cls(
                name=str(d.get("name", "custom")),
                backbone=str(d["backbone"]),
                weights=dict(d["weights"]),
                sampling=dict(d["sampling"]),
                fields={
                    k: FieldSpec(tuple(int(x) for x in v["shape"]), str(v.get("dtype", "float16")))
                    for k, v in d["fields"].items()
                },
                preprocess=dict(d.get("preprocess") or {}),
                flow=dict(d["flow"]) if d.get("flow") else None,
                extra=dict(d.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise FsvInputError(
                f"malformed feature spec ({type(e).__name__}: {e}); needs backbone, weights, sampling, fields"
            ) from e

    def describe_difference(self, other: "FeatureSpec") -> str:
        """Which top-level entries differ, for error messages."""
        a, b = self.to_dict(with_name=False), other.to_dict(with_name=False)
        diffs = [
            f"{k}: {json.dumps(a[k], sort_keys=True)} != {json.dumps(b[k], sort_keys=True)}" for k in a if a[k] != b[k]
        ]
        return "; ".join(diffs) or "identical"


def step_spans(sampling: dict[str, Any], num_steps: int, duration: float | None) -> np.ndarray:
    """Time span ``[start_s, end_s]`` of each feature step, shape ``(num_steps, 2)`` float64.

    Snippets at ``fps`` with ``snippet`` frames every ``stride`` frames cover
    ``[i·stride/fps, (i·stride + snippet)/fps]`` (clipped to the duration when known); TSN segments
    split the duration into equal parts; per-frame steps are ``1/fps`` long at the video's rate
    (``sampling["fps"]``, filled in by the caller). Unknown spans are NaN.
    """
    i = np.arange(num_steps, dtype=np.float64)
    kind = sampling["kind"]
    if kind == "snippets":
        fps, snippet, stride = float(sampling["fps"]), int(sampling["snippet"]), int(sampling["stride"])
        spans = np.stack([i * stride / fps, (i * stride + snippet) / fps], axis=1)
    elif kind == "tsn":
        if duration is None:
            return np.full((num_steps, 2), np.nan)
        seg = duration / max(num_steps, 1)
        spans = np.stack([i * seg, (i + 1) * seg], axis=1)
    else:
        fps = sampling.get("fps")
        if not fps:
            return np.full((num_steps, 2), np.nan)
        spans = np.stack([i / fps, (i + 1) / fps], axis=1)
    if duration is not None:
        spans = np.minimum(spans, duration)
    return spans
