"""Tests of the manifest subsystem: builders, file resolution, I/O, checking and probing."""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest

from fsv.errors import FsvInputError
from fsv.pipeline.decode.probe import VideoInfo, probe_video
from fsv.pipeline.manifests import (
    Manifest,
    ProblemList,
    Segment,
    VideoRecord,
    build_manifest,
    canonical_name,
    check_manifest,
    dataset_names,
    probe_manifest,
)
from fsv.pipeline.manifests.files import FileIndex
from fsv.pipeline.manifests.model import COLUMNS, HEADER_TAG
from fsv.pipeline.manifests.resources import resource_path

# ----------------------------------------------------------------------------- helpers


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def header_line(dataset: str, task: str, classes: list[str]) -> str:
    return HEADER_TAG + json.dumps({"version": 1, "dataset": dataset, "task": task, "classes": classes})


def problems_at(problems: ProblemList, line: int) -> list[str]:
    return [p.message for p in problems if p.line == line]


def read_header(path: Path) -> dict:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(HEADER_TAG)
    return json.loads(first[len(HEADER_TAG) :])


def nonblank_lines(path: Path) -> list[str]:
    return [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


# ============================================================================ THUMOS14


@pytest.fixture(scope="module")
def thumos_json() -> dict:
    return json.loads(resource_path("annotations", "thumos14.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def thumos() -> Manifest:
    return build_manifest("thumos14")


def test_thumos14_shipped_json_counts(thumos, thumos_json):
    assert thumos.dataset == "thumos14"
    assert thumos.task == "localization"
    assert len(thumos) == 412
    assert len(thumos.classes) == 20
    assert thumos.classes == thumos_json["classes"]
    assert sorted(thumos.splits) == ["test", "validation"]
    assert len(thumos.select("validation")) == 200
    assert len(thumos.select("test")) == 212
    assert len({r.video_id for r in thumos}) == 412


def test_thumos14_shipped_json_rows_match_source(thumos, thumos_json):
    db = thumos_json["database"]
    assert set(thumos.by_id()) == set(db)
    for r in thumos:
        info = db[r.video_id]
        assert r.split == info["subset"]
        assert r.path == f"{info['subset']}/{r.video_id}.mp4"
        assert r.duration == pytest.approx(info["duration"])
        assert r.fps == pytest.approx(info["fps"])
        want = sorted((float(a["segment"][0]), float(a["segment"][1]), a["label"]) for a in info["annotations"])
        assert sorted(s.as_list() for s in r.segments) == [list(w) for w in want]
        # segments sorted by time, label is the sorted set of segment labels
        assert [(s.start, s.end) for s in r.segments] == sorted((s.start, s.end) for s in r.segments)
        assert r.label == "|".join(sorted({s.label for s in r.segments}))
        assert set(r.labels) <= set(thumos.classes)
        assert r.ambiguous == tuple((float(a), float(b)) for a, b in info.get("ambiguous", []))


def test_thumos14_ambiguous_only_in_some_test_videos(thumos):
    with_amb = [r for r in thumos if r.ambiguous]
    assert 0 < len(with_amb) < len(thumos.select("test"))
    assert {r.split for r in with_amb} == {"test"}
    for r in with_amb:
        assert all(a < b for a, b in r.ambiguous)
        assert "Ambiguous" not in r.labels
    assert "Ambiguous" not in thumos.classes


def test_thumos14_shipped_check_finds_only_duration_overruns(thumos):
    # the only check problems the shipped annotations may have are segments slightly past the
    # recorded duration (a known quirk of the W-TALC durations), never label or ordering errors
    problems = check_manifest(thumos)
    for p in problems:
        assert "ends after the video's duration" in p.message, str(p)


def thumos_txt_folder(folder: Path) -> Path:
    write_lines(
        folder / "BaseballPitch_val.txt", ["video_validation_0000001 1.0 2.5", "video_validation_0000001 0.2 0.8"]
    )
    write_lines(folder / "Billiards_test.txt", ["video_test_0000001 1.0 2.5", "", "video_test_0000002  3.0   4.5 "])
    write_lines(folder / "BaseballPitch_test.txt", ["video_test_0000001 0.5 0.9"])
    write_lines(
        folder / "Ambiguous_test.txt",
        ["video_test_0000001 7.0 8.0", "video_test_0000002 9.0 9.5", "video_test_0000001 10 11"],
    )
    write_lines(folder / "README.txt", ["not an annotation file"])
    write_lines(folder / "detclasslist.txt", ["7 BaseballPitch"])
    return folder


def test_thumos14_txt_folder(tmp_path):
    folder = thumos_txt_folder(tmp_path / "ann")
    m = build_manifest("thumos14", annotations=folder)
    assert m.task == "localization"
    assert m.classes == ["BaseballPitch", "Billiards"]
    ids = m.by_id()
    assert set(ids) == {"video_validation_0000001", "video_test_0000001", "video_test_0000002"}

    val = ids["video_validation_0000001"]
    assert val.split == "validation"
    assert val.path == "validation/video_validation_0000001.mp4"
    assert val.label == "BaseballPitch"
    assert val.segments == (Segment(0.2, 0.8, "BaseballPitch"), Segment(1.0, 2.5, "BaseballPitch"))
    assert val.ambiguous == ()

    t1 = ids["video_test_0000001"]
    assert t1.split == "test"
    assert t1.path == "test/video_test_0000001.mp4"
    assert t1.label == "BaseballPitch|Billiards"
    assert t1.labels == ("BaseballPitch", "Billiards")
    assert t1.segments == (Segment(0.5, 0.9, "BaseballPitch"), Segment(1.0, 2.5, "Billiards"))
    assert t1.ambiguous == ((7.0, 8.0), (10.0, 11.0))

    t2 = ids["video_test_0000002"]
    assert t2.segments == (Segment(3.0, 4.5, "Billiards"),)
    assert t2.ambiguous == ((9.0, 9.5),)
    assert check_manifest(m).problems == []


def test_thumos14_txt_folder_ambiguous_only_video(tmp_path):
    folder = tmp_path / "ann"
    write_lines(folder / "Billiards_test.txt", ["video_test_0000001 1.0 2.5"])
    write_lines(folder / "Ambiguous_test.txt", ["video_test_0000009 1.0 2.0"])
    m = build_manifest("thumos14", annotations=folder)
    r = m.by_id()["video_test_0000009"]
    assert r.segments == () and r.label == "" and r.ambiguous == ((1.0, 2.0),)
    assert m.classes == ["Billiards"]


def test_thumos14_txt_folder_malformed_lines_reported_together(tmp_path):
    folder = thumos_txt_folder(tmp_path / "ann")
    write_lines(
        folder / "Billiards_test.txt",
        ["video_test_0000001 1.0 2.5", "video_test_0000002 3.0", "video_test_0000003 x 4"],
    )
    write_lines(folder / "HighJump_val.txt", ["", "", "video_validation_0000002"])
    with pytest.raises(FsvInputError) as e:
        build_manifest("thumos14", annotations=folder)
    msg = str(e.value)
    assert f"{folder / 'Billiards_test.txt'}:2:" in msg
    assert f"{folder / 'Billiards_test.txt'}:3:" in msg
    assert f"{folder / 'HighJump_val.txt'}:3:" in msg
    assert "3 problem(s)" in msg


def test_thumos14_txt_folder_without_annotation_files(tmp_path):
    folder = tmp_path / "ann"
    write_lines(folder / "README.txt", ["nothing here"])
    with pytest.raises(FsvInputError, match="no THUMOS14 annotation files"):
        build_manifest("thumos14", annotations=folder)


def test_thumos14_json_malformed_entries(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps(
            {
                "classes": ["A"],
                "database": {
                    "good": {"subset": "test", "duration": 10, "annotations": [{"segment": [1, 2], "label": "A"}]},
                    "nosubset": {"duration": 10, "annotations": []},
                    "badseg": {"subset": "test", "annotations": [{"segment": [1], "label": "A"}]},
                    "badfps": {"subset": "test", "fps": "fast", "annotations": []},
                    "badduration": {"subset": "test", "duration": "long", "annotations": []},
                },
            }
        )
    )
    with pytest.raises(FsvInputError) as e:
        build_manifest("thumos14", annotations=path)
    msg = str(e.value)
    for vid in ("nosubset", "badseg", "badfps", "badduration"):
        assert f"[{vid}]" in msg
    assert "[good]" not in msg
    assert "4 problem(s)" in msg


def test_thumos14_json_without_database_or_invalid_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"videos": []}))
    with pytest.raises(FsvInputError, match="database"):
        build_manifest("thumos14", annotations=bad)
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "database": {\n    "a": ,\n  }\n}\n')
    with pytest.raises(FsvInputError, match=rf"{broken}:3: invalid JSON"):
        build_manifest("thumos14", annotations=broken)
    with pytest.raises(FsvInputError, match="does not exist"):
        build_manifest("thumos14", annotations=tmp_path / "nope.json")


