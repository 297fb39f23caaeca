"""Validate a manifest and report every problem at once, each with its line."""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fsv.errors import FsvInputError
from fsv.pipeline.manifests.model import Manifest, VideoRecord
from fsv.pipeline.manifests.problems import ProblemList

TOLERANCE_S = 1e-6


def check_manifest(manifest: Manifest, root: str | Path | None = None, *, probe: bool = False) -> ProblemList:
    """All problems of ``manifest``.

    Checks duplicate ids, empty fields, labels outside the class list, segments outside
    ``[0, duration]`` or with ``start >= end``, non-positive fps/frames/duration, classes shared
    between the splits of a few-shot manifest and, with ``root``, missing, empty or unreadable files
    (``probe`` also opens each file as a video).
    """
    source = str(manifest.path) if manifest.path else manifest.dataset
    problems = duplicate_ids(manifest)
    classes = set(manifest.classes)
    for r in manifest.records:
        _check_record(r, classes, source, problems)
    if manifest.task == "fewshot":
        _check_disjoint_classes(manifest, source, problems)
    if root is not None:
        _check_files(manifest.records, Path(root), source, problems, probe=probe)
    return problems


def duplicate_ids(manifest: Manifest) -> ProblemList:
    """A problem for every row whose video id an earlier row already has (both lines named)."""
    source = str(manifest.path) if manifest.path else manifest.dataset
    problems = ProblemList()
    first_line: dict[str, int | None] = {}
    for r in manifest.records:
        if r.video_id in first_line:
            problems.add(source, r.line, f"duplicate video_id (first at line {first_line[r.video_id]})", r.video_id)
        else:
            first_line[r.video_id] = r.line
    return problems


def require_unique_ids(manifest: Manifest) -> None:
    """Raise :class:`FsvInputError` naming both lines of every id the manifest has twice: a store
    keyed by video id would keep one of them silently."""
    duplicate_ids(manifest).raise_if_any(
        f"manifest {manifest.path or manifest.dataset} has duplicate video ids (features are keyed by id; fix the manifest)"
    )


def _check_record(r: VideoRecord, classes: set[str], source: str, problems: ProblemList) -> None:
    for name in ("path", "split"):
        if not getattr(r, name):
            problems.add(source, r.line, f"empty {name}", r.video_id)
    if not r.labels and not r.segments:
        problems.add(source, r.line, "empty label", r.video_id)
    for lab in r.labels:
        if lab not in classes:
            problems.add(source, r.line, f"label {lab!r} is not in the class list", r.video_id)
    if r.fps is not None and r.fps <= 0:
        problems.add(source, r.line, f"fps must be > 0, got {r.fps}", r.video_id)
    if r.num_frames is not None and r.num_frames <= 0:
        problems.add(source, r.line, f"num_frames must be > 0, got {r.num_frames}", r.video_id)
    if r.duration is not None and r.duration <= 0:
        problems.add(source, r.line, f"duration must be > 0, got {r.duration}", r.video_id)
    spans = [(s.start, s.end, f"segment [{s.start}, {s.end}] {s.label!r}") for s in r.segments]
    spans += [(a, b, f"ambiguous segment [{a}, {b}]") for a, b in r.ambiguous]
    for start, end, what in spans:
        if start >= end:
            problems.add(source, r.line, f"{what}: start >= end", r.video_id)
        if start < -TOLERANCE_S:
            problems.add(source, r.line, f"{what}: starts before 0", r.video_id)
        if r.duration is not None and end > r.duration + TOLERANCE_S:
            problems.add(source, r.line, f"{what}: ends after the video's duration {r.duration}", r.video_id)
    for s in r.segments:
        if s.label not in classes:
            problems.add(source, r.line, f"segment label {s.label!r} is not in the class list", r.video_id)


def _check_disjoint_classes(manifest: Manifest, source: str, problems: ProblemList) -> None:
    split_classes: dict[str, set[str]] = defaultdict(set)
    first: dict[tuple[str, str], int | None] = {}
    for r in manifest.records:
        for lab in r.labels:
            split_classes[r.split].add(lab)
            first.setdefault((r.split, lab), r.line)
    splits = list(split_classes)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            for lab in sorted(split_classes[a] & split_classes[b]):
                problems.add(
                    source,
                    first[(b, lab)],
                    f"class {lab!r} is in both the {a!r} and {b!r} splits of a few-shot manifest "
                    f"(first at lines {first[(a, lab)]} and {first[(b, lab)]}); few-shot splits need disjoint classes",
                )


def _check_files(records: list[VideoRecord], root: Path, source: str, problems: ProblemList, *, probe: bool) -> None:
    if not root.is_dir():
        raise FsvInputError(f"data root {root} is not a directory")

    def one(r: VideoRecord) -> str | None:
        path = root / r.path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return f"file {path} is missing"
        except OSError as e:
            return f"file {path} cannot be read ({e.strerror})"
        if not path.is_file():
            return f"{path} is not a file"
        if size == 0:
            return f"file {path} is empty (0 bytes)"
        if not os.access(path, os.R_OK):
            return f"file {path} is not readable (permissions)"
        if probe:  # the checks extraction makes before decoding: metadata, then every packet against the header's count
            from fsv.pipeline.decode.backends import packet_timestamps
            from fsv.pipeline.decode.probe import probe_video

            try:
                probe_video(path)
                packet_timestamps(path)
            except FsvInputError as e:
                return str(e)
        return None

    with ThreadPoolExecutor(max_workers=16) as pool:
        for r, message in zip(records, pool.map(one, records)):
            if message:
                problems.add(source, r.line, message, r.video_id)


def check_source(source: str, root: Path | None = None, *, probe: bool = False) -> tuple[Manifest, ProblemList]:
    """What ``fsv manifest check`` reports: ``source`` is a manifest file (rows that do not parse
    are reported with the problems of the rows that do) or a dataset name (its files checked
    under its configured root unless ``root`` is given)."""
    from fsv.locations import locate
    from fsv.pipeline.manifests.load import load_manifest

    problems = ProblemList()
    if Path(source).is_file():
        manifest = Manifest.read(source, problems)
    else:
        manifest = load_manifest(source, root)
        if root is None:
            root = locate(manifest.dataset).root
    problems.extend(check_manifest(manifest, root, probe=probe))
    return manifest, problems
