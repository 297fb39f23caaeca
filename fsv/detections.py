"""ActivityNet-format files: ground truth (``{"database": {video: {"subset", "annotations"}}}``) and
results (``{"results": {video: [{"segment", "score", "label"}]}}``), scored by :func:`fsv.metrics.detection_map`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fsv.errors import FsvInputError
from fsv.metrics import detection_map


def parse_tiou(text: str) -> np.ndarray:
    """``"0.5:0.95:0.05"`` (start:stop:step, inclusive) or ``"0.3,0.5,0.7"`` -> thresholds."""
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            return np.round(np.arange(start, stop + step / 2, step), 6)
        return np.array([float(x) for x in text.split(",")])
    except ValueError as e:
        raise FsvInputError(f"--tiou {text!r}: expected START:STOP:STEP or a comma-separated list") from e


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


def load_ground_truth(path: Path, subset: str | None = None) -> dict[str, list[tuple[float, float, str]]]:
    """video -> ``[(start, end, label)]`` of the videos in ``subset`` (all when None)."""
    out = {}
    for video, entry in _load(path, "database").items():
        if subset is not None and entry.get("subset") != subset:
            continue
        try:
            out[video] = [(float(a["segment"][0]), float(a["segment"][1]), str(a["label"])) for a in entry.get("annotations", [])]
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise FsvInputError(f"{path}: video {video}: malformed annotation ({e})") from e
    if not out:
        raise FsvInputError(f"{path}: no videos" + (f" in subset {subset!r}" if subset else ""))
    return out


def load_results(path: Path) -> dict[str, list[tuple[float, float, float, str]]]:
    """video -> ``[(start, end, score, label)]``."""
    out = {}
    for video, dets in _load(path, "results").items():
        try:
            out[video] = [(float(d["segment"][0]), float(d["segment"][1]), float(d["score"]), str(d["label"])) for d in dets]
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise FsvInputError(f"{path}: video {video}: malformed detection ({e}); need segment, score, label") from e
    return out


def score_files(gt: Path, pred: Path, tious: np.ndarray, subset: str | None = None) -> dict[str, object]:
    """mAP of a results file against a ground-truth file (predictions on videos outside the
    scored ground truth are ignored, as the ActivityNet evaluation does for other subsets)."""
    ground_truth = load_ground_truth(gt, subset)
    predictions = {v: d for v, d in load_results(pred).items() if v in ground_truth}
    return detection_map(ground_truth, predictions, tious)
