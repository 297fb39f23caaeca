"""THUMOS14: the ActivityNet-style JSON (shipped) or the official per-class annotation txt files.

Subsets keep their official names: ``validation`` (200 videos, the training set of weakly-supervised
methods) and ``test`` (212). Segments marked Ambiguous are kept apart in ``ambiguous`` so that the
evaluation can exclude them. Default paths are ``<subset>/<video_id>.mp4``; with a data root, each
video is found by name wherever it lies.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from fsv.errors import FsvInputError
from fsv.pipeline.manifests.builders.common import finish, read_json, resolve_files
from fsv.pipeline.manifests.model import LABEL_SEP, Manifest, Segment, VideoRecord
from fsv.pipeline.manifests.problems import ProblemList
from fsv.pipeline.manifests.resources import resource_path

SUBSET_OF_SUFFIX = {"val": "validation", "test": "test"}
TXT_NAME = re.compile(r"^(?P<cls>[A-Za-z]+)_(?P<sub>val|test)\.txt$")


def build_thumos14(
    *, root: Path | None = None, annotations: Path | None = None, splits: Path | None = None, task: str | None = None
) -> Manifest:
    """THUMOS14 manifest from ``annotations`` (JSON file or folder of official txt files)."""
    source = annotations if annotations is not None else resource_path("annotations", "thumos14.json")
    problems = ProblemList()
    if source.is_dir():
        records, classes = _from_txt_folder(source, problems)
    else:
        records, classes = _from_json(source, problems)
    records = resolve_files(
        records,
        root,
        {r.video_id: [f"{r.split}/{r.video_id}"] for r in records},
        {r.video_id: r.video_id for r in records},
    )
    return finish(Manifest("thumos14", records, classes, "localization"), problems, str(source))


def _video_label(segments: list[Segment]) -> str:
    return LABEL_SEP.join(sorted({s.label for s in segments}))


def _from_json(path: Path, problems: ProblemList) -> tuple[list[VideoRecord], list[str]]:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise FsvInputError(f"{path}: expected an ActivityNet-style object with a 'database' mapping")
    classes = data.get("classes") or sorted(
        {a["label"] for v in data["database"].values() for a in v.get("annotations", [])}
    )
    records = []
    for vid, info in data["database"].items():
        where = f"database.{vid}"
        try:
            segments = [
                Segment(float(a["segment"][0]), float(a["segment"][1]), str(a["label"]))
                for a in info.get("annotations", [])
            ]
            ambiguous = tuple((float(s), float(e)) for s, e in info.get("ambiguous", []))
            subset = str(info["subset"]).lower()  # ActionFormer's file says "Validation" / "Test"
            fps = float(info["fps"]) if info.get("fps") else None
            duration = float(info["duration"]) if info.get("duration") else None
            num_frames = int(info["num_frames"]) if info.get("num_frames") else None
        except (KeyError, TypeError, ValueError, IndexError) as e:
            problems.add(str(path), None, f"{where}: malformed entry ({type(e).__name__}: {e})", vid)
            continue
        records.append(
            VideoRecord(
                video_id=vid,
                path=f"{subset}/{vid}.mp4",
                label=_video_label(segments),
                split=subset,
                fps=fps,
                duration=duration,
                num_frames=num_frames,
                segments=tuple(sorted(segments, key=lambda s: (s.start, s.end))),
                ambiguous=ambiguous,
            )
        )
    return records, list(classes)


def _from_txt_folder(folder: Path, problems: ProblemList) -> tuple[list[VideoRecord], list[str]]:
    """Official layout: ``<Class>_val.txt`` / ``<Class>_test.txt`` with ``video_id start end`` lines,
    ``Ambiguous_val.txt`` / ``Ambiguous_test.txt`` for ambiguous segments."""
    files = sorted(p for p in folder.iterdir() if TXT_NAME.match(p.name))
    if not files:
        raise FsvInputError(
            f"{folder}: no THUMOS14 annotation files (<Class>_val.txt / <Class>_test.txt); "
            "pass the official annotation folder or the JSON file"
        )
    segments: dict[tuple[str, str], list[Segment]] = defaultdict(list)
    ambiguous: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    classes = sorted({TXT_NAME.match(p.name)["cls"] for p in files} - {"Ambiguous"})
    for p in files:
        m = TXT_NAME.match(p.name)
        cls, subset = m["cls"], SUBSET_OF_SUFFIX[m["sub"]]
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                vid, start, end = parts[0], float(parts[1]), float(parts[2])
            except (IndexError, ValueError):
                problems.add(str(p), i, f"expected 'video_id start end', got {line.strip()!r}")
                continue
            if cls == "Ambiguous":
                ambiguous[(subset, vid)].append((start, end))
            else:
                segments[(subset, vid)].append(Segment(start, end, cls))
    records = []
    for subset, vid in sorted(set(segments) | set(ambiguous)):
        segs = sorted(segments.get((subset, vid), []), key=lambda s: (s.start, s.end))
        records.append(
            VideoRecord(
                video_id=vid,
                path=f"{subset}/{vid}.mp4",
                label=_video_label(segs),
                split=subset,
                segments=tuple(segs),
                ambiguous=tuple(ambiguous.get((subset, vid), [])),
            )
        )
    return records, classes