def test_thumos14_resolves_paths_under_root(tmp_path):
    folder = thumos_txt_folder(tmp_path / "ann")
    root = tmp_path / "videos"
    touch(root / "test" / "video_test_0000001.mp4")  # the default candidate
    touch(root / "elsewhere" / "deep" / "video_test_0000002.avi")  # found by stem
    m = build_manifest("thumos14", annotations=folder, root=root)
    ids = m.by_id()
    assert ids["video_test_0000001"].path == "test/video_test_0000001.mp4"
    assert ids["video_test_0000002"].path == "elsewhere/deep/video_test_0000002.avi"
    assert ids["video_validation_0000001"].path == "validation/video_validation_0000001.mp4"  # not found: default
    problems = check_manifest(m, root)
    assert [p.video_id for p in problems] == ["video_validation_0000001"]
    assert "missing" in problems.problems[0].message


# ============================================================================ ActivityNet


def anet_json(path: Path, version: str) -> Path:
    data = {
        "version": version,
        "taxonomy": [],
        "database": {
            "abc123": {
                "subset": "training",
                "duration": 100.5,
                "url": "https://www.youtube.com/watch?v=abc123",
                "annotations": [
                    {"segment": [40.0, 60.0], "label": "Long jump"},
                    {"segment": [5.0, 20.5], "label": "Archery"},
                ],
            },
            "def456": {
                "subset": "validation",
                "duration": 30.0,
                "annotations": [{"segment": [1.0, 2.0], "label": "Archery"}],
            },
            "ghi789": {"subset": "testing", "duration": 50.0, "annotations": []},
            "jkl000": {
                "subset": "testing",
                "duration": 50.0,
                "annotations": [{"segment": [1.0, 2.0], "label": "Secret"}],
            },
        },
    }
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "dataset,version", [("activitynet13", "ActivityNet 1.3"), ("activitynet12", "ActivityNet 1.2")]
)
def test_activitynet_official_json(tmp_path, dataset, version):
    path = anet_json(tmp_path / "anet.json", version)
    m = build_manifest(dataset, annotations=path)
    assert m.dataset == dataset
    assert m.task == "localization"
    ids = m.by_id()
    assert set(ids) == {"abc123", "def456"}  # testing subset left out
    assert m.classes == ["Archery", "Long jump"]  # "Secret" only appears in testing
    a = ids["abc123"]
    assert a.split == "training" and a.path == "v_abc123.mp4" and a.duration == 100.5
    assert a.segments == (Segment(5.0, 20.5, "Archery"), Segment(40.0, 60.0, "Long jump"))
    assert a.label == "Archery|Long jump"
    assert ids["def456"].split == "validation"
    assert sorted(m.splits) == ["training", "validation"]
    assert check_manifest(m).problems == []


@pytest.mark.parametrize(
    "dataset,version", [("activitynet12", "ActivityNet 1.3"), ("activitynet13", "ActivityNet 1.2")]
)
def test_activitynet_version_mismatch(tmp_path, dataset, version):
    path = anet_json(tmp_path / "anet.json", version)
    with pytest.raises(FsvInputError, match="version") as e:
        build_manifest(dataset, annotations=path)
    assert str(path) in str(e.value)


def test_activitynet_needs_annotations_and_database(tmp_path):
    with pytest.raises(FsvInputError, match="activity_net.v1-3.min.json"):
        build_manifest("activitynet13")
    with pytest.raises(FsvInputError, match="activity_net.v1-2.min.json"):
        build_manifest("activitynet12")
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"version": "ActivityNet 1.3", "database": []}))
    with pytest.raises(FsvInputError, match="database"):
        build_manifest("activitynet13", annotations=bad)


def test_activitynet_malformed_entry_named(tmp_path):
    path = tmp_path / "anet.json"
    path.write_text(
        json.dumps(
            {
                "version": "ActivityNet 1.3",
                "database": {
                    "ok": {"subset": "training", "duration": 5, "annotations": [{"segment": [0, 1], "label": "A"}]},
                    "broken": {"subset": "training", "duration": 5, "annotations": [{"segment": [0, 1]}]},
                    "nosub": {"duration": 5},
                },
            }
        )
    )
    with pytest.raises(FsvInputError) as e:
        build_manifest("activitynet13", annotations=path)
    msg = str(e.value)
    assert "[broken]" in msg and "[nosub]" in msg and "[ok]" not in msg
    assert "2 problem(s)" in msg


