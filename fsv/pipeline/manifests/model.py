"""The manifest: one row per video, the single source of truth for a dataset.

A manifest file is a CSV (or JSON Lines) table whose first line is a ``#`` header carrying the
dataset name, the class list, the task kind and the content hash::

    # fsv-manifest {"version": 1, "dataset": "thumos14", "task": "localization", "classes": [...], "sha256": "..."}
    video_id,path,label,split,fps,num_frames,duration,segments,ambiguous
    video_test_0000004,test/video_test_0000004.mp4,CricketBowling|CricketShot,test,30.0,...,"[[0.2, 1.1, ""CricketShot""]]",[]

``segments`` is JSON ``[[start_s, end_s, label], ...]``; ``ambiguous`` is JSON ``[[start_s, end_s], ...]``
(THUMOS14's Ambiguous segments, kept apart from the scored ones). A video with several labels joins
them with ``|`` in ``label``. The content hash covers the dataset, task, classes and every row; the
feature store records it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fsv.files import write_text_atomic
from fsv.errors import FsvInputError
from fsv.pipeline.manifests.problems import ProblemList

HEADER_TAG = "# fsv-manifest "
FORMAT_VERSION = 1
COLUMNS = ("video_id", "path", "label", "split", "fps", "num_frames", "duration", "segments", "ambiguous")
REQUIRED_COLUMNS = ("video_id", "path", "label", "split")
LABEL_SEP = "|"
TASKS = ("fewshot", "localization", "classification")


@dataclass(frozen=True)
class Segment:
    """A temporal segment in seconds, ``start < end``, with its class label."""

    start: float
    end: float
    label: str

    def as_list(self) -> list[Any]:
        return [self.start, self.end, self.label]


@dataclass(frozen=True)
class VideoRecord:
    """One video of a manifest.

    ``path`` is relative to a data root given at run time. ``line`` is the 1-based line of the
    source it came from (manifest file or annotation file) and is not serialised.
    """

    video_id: str
    path: str
    label: str
    split: str
    fps: float | None = None
    num_frames: int | None = None
    duration: float | None = None
    segments: tuple[Segment, ...] = ()
    ambiguous: tuple[tuple[float, float], ...] = ()
    line: int | None = field(default=None, compare=False)

    @property
    def labels(self) -> tuple[str, ...]:
        """The video-level labels (``label`` split on ``|``)."""
        return tuple(x for x in self.label.split(LABEL_SEP) if x)

    def with_info(self, *, fps: float | None, num_frames: int | None, duration: float | None) -> "VideoRecord":
        """A copy with probed metadata filled in where it was unknown."""
        return replace(
            self,
            fps=self.fps if self.fps is not None else fps,
            num_frames=self.num_frames if self.num_frames is not None else num_frames,
            duration=self.duration if self.duration is not None else duration,
        )

    def to_row(self) -> dict[str, str]:
        return {
            "video_id": self.video_id,
            "path": self.path,
            "label": self.label,
            "split": self.split,
            "fps": _fmt_float(self.fps),
            "num_frames": "" if self.num_frames is None else str(self.num_frames),
            "duration": _fmt_float(self.duration),
            "segments": json.dumps([s.as_list() for s in self.segments]) if self.segments else "",
            "ambiguous": json.dumps([list(a) for a in self.ambiguous]) if self.ambiguous else "",
        }


def _fmt_float(x: float | None) -> str:
    return "" if x is None else repr(float(x))


@dataclass
class Manifest:
    """A dataset's videos with its class list.

    ``task`` is ``fewshot`` (train/val/test hold disjoint classes), ``localization`` (untrimmed
    videos with segments) or ``classification``.
    """

    dataset: str
    records: list[VideoRecord]
    classes: list[str]
    task: str = "classification"
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise FsvInputError(f"manifest task must be one of {TASKS}, got {self.task!r}")

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[VideoRecord]:
        return iter(self.records)

    @property
    def splits(self) -> list[str]:
        """Split names in order of first appearance."""
        return list(dict.fromkeys(r.split for r in self.records))

    def select(self, split: str | Iterable[str] | None = None) -> list[VideoRecord]:
        """Records of one split (or several); all records when ``split`` is None."""
        if split is None:
            return list(self.records)
        wanted = {split} if isinstance(split, str) else set(split)
        unknown = wanted - set(self.splits)
        if unknown:
            raise FsvInputError(
                f"split(s) {sorted(unknown)} not in manifest {self.path or self.dataset}; it has {self.splits}"
            )
        return [r for r in self.records if r.split in wanted]

    def by_id(self) -> dict[str, VideoRecord]:
        return {r.video_id: r for r in self.records}

    def header(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "dataset": self.dataset,
            "task": self.task,
            "classes": list(self.classes),
            "sha256": self.sha256,
        }

    @property
    def sha256(self) -> str:
        """Content hash over dataset, task, classes and every row (not over the file's bytes)."""
        h = hashlib.sha256()
        h.update(json.dumps([self.dataset, self.task, list(self.classes)]).encode())
        for r in self.records:
            row = r.to_row()
            h.update(json.dumps([row[c] for c in COLUMNS]).encode())
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        """Videos, classes, segments and known metadata per split, with the content hash."""
        splits = {}
        for s in self.splits:
            rows = self.select(s)
            splits[s] = {
                "videos": len(rows),
                "classes": len({lab for r in rows for lab in r.labels}),
                "segments": sum(len(r.segments) for r in rows),
                "with_duration": sum(r.duration is not None for r in rows),
                "with_fps": sum(r.fps is not None for r in rows),
            }
        return {
            "dataset": self.dataset,
            "task": self.task,
            "path": str(self.path) if self.path else None,
            "videos": len(self),
            "classes": len(self.classes),
            "sha256": self.sha256,
            "splits": splits,
        }

    def with_records(self, records: list[VideoRecord]) -> "Manifest":
        return Manifest(self.dataset, records, list(self.classes), self.task, self.path)

    # ----------------------------------------------------------------------------- file I/O
    def write(self, path: str | Path) -> Path:
        """Write as CSV (default) or JSON Lines (``.jsonl``), atomically."""
        path = Path(path)
        buf = io.StringIO()
        buf.write(HEADER_TAG + json.dumps(self.header()) + "\n")
        if path.suffix == ".jsonl":
            for r in self.records:
                row = r.to_row()
                buf.write(json.dumps({k: v for k, v in row.items() if v != "" or k in REQUIRED_COLUMNS}) + "\n")
        else:
            writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            for r in self.records:
                writer.writerow(r.to_row())
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, buf.getvalue())
        self.path = path
        return path

    @classmethod
    def read(cls, path: str | Path, problems: ProblemList | None = None) -> "Manifest":
        """Read a manifest file.

        Row-level problems (unparsable numbers or JSON, missing columns) go to ``problems`` when
        given, with their line; otherwise they are raised together as one :class:`FsvInputError`.
        """
        path = Path(path)
        if not path.is_file():
            raise FsvInputError(f"manifest {path} does not exist; build one with `fsv manifest build`")
        own = problems if problems is not None else ProblemList()
        lines = _decode(path).splitlines()
        header: dict[str, Any] = {}
        first = 0
        if lines and lines[0].startswith(HEADER_TAG):
            try:
                header = json.loads(lines[0][len(HEADER_TAG) :])
            except json.JSONDecodeError as e:
                own.add(str(path), 1, f"unreadable manifest header ({e}); rebuild with `fsv manifest build`")
            first = 1
        if path.suffix == ".jsonl":
            rows = _jsonl_rows(lines, first, str(path), own)
        else:
            rows = _csv_rows(lines, first, str(path), own)
        records = [r for r in (_parse_row(row, line, str(path), own) for line, row in rows) if r is not None]
        classes = header.get("classes")
        if classes is None:
            classes = sorted(
                {lab for r in records for lab in r.labels} | {s.label for r in records for s in r.segments}
            )
        manifest = cls(
            dataset=header.get("dataset", path.stem),
            records=records,
            classes=list(classes),
            task=header.get("task", "classification"),
            path=path,
        )
        if problems is None:
            own.raise_if_any(f"manifest {path}")
        return manifest


