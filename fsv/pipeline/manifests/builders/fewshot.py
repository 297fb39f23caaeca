"""Few-shot recognition splits: UCF101 and HMDB51 (ARN), SSv2 (OTAM, CMN), Kinetics-100 (CMN).

The shipped split lists (``fsv/pipeline/manifests/shipped/splits/<name>/{train,val,test}.txt``, one ``class/video_id`` a
line, from the TRX repository) define the rows; ``--splits DIR`` replaces them. Each split holds its
own classes (64/12/24 for SSv2 and Kinetics-100, 70/10/21 for UCF101, 31/10/10 for HMDB51).
"""

from __future__ import annotations

from pathlib import Path

from fsv.errors import FsvInputError
from fsv.pipeline.manifests.builders.common import finish, resolve_files
from fsv.pipeline.manifests.model import Manifest, VideoRecord
from fsv.pipeline.manifests.problems import ProblemList
from fsv.pipeline.manifests.resources import resource_path

SPLITS = ("train", "val", "test")

# dataset name -> default path template relative to the data root (file extension as published)
FEWSHOT_DATASETS: dict[str, str] = {
    "ucf101_arn": "{label}/{video_id}.avi",
    "hmdb51_arn": "{label}/{video_id}.avi",
    "ssv2_otam": "{video_id}.webm",
    "ssv2_cmn": "{video_id}.webm",
    "kinetics_cmn": "{label}/{video_id}.mp4",
}


def read_split_list(path: Path, split: str, template: str, problems: ProblemList) -> list[VideoRecord]:
    """Rows of one ``class/video_id`` list; malformed lines go to ``problems`` with their number."""
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        label, sep, vid = text.rpartition("/")
        if not sep or not label or not vid:
            problems.add(str(path), i, f"expected 'class/video_id', got {text!r}")
            continue
        records.append(VideoRecord(vid, template.format(label=label, video_id=vid), label, split, line=i))
    return records


def build_fewshot(
    name: str,
    *,
    root: Path | None = None,
    annotations: Path | None = None,
    splits: Path | None = None,
    task: str | None = None,
) -> Manifest:
    """Manifest of the few-shot split ``name`` (a key of :data:`FEWSHOT_DATASETS`)."""
    template = FEWSHOT_DATASETS[name]
    folder = splits if splits is not None else resource_path("splits", name)
    problems = ProblemList()
    records: list[VideoRecord] = []
    found = [s for s in SPLITS if (folder / f"{s}.txt").is_file()]
    if not found:
        raise FsvInputError(f"{folder}: no split lists (train.txt, val.txt, test.txt)")
    for split in found:
        records += read_split_list(folder / f"{split}.txt", split, template, problems)
    classes = list(dict.fromkeys(r.label for r in records))
    records = resolve_files(
        records,
        root,
        {r.video_id: [f"{r.label}/{r.video_id}", r.video_id] for r in records},
        {r.video_id: r.video_id for r in records},
    )
    return finish(Manifest(name, records, classes, task or "fewshot"), problems, str(folder))