def test_activitynet_warns_on_unexpected_class_count(tmp_path, caplog):
    path = anet_json(tmp_path / "anet.json", "ActivityNet 1.3")
    with caplog.at_level(logging.WARNING):
        build_manifest("activitynet13", annotations=path)
    assert any("found 2 classes" in rec.getMessage() for rec in caplog.records)


def test_activitynet_resolves_paths_under_root(tmp_path):
    path = anet_json(tmp_path / "anet.json", "ActivityNet 1.3")
    root = tmp_path / "data"
    touch(root / "train_videos" / "v_abc123.mkv")  # by stem, other extension
    touch(root / "def456.mp4")  # without the v_ prefix
    m = build_manifest("activitynet13", annotations=path, root=root)
    assert m.by_id()["abc123"].path == "train_videos/v_abc123.mkv"
    assert m.by_id()["def456"].path == "def456.mp4"
    assert check_manifest(m, root).problems == []
    with pytest.raises(FsvInputError, match="not a directory"):
        build_manifest("activitynet13", annotations=path, root=tmp_path / "nope")


# ============================================================================ few-shot splits

FEWSHOT = [
    # (name given, canonical name, classes per train/val/test, path of a row given label & id)
    ("ucf101", "ucf101_arn", (70, 10, 21), "{label}/{video_id}.avi"),
    ("hmdb51", "hmdb51_arn", (31, 10, 10), "{label}/{video_id}.avi"),
    ("ssv2_otam", "ssv2_otam", (64, 12, 24), "{video_id}.webm"),
    ("ssv2_cmn", "ssv2_cmn", (64, 12, 24), "{video_id}.webm"),
    ("kinetics100", "kinetics_cmn", (64, 12, 24), "{label}/{video_id}.mp4"),
]


@pytest.mark.parametrize("name,canonical,counts,template", FEWSHOT, ids=[f[0] for f in FEWSHOT])
def test_fewshot_shipped_splits(name, canonical, counts, template):
    m = build_manifest(name)
    assert canonical_name(name) == canonical
    assert m.dataset == canonical
    assert m.task == "fewshot"
    assert m.splits == ["train", "val", "test"]
    per_split = {s: {r.label for r in m.select(s)} for s in m.splits}
    assert tuple(len(per_split[s]) for s in ("train", "val", "test")) == counts
    assert not per_split["train"] & per_split["val"]
    assert not per_split["train"] & per_split["test"]
    assert not per_split["val"] & per_split["test"]
    assert set(m.classes) == set().union(*per_split.values())
    assert len(m.classes) == sum(counts)
    folder = resource_path("splits", canonical)
    lines = {s: nonblank_lines(folder / f"{s}.txt") for s in ("train", "val", "test")}
    assert len(m) == sum(len(v) for v in lines.values())
    assert len(m.by_id()) == len(m)  # ids unique
    for r in m.select("test")[:50] + m.select("train")[-50:]:
        assert lines[r.split][r.line - 1] == f"{r.label}/{r.video_id}"
        assert r.path == template.format(label=r.label, video_id=r.video_id)
    assert check_manifest(m).problems == []


def test_fewshot_shipped_splits_equal_reference(shared_data):
    for name in ("ucf101_arn", "hmdb51_arn", "ssv2_otam", "ssv2_cmn", "kinetics_cmn"):
        for split in ("train", "val", "test"):
            ours = resource_path("splits", name, f"{split}.txt").read_bytes()
            assert ours == (shared_data / "splits" / name / f"{split}.txt").read_bytes(), (name, split)


def test_dataset_names_and_unknown_dataset():
    names = dataset_names()
    for n in (
        "thumos14",
        "activitynet12",
        "activitynet13",
        "ucf101",
        "hmdb51",
        "ssv2_otam",
        "ssv2_cmn",
        "kinetics100",
        "folder",
        "csv",
    ):
        assert n in names
    assert canonical_name("UCF101") == "ucf101_arn"
    assert canonical_name("SSv2-OTAM") == "ssv2_otam"
    with pytest.raises(FsvInputError, match="unknown dataset 'nope'") as e:
        build_manifest("nope")
    assert "thumos14" in str(e.value)


def test_fewshot_splits_override(tmp_path):
    folder = tmp_path / "splits"
    write_lines(
        folder / "train.txt",
        ["Archery/v_Archery_g01_c01", "Archery/v_Archery_g01_c02", "", "Bowling/v_Bowling_g02_c01"],
    )
    write_lines(folder / "test.txt", ["Yo Yo/v_YoYo_g01_c01"])
    m = build_manifest("ucf101", splits=folder)
    assert m.splits == ["train", "test"]
    assert m.classes == ["Archery", "Bowling", "Yo Yo"]
    assert [(r.video_id, r.line) for r in m] == [
        ("v_Archery_g01_c01", 1),
        ("v_Archery_g01_c02", 2),
        ("v_Bowling_g02_c01", 4),
        ("v_YoYo_g01_c01", 1),
    ]
    assert m.by_id()["v_YoYo_g01_c01"].path == "Yo Yo/v_YoYo_g01_c01.avi"
    assert build_manifest("ucf101", splits=folder, task="classification").task == "classification"


def test_fewshot_splits_override_malformed_lines(tmp_path):
    folder = tmp_path / "splits"
    write_lines(folder / "train.txt", ["Archery/v_Archery_g01_c01", "Archery/v_Archery_g01_c02", "no_slash_here"])
    write_lines(folder / "val.txt", ["Bowling/"])
    write_lines(folder / "test.txt", ["/orphan_id", "YoYo/v_YoYo_g01_c01"])
    with pytest.raises(FsvInputError) as e:
        build_manifest("ucf101", splits=folder)
    msg = str(e.value)
    assert f"{folder / 'train.txt'}:3:" in msg and "no_slash_here" in msg
    assert f"{folder / 'val.txt'}:1:" in msg
    assert f"{folder / 'test.txt'}:1:" in msg
    assert f"{folder / 'test.txt'}:2:" not in msg
    assert "3 problem(s)" in msg


def test_fewshot_splits_override_duplicates_and_empty(tmp_path):
    folder = tmp_path / "splits"
    write_lines(folder / "train.txt", ["A/v1", "A/v2"])
    write_lines(folder / "test.txt", ["B/x", "B/v1"])
    with pytest.raises(FsvInputError, match=r"\[v1\] duplicate video_id"):
        build_manifest("hmdb51", splits=folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FsvInputError, match="no split lists"):
        build_manifest("hmdb51", splits=empty)


# ============================================================================ path resolution


