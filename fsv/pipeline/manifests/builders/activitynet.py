"""ActivityNet 1.2 and 1.3 from the official ``activity_net.v1-2.min.json`` / ``v1-3.min.json``.

Subsets keep their official names (``training``, ``validation``); the ``testing`` subset has no public
labels and is left out. Classes are the labels used by the annotations (100 in 1.2, 200 in 1.3).
Default paths are ``v_<youtube_id>.mp4``; with a data root, each video is found by name (with or
without the ``v_`` prefix) wherever it lies.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fsv.errors import FsvInputError
from fsv.pipeline.manifests.builders.common import finish, read_json, resolve_files
from fsv.pipeline.manifests.model import LABEL_SEP, Manifest, Segment, VideoRecord
from fsv.pipeline.manifests.problems import ProblemList

LABELLED_SUBSETS = ("training", "validation")
log = logging.getLogger(__name__)

EXPECTED_CLASSES = {"activitynet12": 100, "activitynet13": 200}


def build_activitynet12(
    *, root: Path | None = None, annotations: Path | None = None, splits: Path | None = None, task: str | None = None
) -> Manifest:
    """ActivityNet 1.2 (100 classes) from ``activity_net.v1-2.min.json``."""
    return _build("activitynet12", "1.2", root, annotations)


def build_activitynet13(
    *, root: Path | None = None, annotations: Path | None = None, splits: Path | None = None, task: str | None = None
) -> Manifest:
    """ActivityNet 1.3 (200 classes) from ``activity_net.v1-3.min.json``."""
    return _build("activitynet13", "1.3", root, annotations)


def _build(name: str, version: str, root: Path | None, annotations: Path | None) -> Manifest:
    if annotations is None:
        raise FsvInputError(
            f"{name} needs --annotations pointing at the official activity_net.v{version.replace('.', '-')}.min.json "
            "(fsv cannot download it)"
        )
    data = read_json(annotations)
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise FsvInputError(f"{annotations}: expected the official ActivityNet JSON with a 'database' mapping")
    found = str(data.get("version", ""))
    if found and version not in found:
        raise FsvInputError(f"{annotations}: its version is {found!r}, but {name} needs ActivityNet {version}")
    problems = ProblemList()
    records = []
    for vid, info in data["database"].items():
        try:
            subset = str(info["subset"])
            if subset not in LABELLED_SUBSETS:
                continue
            segments = sorted(
                (
                    Segment(float(a["segment"][0]), float(a["segment"][1]), str(a["label"]))
                    for a in info.get("annotations", [])
                ),
                key=lambda s: (s.start, s.end),
            )
            duration = float(info["duration"]) if info.get("duration") else None
        except (KeyError, TypeError, ValueError, IndexError) as e:
            problems.add(str(annotations), None, f"database.{vid}: malformed entry ({type(e).__name__}: {e})", vid)
            continue
        records.append(
            VideoRecord(
                video_id=vid,
                path=f"v_{vid}.mp4",
                label=LABEL_SEP.join(sorted({s.label for s in segments})),
                split=subset,
                duration=duration,
                segments=tuple(segments),
            )
        )
    classes = sorted({s.label for r in records for s in r.segments})
    expected = EXPECTED_CLASSES[name]
    if records and len(classes) != expected:
        log.warning(
            "%s: found %d classes, ActivityNet %s has %d; is this the right file?",
            annotations,
            len(classes),
            version,
            expected,
        )
    records = resolve_files(
        records,
        root,
        {
            r.video_id: [f"v_{r.video_id}", r.video_id, f"{r.split}/v_{r.video_id}", f"{r.split}/{r.video_id}"]
            for r in records
        },
        {r.video_id: f"v_{r.video_id}" for r in records},
    )
    return finish(Manifest(name, records, classes, "localization"), problems, str(annotations))
