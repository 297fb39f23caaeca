"""Generic builders: a folder of class folders, and a CSV table.

``folder``: ``ROOT/<class>/<video>`` (split ``train``) or ``ROOT/<split>/<class>/<video>`` with split
folders named ``train``/``val``/``test``; ``video_id`` is the path without extension. ``--splits DIR``
assigns splits from ``class/name`` lists instead. ``csv``: columns
``video_id,path,label,split[,fps,num_frames,duration,segments]``, segments as JSON
``[[start_s, end_s, label], ...]``.

The task is ``localization`` when rows carry segments, ``fewshot`` when there are several splits with
disjoint classes, else ``classification``; ``--task`` overrides.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from fsv.errors import FsvInputError
from fsv.pipeline.manifests.builders.common import finish
from fsv.pipeline.manifests.builders.fewshot import SPLITS
from fsv.pipeline.manifests.files import FileIndex
from fsv.pipeline.manifests.model import Manifest, VideoRecord
from fsv.pipeline.manifests.problems import ProblemList


def infer_task(records: list[VideoRecord]) -> str:
    """``localization`` / ``fewshot`` / ``classification`` from the rows (see module docstring)."""
    if any(r.segments for r in records):
        return "localization"
    by_split: dict[str, set[str]] = {}
    for r in records:
        by_split.setdefault(r.split, set()).update(r.labels)
    sets = list(by_split.values())
    disjoint = all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1 :])
    return "fewshot" if len(sets) > 1 and disjoint else "classification"


def build_folder(
    *, root: Path | None = None, annotations: Path | None = None, splits: Path | None = None, task: str | None = None
) -> Manifest:
    """Manifest of ``root``'s class folders (see module docstring)."""
    if root is None:
        raise FsvInputError("the folder builder needs --root DIR (a folder of class folders)")
    if not root.is_dir():
        raise FsvInputError(f"data root {root} is not a directory")
    index = FileIndex(root)
    problems = ProblemList()
    for key, paths in sorted(index.clashes.items()):
        problems.add(
            str(root / key),
            None,
            f"{len(paths)} files would share video id {key!r} ({', '.join(sorted(paths))}); rename all but one",
            video_id=key,
        )
    records = []
    for rel in index.paths():
        parts = PurePosixPath(rel).parts
        vid = str(PurePosixPath(rel).with_suffix(""))
        if len(parts) == 3 and parts[0] in SPLITS:
            split, label = parts[0], parts[1]
        elif len(parts) == 2:
            split, label = "train", parts[0]
        else:
            problems.add(str(root / rel), None, "expected ROOT/<class>/<video> or ROOT/<split>/<class>/<video>")
            continue
        records.append(VideoRecord(vid, rel, label, split))
    if not records and not problems:
        raise FsvInputError(f"{root}: no video files found in class folders")
    if splits is not None:
        records = _assign_splits(records, splits, problems)
    classes = sorted({r.label for r in records})
    return finish(Manifest("folder", records, classes, task or infer_task(records)), problems, str(root))


def _assign_splits(records: list[VideoRecord], folder: Path, problems: ProblemList) -> list[VideoRecord]:
    """Keep the rows listed in ``folder/{train,val,test}.txt`` (``class/name`` lines), with that split."""
    by_key = {f"{r.label}/{PurePosixPath(r.path).stem}": r for r in records}
    out = []
    for split in SPLITS:
        path = folder / f"{split}.txt"
        if not path.is_file():
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            key = line.strip()
            if not key:
                continue
            r = by_key.get(key)
            if r is None:
                problems.add(str(path), i, f"{key!r} is not a video under the data root")
                continue
            out.append(VideoRecord(r.video_id, r.path, r.label, split, line=i))
    if not out and not problems:
        raise FsvInputError(f"{folder}: no split lists (train.txt, val.txt, test.txt) with rows")
    return out


def build_csv(
    *, root: Path | None = None, annotations: Path | None = None, splits: Path | None = None, task: str | None = None
) -> Manifest:
    """Manifest from a CSV given as ``--annotations FILE``; rows keep their CSV line numbers."""
    if annotations is None:
        raise FsvInputError("the csv builder needs --annotations FILE (columns video_id,path,label,split[,...])")
    problems = ProblemList()
    table = Manifest.read(annotations, problems=problems)
    records = table.records
    classes = sorted({lab for r in records for lab in r.labels} | {s.label for r in records for s in r.segments})
    return finish(Manifest(annotations.stem, records, classes, task or infer_task(records)), problems, str(annotations))