def test_ucf101_resolves_files_in_another_layout(tmp_path):
    root = tmp_path / "ucf"
    touch(root / "Archery" / "v_Archery_g01_c01.avi")  # the published layout
    touch(root / "UCF-101" / "nested" / "v_Archery_g01_c02.avi")  # only the stem matches
    touch(root / "v_Archery_g01_c03.mp4")  # flat, other extension
    touch(root / "a" / "v_Archery_g01_c04.avi")  # two files share the stem: ambiguous, not guessed
    touch(root / "b" / "v_Archery_g01_c04.avi")
    touch(root / "Archery" / "v_Archery_g01_c05.txt")  # not a video extension
    m = build_manifest("ucf101", root=root)
    ids = m.by_id()
    assert ids["v_Archery_g01_c01"].path == "Archery/v_Archery_g01_c01.avi"
    assert ids["v_Archery_g01_c02"].path == "UCF-101/nested/v_Archery_g01_c02.avi"
    assert ids["v_Archery_g01_c03"].path == "v_Archery_g01_c03.mp4"
    assert ids["v_Archery_g01_c04"].path == "Archery/v_Archery_g01_c04.avi"  # default kept
    assert ids["v_Archery_g01_c05"].path == "Archery/v_Archery_g01_c05.avi"  # default kept
    for vid in ("v_Archery_g01_c01", "v_Archery_g01_c02", "v_Archery_g01_c03"):
        assert (root / ids[vid].path).is_file()
    sub = m.with_records([ids[f"v_Archery_g01_c0{i}"] for i in range(1, 6)])
    problems = check_manifest(sub, root)
    assert sorted(p.video_id for p in problems) == ["v_Archery_g01_c04", "v_Archery_g01_c05"]
    assert all("missing" in p.message for p in problems)


def test_ssv2_and_kinetics_resolve_files(tmp_path):
    root = tmp_path / "ssv2"
    touch(root / "20bn-something-something-v2" / "78687.webm")
    m = build_manifest("ssv2_otam", root=root)
    assert m.by_id()["78687"].path == "20bn-something-something-v2/78687.webm"
    root = tmp_path / "k"
    touch(root / "train" / "air drumming" / "-VtLx-mcPds_000012_000022.mp4")
    m = build_manifest("kinetics100", root=root)
    assert m.by_id()["-VtLx-mcPds_000012_000022"].path == "train/air drumming/-VtLx-mcPds_000012_000022.mp4"


def test_file_index(tmp_path):
    touch(tmp_path / "A" / "x.mp4")
    touch(tmp_path / "A" / "y.MKV")
    touch(tmp_path / "B" / "x.avi")
    touch(tmp_path / "B" / "readme.md")
    index = FileIndex(tmp_path)
    assert index.paths() == ["A/x.mp4", "A/y.MKV", "B/x.avi"]
    assert index.find(["B/x", "A/x"]) == "B/x.avi"  # candidates in order
    assert index.find(["C/x"], stem="y") == "A/y.MKV"
    assert index.find(["C/x"], stem="x") is None  # ambiguous stem
    assert index.find([], stem="readme") is None


# ============================================================================ folder builder


def test_folder_builder_class_folders(tmp_path):
    root = tmp_path / "data"
    for rel in ("Archery/a1.mp4", "Archery/a2.avi", "Bowling/b1.mkv", "Bowling/notes.txt"):
        touch(root / rel)
    m = build_manifest("folder", root=root)
    assert m.dataset == "folder"
    assert [(r.video_id, r.path, r.label, r.split) for r in m] == [
        ("Archery/a1", "Archery/a1.mp4", "Archery", "train"),
        ("Archery/a2", "Archery/a2.avi", "Archery", "train"),
        ("Bowling/b1", "Bowling/b1.mkv", "Bowling", "train"),
    ]
    assert m.classes == ["Archery", "Bowling"]
    assert m.task == "classification"
    assert check_manifest(m, root).problems == []
    assert build_manifest("folder", root=root, task="fewshot").task == "fewshot"


def test_folder_builder_split_folders(tmp_path):
    root = tmp_path / "data"
    for rel in ("train/A/x.mp4", "train/B/y.mp4", "val/C/z.mp4", "test/D/w.webm"):
        touch(root / rel)
    m = build_manifest("folder", root=root)
    assert {(r.video_id, r.split, r.label) for r in m} == {
        ("train/A/x", "train", "A"),
        ("train/B/y", "train", "B"),
        ("val/C/z", "val", "C"),
        ("test/D/w", "test", "D"),
    }
    assert m.by_id()["test/D/w"].path == "test/D/w.webm"
    assert m.task == "fewshot"  # several splits with disjoint classes
    touch(root / "test" / "A" / "again.mp4")
    assert build_manifest("folder", root=root).task == "classification"