def _decode(path: Path) -> str:
    """A manifest's text: UTF-8 (with or without a BOM), or UTF-16 with its BOM (as spreadsheets
    save "Unicode text"); other bytes are refused naming the line and column."""
    raw = path.read_bytes()
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as e:
            raise FsvInputError(
                f"manifest {path}: starts as UTF-16 but byte {e.start} is not UTF-16 ({e.reason}); save it as UTF-8"
            ) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise FsvInputError(
            f"manifest {path}:{line}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {column}); save the file as UTF-8 "
            "(e.g. `iconv -f latin1 -t utf-8`)"
        ) from None


def _csv_rows(lines: list[str], first: int, source: str, problems: ProblemList) -> list[tuple[int, dict[str, str]]]:
    reader = csv.reader(lines[first:])
    try:
        columns = next(reader)
    except StopIteration:
        problems.add(source, first + 1, "empty manifest: expected a header line with columns " + ",".join(COLUMNS))
        return []
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        problems.add(source, first + 1, f"missing required column(s) {missing}; columns are {columns}")
        return []
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        problems.add(source, first + 1, f"unknown column(s) {unknown}; allowed: {list(COLUMNS)}")
    out = []
    # csv.reader's line_num counts physical lines, so quoted newlines keep line numbers right;
    # a record starts on the line after the previous record's last line.
    start_line = first + 1
    consumed = reader.line_num
    for values in reader:
        line = start_line + consumed
        consumed = reader.line_num
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) != len(columns):
            problems.add(source, line, f"expected {len(columns)} fields, found {len(values)}")
            continue
        out.append((line, dict(zip(columns, values))))
    return out


