"""ActivityNet-format detection files: ground truth (``{"database": {video: {"subset", "annotations",
"ambiguous"?}}}``, ``ambiguous`` being THUMOS14's ``[[start, end], ...]``) and results (``{"results":
{video: [{"segment", "score", "label"}]}}``), scored by :func:`fsv.metrics.detection_map` exactly as
the official ActivityNet evaluation scores them (``bench/verify_anet_eval.py`` checks it).
``fsv predict`` writes both (:func:`write_results`, :func:`write_ground_truth`)."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

import numpy as np

from fsv.errors import FsvInputError
from fsv.files import write_text_atomic
from fsv.metrics import AMBIGUOUS_RULES, detection_map


def parse_tiou(text: str) -> np.ndarray:
    """``"0.5:0.95:0.05"`` (start:stop:step, inclusive) or ``"0.3,0.5,0.7"`` -> thresholds.

    A range is ``np.linspace(start, stop, n)``, the form the ActivityNet evaluation uses for its
    default ``np.linspace(0.5, 0.95, 10)``, so ``0.5:0.95:0.05`` gives the very same floats (a tIoU
    that lands exactly on a threshold is then judged the same way)."""
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError(text)
            return np.linspace(start, stop, round((stop - start) / step) + 1)
        return np.array([float(x) for x in text.split(",")])
    except ValueError as e:
        raise FsvInputError(
            f"--tiou {text!r}: expected START:STOP:STEP (STEP > 0, STOP >= START) or a comma-separated list"
        ) from e


def _load(path: Path, key: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise FsvInputError(f"{path}: no such file") from e
    except json.JSONDecodeError as e:
        raise FsvInputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from e
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise FsvInputError(f"{path}: expected an object with a {key!r} mapping (ActivityNet format)")
    return data[key]


def _database(path: Path, subset: str | None, blocked: Collection[str]) -> dict[str, dict]:
    """The ground-truth entries of ``subset`` (all when None), less ``blocked`` videos, in file order."""
    out = {
        video: entry
        for video, entry in _load(path, "database").items()
        if (subset is None or (isinstance(entry, dict) and entry.get("subset") == subset)) and video not in blocked
    }
    if not out:
        raise FsvInputError(f"{path}: no videos" + (f" in subset {subset!r}" if subset else ""))
    return out


def _annotations(path: Path, database: dict[str, dict]) -> dict[str, list[tuple[float, float, str]]]:
    out = {}
    for video, entry in database.items():
        try:
            out[video] = [
                (float(a["segment"][0]), float(a["segment"][1]), str(a["label"])) for a in entry.get("annotations", [])
            ]
        except (AttributeError, KeyError, TypeError, ValueError, IndexError) as e:
            raise FsvInputError(f"{path}: video {video}: malformed annotation ({e})") from e
    return out


def _ambiguous(path: Path, database: dict[str, dict]) -> dict[str, np.ndarray]:
    out = {}
    for video, entry in database.items():
        segs = entry.get("ambiguous") if isinstance(entry, dict) else None
        if not segs:
            continue
        try:
            out[video] = np.array([[float(s), float(e)] for s, e in segs], dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError) as e:
            raise FsvInputError(
                f"{path}: video {video}: malformed ambiguous segments ({e}); need [[start, end], ...]"
            ) from e
    return out


def load_ambiguous(path: Path, subset: str | None = None, blocked: Collection[str] = ()) -> dict[str, np.ndarray]:
    """video -> ``(m, 2)`` ambiguous segments (THUMOS14's "Ambiguous" class, stored per video as
    ``"ambiguous": [[start, end], ...]``) of the videos in ``subset``; empty when the file has none."""
    return _ambiguous(path, _database(path, subset, blocked))


def load_results(path: Path, blocked: Collection[str] = ()) -> dict[str, list[tuple[float, float, float, str]]]:
    """video -> ``[(start, end, score, label)]``, in file order, less ``blocked`` videos."""
    out = {}
    for video, dets in _load(path, "results").items():
        if video in blocked:
            continue
        try:
            out[video] = [
                (float(d["segment"][0]), float(d["segment"][1]), float(d["score"]), str(d["label"])) for d in dets
            ]
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise FsvInputError(f"{path}: video {video}: malformed detection ({e}); need segment, score, label") from e
    return out


def score_files(
    gt: Path,
    pred: Path,
    tious: np.ndarray,
    subset: str | None = None,
    *,
    ambiguous: bool = True,
    ambiguous_rule: str = "thumos14",
    blocked: Collection[str] = (),
) -> dict[str, object]:
    """mAP of a results file against a ground-truth file, as the official ActivityNet evaluation
    (``ANETdetection`` with ``check_status=False``) computes it on the same files and thresholds.

    Every prediction counts, also those on videos outside ``subset`` or without ground truth: they are
    false positives, as in the official code. ``blocked``: videos dropped from both files (the
    official blocked list, which it downloads when ``check_status`` is on). ``ambiguous``: when the
    ground truth carries per-video ``"ambiguous"`` segments (THUMOS14), ignore the detections the
    THUMOS14 protocol ignores (``ambiguous_rule``, see :func:`fsv.metrics.class_average_precision`);
    a file without them (ActivityNet) scores the same either way."""
    if ambiguous_rule not in AMBIGUOUS_RULES:
        raise FsvInputError(f"ambiguous rule {ambiguous_rule!r}: expected one of {', '.join(AMBIGUOUS_RULES)}")
    blocked = frozenset(blocked)
    database = _database(gt, subset, blocked)
    ground_truth = _annotations(gt, database)
    amb = _ambiguous(gt, database) if ambiguous else None
    return detection_map(
        ground_truth, load_results(pred, blocked), tious, ambiguous=amb or None, ambiguous_rule=ambiguous_rule
    )


def write_results(path: Path, predictions: dict[str, list[tuple[float, float, float, str]]], details: str) -> None:
    """``{"version", "results": {video: [{"segment", "score", "label"}]}, "external_data"}`` of
    ``predictions`` (video -> ``[(start, end, score, label)]``), atomically and at full precision, so
    that scoring the file reproduces the mAP the detections had (rounding moves detections across
    tIoU thresholds and reorders tied scores)."""
    results = {
        v: [{"segment": [float(s), float(e)], "score": float(p), "label": lab} for s, e, p, lab in dets]
        for v, dets in predictions.items()
    }
    payload = {"version": "fsv", "results": results, "external_data": {"used": True, "details": details}}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(payload))


def write_ground_truth(
    path: Path, ground_truth: dict[str, list[tuple[float, float, str]]], ambiguous: dict[str, np.ndarray]
) -> None:
    """``{"database": {video: {"subset": "test", "annotations", "ambiguous"?}}}`` of ``ground_truth``
    (video -> ``[(start, end, label)]``) and THUMOS14's ``ambiguous`` segments, atomically."""
    database = {
        v: {
            "subset": "test",
            "annotations": [{"segment": [s, e], "label": lab} for s, e, lab in segs],
            **({"ambiguous": ambiguous[v].tolist()} if v in ambiguous else {}),
        }
        for v, segs in ground_truth.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({"database": database}))