def test_folder_builder_bad_layout_and_errors(tmp_path):
    root = tmp_path / "data"
    touch(root / "A" / "ok.mp4")
    touch(root / "stray.mp4")
    touch(root / "other" / "A" / "deep.mp4")
    with pytest.raises(FsvInputError) as e:
        build_manifest("folder", root=root)
    msg = str(e.value)
    assert str(root / "stray.mp4") in msg and str(root / "other" / "A" / "deep.mp4") in msg
    assert "2 problem(s)" in msg
    with pytest.raises(FsvInputError, match="needs --root"):
        build_manifest("folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FsvInputError, match="no video files"):
        build_manifest("folder", root=tmp_path / "empty")
    with pytest.raises(FsvInputError, match="not a directory"):
        build_manifest("folder", root=tmp_path / "absent")


def test_folder_builder_with_split_lists(tmp_path):
    root = tmp_path / "data"
    for rel in ("A/x.mp4", "A/y.mp4", "B/z.mp4", "C/unlisted.mp4"):
        touch(root / rel)
    lists = tmp_path / "lists"
    write_lines(lists / "train.txt", ["A/x", "A/y"])
    write_lines(lists / "test.txt", ["B/z"])
    m = build_manifest("folder", root=root, splits=lists)
    assert [(r.video_id, r.split, r.line) for r in m] == [("A/x", "train", 1), ("A/y", "train", 2), ("B/z", "test", 1)]
    assert m.classes == ["A", "B"]
    assert m.task == "fewshot"
    write_lines(lists / "test.txt", ["B/z", "Q/missing", "B/z"])
    with pytest.raises(FsvInputError) as e:
        build_manifest("folder", root=root, splits=lists)
    assert f"{lists / 'test.txt'}:2:" in str(e.value)
    assert "duplicate video_id" in str(e.value)


# ============================================================================ csv builder


def test_csv_builder_with_segments(tmp_path):
    path = write_lines(
        tmp_path / "mydata.csv",
        [
            "video_id,path,label,split,fps,num_frames,duration,segments",
            'a,vids/a.mp4,Run,train,25,250,10.0,"[[1.0, 2.0, ""Run""]]"',
            'b,vids/b.mp4,Jump|Run,test,30.0,,,"[[0.5, 1.5, ""Jump""], [3, 4, ""Run""]]"',
            "c,vids/c.mp4,Swim,test,,,,",
        ],
    )
    m = build_manifest("csv", annotations=path)
    assert m.dataset == "mydata"
    assert m.task == "localization"
    assert m.classes == ["Jump", "Run", "Swim"]
    a, b, c = m.records
    assert (a.line, b.line, c.line) == (2, 3, 4)
    assert (a.fps, a.num_frames, a.duration) == (25.0, 250, 10.0)
    assert b.segments == (Segment(0.5, 1.5, "Jump"), Segment(3.0, 4.0, "Run"))
    assert b.labels == ("Jump", "Run")
    assert (c.fps, c.num_frames, c.duration, c.segments) == (None, None, None, ())
    assert build_manifest("csv", annotations=path, task="classification").task == "classification"


def test_csv_builder_infers_fewshot_and_classification(tmp_path):
    path = write_lines(tmp_path / "fs.csv", ["video_id,path,label,split", "a,a.mp4,A,train", "b,b.mp4,B,test"])
    assert build_manifest("csv", annotations=path).task == "fewshot"
    path = write_lines(tmp_path / "cl.csv", ["video_id,path,label,split", "a,a.mp4,A,train", "b,b.mp4,A,test"])
    assert build_manifest("csv", annotations=path).task == "classification"
    path = write_lines(tmp_path / "one.csv", ["video_id,path,label,split", "a,a.mp4,A,train", "b,b.mp4,B,train"])
    assert build_manifest("csv", annotations=path).task == "classification"


def test_csv_builder_reports_bad_rows_with_lines(tmp_path):
    path = write_lines(
        tmp_path / "bad.csv",
        [
            "video_id,path,label,split,fps,num_frames,duration,segments",  # 1
            "ok,ok.mp4,A,train,25,10,1.0,",  # 2
            "badfps,x.mp4,A,train,fast,,,",  # 3
            "",  # 4 (blank lines are skipped but counted)
            'badseg,x.mp4,A,train,,,,"not json"',  # 5
            "short,x.mp4,A",  # 6
            "badframes,x.mp4,A,train,,1.5,,",  # 7
            ",x.mp4,A,train,,,,",  # 8 empty id
            "ok,dup.mp4,A,train,,,,",  # 9 duplicate of line 2
            "inf,x.mp4,A,train,,,inf,",  # 10
        ],
    )
    with pytest.raises(FsvInputError) as e:
        build_manifest("csv", annotations=path)
    msg = str(e.value)
    for line in (3, 5, 6, 7, 8, 9, 10):
        assert f"{path}:{line}:" in msg, line
    assert f"{path}:2:" not in msg and f"{path}:4:" not in msg
    assert "7 problem(s)" in msg
    assert "first at line 2" in msg


def test_csv_builder_missing_inputs(tmp_path):
    with pytest.raises(FsvInputError, match="needs --annotations"):
        build_manifest("csv")
    with pytest.raises(FsvInputError, match="does not exist"):
        build_manifest("csv", annotations=tmp_path / "nope.csv")
    path = write_lines(tmp_path / "cols.csv", ["video_id,file,label", "a,a.mp4,A"])
    with pytest.raises(FsvInputError, match=r"cols.csv:1: missing required column\(s\) \['path', 'split'\]"):
        build_manifest("csv", annotations=path)


# ============================================================================ write / read


def rich_manifest() -> Manifest:
    return Manifest(
        "demo",
        [
            VideoRecord("v1", "a/v1.mp4", "Run", "train", fps=29.97, num_frames=300, duration=10.01),
            VideoRecord(
                "v2",
                "b/v 2.mp4",
                "Jump|Run",
                "test",
                fps=25.0,
                duration=12.5,
                segments=(Segment(0.5, 1.25, "Jump"), Segment(3.0, 4.0, "Run")),
                ambiguous=((5.0, 6.0),),
            ),
            VideoRecord("v3", 'c/"quoted", name.mp4', 'Odd, "label"', "test"),
            VideoRecord("v4", "d/v4.mp4", "Run", "val", num_frames=1),
        ],
        ["Run", "Jump", 'Odd, "label"'],
        "localization",
    )


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_write_read_round_trip(tmp_path, suffix):
    m = rich_manifest()
    path = m.write(tmp_path / "sub" / f"demo{suffix}")
    assert path.is_file() and m.path == path
    assert not [p for p in path.parent.iterdir() if "partial" in p.name]
    back = Manifest.read(path)
    assert back.records == m.records
    assert back.sha256 == m.sha256
    assert (back.dataset, back.task, back.classes) == ("demo", "localization", m.classes)
    assert back.path == path
    first_row = 3 if suffix == ".csv" else 2
    assert [r.line for r in back] == list(range(first_row, first_row + 4))
    header = read_header(path)
    assert header == {"version": 1, "dataset": "demo", "task": "localization", "classes": m.classes, "sha256": m.sha256}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_write_read_round_trip_thumos(tmp_path, thumos, suffix):
    path = thumos.write(tmp_path / f"thumos14{suffix}")
    back = Manifest.read(path)
    assert back.records == thumos.records
    assert back.sha256 == thumos.sha256
    assert read_header(path)["classes"] == thumos.classes


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_write_read_round_trip_empty_label(tmp_path, suffix):
    # a THUMOS14 video with only Ambiguous segments has no label; writing must not lose the column
    m = Manifest("x", [VideoRecord("a", "a.mp4", "", "test", ambiguous=((1.0, 2.0),))], ["A"], "localization")
    back = Manifest.read(m.write(tmp_path / f"x{suffix}"))
    assert back.records == m.records
    assert back.sha256 == m.sha256


def test_csv_file_layout(tmp_path):
    m = rich_manifest()
    path = m.write(tmp_path / "demo.csv")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith(HEADER_TAG)
    assert lines[1] == ",".join(COLUMNS)
    rows = list(csv.DictReader(lines[1:]))
    assert json.loads(rows[1]["segments"]) == [[0.5, 1.25, "Jump"], [3.0, 4.0, "Run"]]
    assert json.loads(rows[1]["ambiguous"]) == [[5.0, 6.0]]
    assert rows[2]["label"] == 'Odd, "label"'


def test_sha256_tracks_content():
    m = rich_manifest()
    base = m.sha256
    assert len(base) == 64
    assert Manifest("demo", list(m.records), list(m.classes), "localization").sha256 == base
    # line numbers are not content
    assert m.with_records([replace(r, line=99) for r in m.records]).sha256 == base

    def changed(i: int, **kw) -> str:
        records = list(m.records)
        records[i] = replace(records[i], **kw)
        return m.with_records(records).sha256

    assert changed(0, fps=30.0) != base
    assert changed(0, label="Jump") != base
    assert changed(3, split="test") != base
    assert changed(1, segments=(Segment(0.5, 1.3, "Jump"), Segment(3.0, 4.0, "Run"))) != base
    assert changed(1, ambiguous=()) != base
    assert changed(2, path="elsewhere.mp4") != base
    assert Manifest("demo", m.records, m.classes[:2], "localization").sha256 != base
    assert Manifest("demo", m.records, m.classes, "classification").sha256 != base
    assert Manifest("other", m.records, m.classes, "localization").sha256 != base
    assert m.with_records(m.records[::-1]).sha256 != base


def test_sha256_changes_when_file_row_changes(tmp_path):
    path = rich_manifest().write(tmp_path / "m.csv")
    before = Manifest.read(path).sha256
    text = path.read_text(encoding="utf-8").replace("a/v1.mp4,Run,train,29.97", "a/v1.mp4,Run,train,30.0")
    path.write_text(text, encoding="utf-8")
    assert Manifest.read(path).sha256 != before


def test_read_without_header_infers_classes(tmp_path):
    path = write_lines(
        tmp_path / "plain.csv", ["video_id,path,label,split,segments", 'a,a.mp4,B|A,train,"[[0, 1, ""C""]]"']
    )
    m = Manifest.read(path)
    assert m.dataset == "plain" and m.task == "classification"
    assert m.classes == ["A", "B", "C"]
    assert m.records[0].line == 2


def test_read_jsonl_rows_and_problems(tmp_path):
    path = write_lines(
        tmp_path / "m.jsonl",
        [
            header_line("j", "classification", ["A"]),
            json.dumps({"video_id": "a", "path": "a.mp4", "label": "A", "split": "train", "fps": 25, "num_frames": 10}),
            "",
            "{not json",
            json.dumps(["a", "list"]),
            json.dumps({"video_id": "b", "label": "A"}),
            json.dumps({"video_id": "c", "path": "c.mp4", "label": "A", "split": "train", "segments": [[0, 1, "A"]]}),
        ],
    )
    problems = ProblemList()
    m = Manifest.read(path, problems=problems)
    assert [(r.video_id, r.line) for r in m] == [("a", 2), ("c", 7)]
    assert m.records[0].fps == 25.0 and m.records[0].num_frames == 10
    assert m.records[1].segments == (Segment(0.0, 1.0, "A"),)
    assert [p.line for p in problems] == [4, 5, 6]
    assert "missing field(s) ['path', 'split']" in problems.problems[2].message
    with pytest.raises(FsvInputError, match="3 problem"):
        Manifest.read(path)


def test_read_errors(tmp_path):
    with pytest.raises(FsvInputError, match="does not exist"):
        Manifest.read(tmp_path / "nope.csv")
    path = write_lines(tmp_path / "h.csv", [HEADER_TAG + "{broken", "video_id,path,label,split", "a,a.mp4,A,train"])
    problems = ProblemList()
    m = Manifest.read(path, problems=problems)
    assert [p.line for p in problems] == [1] and "header" in problems.problems[0].message
    assert [r.video_id for r in m] == ["a"]
    path = write_lines(tmp_path / "u.csv", ["video_id,path,label,split,colour", "a,a.mp4,A,train,red"])
    problems = ProblemList()
    Manifest.read(path, problems=problems)
    assert [p.line for p in problems] == [1] and "colour" in problems.problems[0].message
    path = write_lines(tmp_path / "e.csv", [header_line("e", "classification", [])])
    problems = ProblemList()
    assert len(Manifest.read(path, problems=problems)) == 0
    assert [p.line for p in problems] == [2]


def test_read_multiline_quoted_field_keeps_line_numbers(tmp_path):
    path = write_lines(
        tmp_path / "ml.csv",
        [
            "video_id,path,label,split,segments",  # 1
            'a,a.mp4,A,train,"[[0, 1,',  # 2
            ' ""A""]]"',  # 3
            "b,b.mp4,A,train,",  # 4
            "bad,b.mp4,A,train,,extra",  # 5
        ],
    )
    problems = ProblemList()
    m = Manifest.read(path, problems=problems)
    assert [(r.video_id, r.line) for r in m] == [("a", 2), ("b", 4)]
    assert m.records[0].segments == (Segment(0.0, 1.0, "A"),)
    assert [p.line for p in problems] == [5]


def test_manifest_model_basics():
    m = rich_manifest()
    assert len(m) == 4 and [r.video_id for r in m] == ["v1", "v2", "v3", "v4"]
    assert m.splits == ["train", "test", "val"]
    assert [r.video_id for r in m.select("test")] == ["v2", "v3"]
    assert [r.video_id for r in m.select(["train", "val"])] == ["v1", "v4"]
    assert len(m.select()) == 4
    with pytest.raises(FsvInputError, match="not in manifest"):
        m.select("nope")
    with pytest.raises(FsvInputError, match="task"):
        Manifest("x", [], [], "detection")
    r = VideoRecord("a", "a.mp4", "A", "train", fps=12.0)
    filled = r.with_info(fps=25.0, num_frames=10, duration=0.4)
    assert (filled.fps, filled.num_frames, filled.duration) == (12.0, 10, 0.4)
    assert VideoRecord("a", "a", "|A||B|", "s").labels == ("A", "B")


# ============================================================================ check_manifest


def test_check_reports_every_problem_with_its_line(tmp_path):
    root = tmp_path / "data"
    for name in (
        "ok.mp4",
        "dup.mp4",
        "badlab.mp4",
        "inv.mp4",
        "out.mp4",
        "neg.mp4",
        "zfps.mp4",
        "nfps.mp4",
        "seglab.mp4",
        "frames.mp4",
        "dur.mp4",
        "amb.mp4",
    ):
        touch(root / name, b"not empty")
    touch(root / "empty.mp4", b"")
    (root / "adir.mp4").mkdir()
    lines = [
        header_line("hand", "localization", ["A", "B"]),  # 1
        ",".join(COLUMNS),  # 2
        'ok,ok.mp4,A|B,test,25.0,16,10.0,"[[0.0, 10.0, ""A""]]","[[1.0, 2.0]]"',  # 3
        "dup,dup.mp4,A,test,25.0,,,,",  # 4
        "dup,dup.mp4,B,test,25.0,,,,",  # 5 duplicate of line 4
        "badlab,badlab.mp4,Z,test,,,,,",  # 6 label not in class list
        "",  # 7 blank
        'inv,inv.mp4,A,test,,,10.0,"[[5.0, 2.0, ""A""]]",',  # 8 start >= end
        'out,out.mp4,A,test,,,10.0,"[[8.0, 12.0, ""A""]]",',  # 9 ends after duration
        'neg,neg.mp4,A,test,,,10.0,"[[-1.0, 2.0, ""A""]]",',  # 10 starts before 0
        "zfps,zfps.mp4,A,test,0,,,,",  # 11 zero fps
        "nfps,nfps.mp4,A,test,-5.0,,,,",  # 12 negative fps
        "missing,missing.mp4,A,test,,,,,",  # 13 missing file
        "empty,empty.mp4,A,test,,,,,",  # 14 0-byte file
        'seglab,seglab.mp4,A,test,,,,"[[0.0, 1.0, ""Q""]]",',  # 15 segment label not in classes
        "frames,frames.mp4,A,test,,0,,,",  # 16 zero num_frames
        "dur,dur.mp4,A,test,,,-2.0,,",  # 17 negative duration
        'amb,amb.mp4,A,test,,,5.0,,"[[4.0, 6.0]]"',  # 18 ambiguous after duration
        "adir,adir.mp4,A,test,,,,,",  # 19 a directory
        "nopath,,A,,,,,,",  # 20 empty path and split
    ]
    path = write_lines(tmp_path / "hand.csv", lines)
    m = Manifest.read(path)
    problems = check_manifest(m, root)
    expected = {
        5: ["duplicate video_id (first at line 4)"],
        6: ["label 'Z' is not in the class list"],
        8: ["start >= end"],
        9: ["ends after the video's duration 10.0"],
        10: ["starts before 0"],
        11: ["fps must be > 0"],
        12: ["fps must be > 0"],
        13: ["missing"],
        14: ["empty (0 bytes)"],
        15: ["segment label 'Q' is not in the class list"],
        16: ["num_frames must be > 0"],
        17: ["duration must be > 0"],
        18: ["ambiguous segment [4.0, 6.0]: ends after"],
        19: ["is not a file"],
        20: ["empty path", "empty split", "is not a file"],
    }
    got = {line: problems_at(problems, line) for line in {p.line for p in problems}}
    assert set(got) == set(expected), problems.format()
    for line, wants in expected.items():
        assert len(got[line]) == len(wants), (line, got[line])
        for want in wants:
            assert any(want in msg for msg in got[line]), (line, want, got[line])
    assert all(p.source == str(path) for p in problems)
    by_line = {p.line: p.video_id for p in problems}
    assert by_line[5] == "dup" and by_line[14] == "empty" and by_line[13] == "missing"
    assert str(root / "missing.mp4") in problems_at(problems, 13)[0]
    # without a root no file checks are made, every other problem is still there
    no_files = check_manifest(m)
    assert {p.line for p in no_files} == set(expected) - {13, 14, 19}
    assert f"{path}:6: [badlab]" in no_files.format()


def test_check_fewshot_shared_classes(tmp_path):
    path = write_lines(
        tmp_path / "fs.csv",
        [
            header_line("fs", "fewshot", ["A", "B", "C", "D"]),  # 1
            "video_id,path,label,split",  # 2
            "a1,a1.mp4,A,train",  # 3
            "b1,b1.mp4,B,train",  # 4
            "c1,c1.mp4,C,val",  # 5
            "d1,d1.mp4,D,test",  # 6
            "a2,a2.mp4,A,test",  # 7 A also in train
            "b2,b2.mp4,B,val",  # 8 B also in train
            "a3,a3.mp4,A,test",  # 9 A again: reported once
        ],
    )
    m = Manifest.read(path)
    problems = check_manifest(m)
    assert sorted(p.line for p in problems) == [7, 8]
    msg7 = problems_at(problems, 7)[0]
    assert "'A'" in msg7 and "'train'" in msg7 and "'test'" in msg7 and "lines 3 and 7" in msg7
    assert "'B'" in problems_at(problems, 8)[0]
    # the same rows in a classification manifest are fine
    assert check_manifest(Manifest("c", m.records, m.classes, "classification")).problems == []


def test_check_clean_manifest(tmp_path, make_video):
    root = tmp_path / "data"
    make_video(root / "A" / "x.mp4", n_frames=8)
    make_video(root / "B" / "y.avi", n_frames=8, fps=10)
    m = Manifest(
        "clean",
        [
            VideoRecord(
                "x",
                "A/x.mp4",
                "A",
                "train",
                fps=25.0,
                num_frames=8,
                duration=0.32,
                segments=(Segment(0.0, 0.32, "A"),),
                line=3,
            ),
            VideoRecord("y", "B/y.avi", "B", "test", line=4),
        ],
        ["A", "B"],
        "fewshot",
    )
    assert check_manifest(m).problems == []
    assert check_manifest(m, root).problems == []
    assert check_manifest(m, root, probe=True).problems == []
    with pytest.raises(FsvInputError, match="not a directory"):
        check_manifest(m, tmp_path / "absent")


def test_check_probe_reports_unreadable_video(tmp_path, make_video):
    root = tmp_path / "data"
    make_video(root / "good.mp4")
    touch(root / "corrupt.mp4", os.urandom(4096))
    touch(root / "notes.mp4", b"just some text, not a video\n" * 10)
    path = write_lines(
        tmp_path / "m.csv",
        [
            "video_id,path,label,split",
            "good,good.mp4,A,train",
            "corrupt,corrupt.mp4,A,train",
            "notes,notes.mp4,A,train",
        ],
    )
    m = Manifest.read(path)
    assert check_manifest(m, root).problems == []  # non-empty files pass without probing
    problems = check_manifest(m, root, probe=True)
    assert [(p.line, p.video_id) for p in problems] == [(3, "corrupt"), (4, "notes")]
    assert str(root / "corrupt.mp4") in problems.problems[0].message
    assert "cannot be read as a video" in problems.problems[0].message


def test_check_in_memory_manifest_uses_dataset_as_source():
    m = Manifest("mem", [VideoRecord("a", "a.mp4", "X", "train")], ["A"])
    problems = check_manifest(m)
    assert len(problems) == 1
    p = problems.problems[0]
    assert p.source == "mem" and p.line is None and p.video_id == "a"
    assert str(p) == "mem: [a] label 'X' is not in the class list"


def test_problem_list_format_and_raise():
    problems = ProblemList()
    assert not problems
    for i in range(5):
        problems.add("f.csv", i + 1, f"bad {i}", f"v{i}")
    problems.add("f.csv", None, "no line")
    assert len(problems) == 6
    text = problems.format(limit=2)
    assert text.splitlines() == ["f.csv:1: [v0] bad 0", "f.csv:2: [v1] bad 1", "... and 4 more"]
    assert problems.format().splitlines()[-1] == "f.csv: no line"
    with pytest.raises(FsvInputError, match=r"thing: 6 problem\(s\)"):
        problems.raise_if_any("thing")
    ProblemList().raise_if_any("nothing")


# ============================================================================ probe_manifest


def test_probe_manifest_fills_metadata(tmp_path, make_video):
    root = tmp_path / "data"
    specs = {
        "a": ("A/a.mp4", 16, 25, "mpeg4"),
        "b": ("A/b.mp4", 30, 10, "libx264"),
        "c": ("B/c.avi", 12, 15, "mpeg4"),
        "d": ("B/d.mkv", 20, 30, "mpeg4"),
    }
    for rel, n, fps, codec in specs.values():
        make_video(root / rel, n_frames=n, fps=fps, codec=codec)
    touch(root / "B" / "corrupt.mp4", os.urandom(2048))
    path = write_lines(
        tmp_path / "m.csv",
        [
            header_line("p", "classification", ["A", "B"]),  # 1
            "video_id,path,label,split,fps,num_frames,duration",  # 2
            "a,A/a.mp4,A,train,,,",  # 3
            "corrupt,B/corrupt.mp4,B,train,,,",  # 4
            "b,A/b.mp4,A,train,,,",  # 5
            "missing,B/missing.mp4,B,test,,,",  # 6
            "c,B/c.avi,B,test,,,",  # 7
            "d,B/d.mkv,B,test,99.0,,",  # 8 a known fps is kept
        ],
    )
    m = Manifest.read(path)
    probed, problems = probe_manifest(m, root, workers=2, batch=2)
    assert [r.video_id for r in probed] == [r.video_id for r in m]
    assert probed.path == m.path and probed.classes == m.classes and probed.dataset == "p"
    ids = probed.by_id()
    for vid, (_, n, fps, _) in specs.items():
        r = ids[vid]
        assert r.num_frames == n, vid
        if vid != "d":
            assert r.fps == pytest.approx(fps, rel=1e-3), vid
        assert r.duration == pytest.approx(n / fps, abs=0.1), vid
    assert ids["d"].fps == 99.0
    assert [(p.line, p.video_id) for p in problems] == [(4, "corrupt"), (6, "missing")]
    assert "cannot be read" in problems.problems[0].message
    assert str(root / "B" / "missing.mp4") in problems.problems[1].message
    for vid in ("corrupt", "missing"):
        assert (ids[vid].fps, ids[vid].num_frames, ids[vid].duration) == (None, None, None)
    assert m.records[0].fps is None  # the input manifest is left alone
    # the probed manifest writes and reads back with its new values
    back = Manifest.read(probed.write(tmp_path / "probed.csv"))
    assert back.records == probed.records and back.sha256 != m.sha256
    with pytest.raises(FsvInputError, match="not a directory"):
        probe_manifest(m, tmp_path / "absent")


def test_probe_manifest_shared_videos(shared_data):
    videos = shared_data / "videos"
    if not videos.is_dir():
        pytest.skip(f"{videos} is absent")
    m = Manifest(
        "shared",
        [
            VideoRecord("v_GGSY1Qvo990", "v_GGSY1Qvo990.mp4", "A", "test", line=1),
            VideoRecord("demo", "demo.mp4", "A", "test", line=2),
            VideoRecord("test_avi", "test.avi", "A", "test", line=3),
            VideoRecord("part_0", "part_0.mp4", "A", "test", line=4),
        ],
        ["A"],
    )
    probed, problems = probe_manifest(m, videos)
    assert problems.problems == []
    ids = probed.by_id()
    assert ids["v_GGSY1Qvo990"].fps == pytest.approx(19.62, abs=0.01)
    assert ids["v_GGSY1Qvo990"].num_frames == 355
    assert ids["v_GGSY1Qvo990"].duration == pytest.approx(355 / 19.62, abs=0.2)
    assert ids["demo"].fps == pytest.approx(28.0) and ids["demo"].num_frames == 280
    assert ids["demo"].duration == pytest.approx(10.0, abs=0.1)
    assert ids["test_avi"].fps == pytest.approx(25.0) and ids["test_avi"].num_frames == 164
    assert ids["test_avi"].duration == pytest.approx(164 / 25, abs=0.1)
    assert ids["part_0"].fps == pytest.approx(30.0) and ids["part_0"].num_frames == 32
    assert check_manifest(probed, videos, probe=True).problems == []


# ============================================================================ probe_video


def test_probe_video_real_file(tmp_path, make_video):
    path = make_video(tmp_path / "v.mp4", n_frames=20, fps=10, size=(80, 64))
    info = probe_video(path)
    assert isinstance(info, VideoInfo)
    assert (info.fps, info.num_frames, info.width, info.height) == (10.0, 20, 80, 64)
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert probe_video(str(path)) == info


def test_probe_video_missing_file(tmp_path):
    path = tmp_path / "absent.mp4"
    with pytest.raises(FsvInputError, match="no such file") as e:
        probe_video(path)
    assert str(path) in str(e.value)
    with pytest.raises(FsvInputError) as e:
        probe_video(tmp_path)  # a directory is not a video file
    assert str(tmp_path) in str(e.value)


def test_probe_video_empty_file(tmp_path):
    path = touch(tmp_path / "empty.mp4", b"")
    with pytest.raises(FsvInputError, match="empty") as e:
        probe_video(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "name,data",
    [("text.mp4", b"hello, this is not a video\n" * 50), ("random.avi", None), ("data.txt", b"a,b,c\n1,2,3\n")],
)
def test_probe_video_not_a_video(tmp_path, name, data):
    path = touch(tmp_path / name, data if data is not None else os.urandom(8192))
    with pytest.raises(FsvInputError, match="cannot be read as a video|no video stream") as e:
        probe_video(path)
    assert str(path) in str(e.value)


def test_probe_video_audio_only(tmp_path):
    av = pytest.importorskip("av")
    import numpy as np

    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = (np.sin(np.arange(8000) / 8.0) * 3000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(FsvInputError, match="no video stream") as e:
        probe_video(path)
    assert str(path) in str(e.value)


def test_folder_builder_reports_files_that_differ_only_in_extension(tmp_path: Path) -> None:
    for name in ("a.mp4", "a.avi", "b.mp4"):
        (tmp_path / "c" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "c" / name).write_bytes(b"x")
    with pytest.raises(FsvInputError, match=r"2 files would share video id 'c/a' \(c/a.avi, c/a.mp4\)"):
        build_manifest("folder", root=tmp_path)