def _jsonl_rows(lines: list[str], first: int, source: str, problems: ProblemList) -> list[tuple[int, dict[str, str]]]:
    out = []
    for i, text in enumerate(lines[first:], start=first + 1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            problems.add(source, i, f"invalid JSON ({e.msg})")
            continue
        if not isinstance(obj, dict):
            problems.add(source, i, "expected a JSON object per line")
            continue
        missing = [c for c in REQUIRED_COLUMNS if c not in obj]
        if missing:
            problems.add(source, i, f"missing field(s) {missing}")
            continue
        out.append((i, {k: v if isinstance(v, str) else json.dumps(v) for k, v in obj.items()}))
    return out


def _parse_row(row: dict[str, str], line: int, source: str, problems: ProblemList) -> VideoRecord | None:
    vid = row.get("video_id", "").strip()
    if not vid:
        problems.add(source, line, "empty video_id")
        return None
    ok = True

    def number(name: str, kind: type) -> Any:
        nonlocal ok
        text = (row.get(name) or "").strip()
        if not text:
            return None
        try:
            value = kind(text)
        except ValueError:
            problems.add(source, line, f"{name}={text!r} is not a number", vid)
            ok = False
            return None
        if isinstance(value, float) and not math.isfinite(value):
            problems.add(source, line, f"{name}={text!r} is not finite", vid)
            ok = False
            return None
        return value

    fps = number("fps", float)
    num_frames = number("num_frames", int)
    duration = number("duration", float)
    segments = _parse_segments(row.get("segments") or "", line, source, vid, problems)
    ambiguous = _parse_ambiguous(row.get("ambiguous") or "", line, source, vid, problems)
    if segments is None or ambiguous is None or not ok:
        return None
    return VideoRecord(
        video_id=vid,
        path=row.get("path", "").strip(),
        label=row.get("label", "").strip(),
        split=row.get("split", "").strip(),
        fps=fps,
        num_frames=num_frames,
        duration=duration,
        segments=segments,
        ambiguous=ambiguous,
        line=line,
    )


def _parse_segments(text: str, line: int, source: str, vid: str, problems: ProblemList) -> tuple[Segment, ...] | None:
    text = text.strip()
    if not text:
        return ()
    try:
        data = json.loads(text)
        segs = tuple(Segment(float(s), float(e), str(lab)) for s, e, lab in data)
    except (json.JSONDecodeError, TypeError, ValueError):
        problems.add(source, line, f"segments must be JSON [[start_s, end_s, label], ...], got {text[:60]!r}", vid)
        return None
    return segs


def _parse_ambiguous(
    text: str, line: int, source: str, vid: str, problems: ProblemList
) -> tuple[tuple[float, float], ...] | None:
    text = text.strip()
    if not text:
        return ()
    try:
        return tuple((float(s), float(e)) for s, e in json.loads(text))
    except (json.JSONDecodeError, TypeError, ValueError):
        problems.add(source, line, f"ambiguous must be JSON [[start_s, end_s], ...], got {text[:60]!r}", vid)
        return None
