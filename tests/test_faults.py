"""The fault matrix: one test per bad input or fault, named for the case, each asserting the exit
code, the one-line message naming what is wrong, and that nothing written is damaged. Never a
wrong number with exit code 0. (Cluster faults: ``tests/test_slurm.py``; store crash safety:
``tests/test_store.py``.)"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fsv.pipeline.manifests import Manifest, VideoRecord
from fsv.pipeline.store import FeatureStore

FSV = [sys.executable, "-m", "fsv"]


def fsv(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*FSV, *args], capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess, code: int) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    # progress lines (stderr is not a terminal) may come before it; the message is the end of stderr
    starts = [i for i, line in enumerate(proc.stderr.splitlines()) if line.startswith("error: ")]
    assert len(starts) == 1, proc.stderr
    return "\n".join(proc.stderr.splitlines()[starts[0] :])


@pytest.fixture
def clips(tmp_path: Path, make_video) -> tuple[Path, list[str]]:
    for i in range(3):
        make_video(tmp_path / f"v{i}.mp4", n_frames=20, fps=25, seed=i)
    return tmp_path, [f"v{i}.mp4" for i in range(3)]


def test_duplicate_video_ids_are_refused_by_extract_naming_both_lines(
    clips: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, files = clips
    manifest = tmp_path / "dup.csv"
    Manifest(
        "m",
        [
            VideoRecord("a", files[0], "x", "test"),
            VideoRecord("b", files[1], "x", "test"),
            VideoRecord("a", files[2], "x", "test"),
        ],
        ["x"],
        "classification",
    ).write(manifest)
    store = tmp_path / "s.zarr"
    for cmd in (
        ["extract"],
        ["submit", "extract", "--shards", "2", "--executor", "local", "--folder", str(tmp_path / "jobs")],
    ):
        err = one_line_error(
            fsv(
                *cmd,
                "--backbone",
                "c3d",
                "--weights",
                "random",
                "--manifest",
                str(manifest),
                "--root",
                str(root),
                "--store",
                str(store),
            ),
            2,
        )
        assert "duplicate video_id" in err and f"{manifest}:5: [a]" in err and "first at line 3" in err, err
        assert not store.exists()  # refused before anything is written


def test_float16_overflow_is_refused_on_import_naming_video_and_field(tmp_path: Path) -> None:
    src = tmp_path / "feats"
    src.mkdir()
    np.save(src / "ok.npy", np.ones((3, 4096), np.float32))
    big = np.ones((3, 4096), np.float32)
    big[1, 7] = 1e5  # finite in float32, infinite in float16
    np.save(src / "huge.npy", big)
    manifest = tmp_path / "m.csv"
    Manifest(
        "m",
        [VideoRecord("ok", "ok.mp4", "x", "test"), VideoRecord("huge", "huge.mp4", "x", "test")],
        ["x"],
        "classification",
    ).write(manifest)
    store = tmp_path / "s.zarr"
    err = one_line_error(
        fsv(
            "store",
            "import",
            str(src),
            "--store",
            str(store),
            "--manifest",
            str(manifest),
            "--spec",
            "c3d-sports1m-fc6-16",
        ),
        2,
    )
    assert "huge" in err and "'features'" in err and "100000" in err and "float16" in err, err
    s = FeatureStore.open(store)
    assert "huge" not in s  # nothing infinite is stored
    for v in s.video_ids():
        assert np.isfinite(s.get(v)).all()


def test_float16_overflow_in_extraction_fails_that_video_and_the_run_goes_on(tmp_path: Path) -> None:
    from fsv.pipeline.spec import FeatureSpec, FieldSpec

    spec = FeatureSpec(
        "t",
        "t",
        {"name": "random", "seed": 0},
        {"kind": "snippets", "fps": 25, "snippet": 16, "stride": 16},
        {"features": FieldSpec((4,), "float16")},
    )
    store = FeatureStore.create(tmp_path / "s.zarr", spec)
    with store.writer() as w, pytest.raises(Exception, match=r"v1: field 'features' has values up to 70000.*float16"):
        w.write("v0", np.ones((2, 4), np.float32), spans=np.array([[0, 1], [1, 2]]))
        w.write("v1", np.full((2, 4), 7e4, np.float32), spans=np.array([[0, 1], [1, 2]]))
    assert FeatureStore.open(store.path).video_ids() == ["v0"]


def test_cuda_requested_without_cuda_is_refused_before_a_store_exists(
    clips: tuple[Path, list[str]], tmp_path: Path
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    root, files = clips
    manifest = tmp_path / "m.csv"
    Manifest("m", [VideoRecord("a", files[0], "x", "test")], ["x"], "classification").write(manifest)
    store = tmp_path / "s.zarr"
    err = one_line_error(
        fsv(
            "extract",
            "--backbone",
            "c3d",
            "--weights",
            "random",
            "--manifest",
            str(manifest),
            "--root",
            str(root),
            "--store",
            str(store),
            "--device",
            "cuda",
        ),
        2,
    )
    assert "CUDA is not available" in err and "--device cpu" in err
    assert not store.exists()


def test_missing_flow_weights_name_the_flow_option(clips: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, files = clips
    manifest = tmp_path / "m.csv"
    Manifest("m", [VideoRecord("a", files[0], "x", "test")], ["x"], "classification").write(manifest)
    err = one_line_error(
        fsv(
            "extract",
            "--backbone",
            "i3d",
            "--streams",
            "flow",
            "--flow-weights",
            str(tmp_path / "nope.pt"),
            "--manifest",
            str(manifest),
            "--root",
            str(root),
            "--store",
            str(tmp_path / "s.zarr"),
        ),
        2,
    )
    assert "--flow-weights" in err and "nope.pt" in err


def test_version_alone_prints_the_version() -> None:
    from fsv import __version__

    proc = fsv("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"fsv {__version__}", proc.stdout + proc.stderr


def test_verbose_is_shown_as_a_repeatable_flag() -> None:
    line = next(ln for ln in fsv("--help").stdout.splitlines() if "--verbose" in ln)
    assert "<int>" not in line and "INTEGER" not in line


def test_precision_is_part_of_the_spec_so_bf16_and_fp32_never_share_a_store(
    clips: tuple[Path, list[str]], tmp_path: Path
) -> None:
    from fsv.pipeline.plan import make_recipe
    from fsv.pipeline.weights import WeightsRef

    random = {"rgb": WeightsRef("random", None, None, seed=0)}
    fp32, bf16 = make_recipe("c3d", weights=random).spec(), make_recipe("c3d", weights=random, precision="bf16").spec()
    assert (
        fp32.key != bf16.key
        and bf16.extra["precision"] == "bf16"
        and bf16.name.endswith("-bf16")
        and "precision" not in fp32.extra
    )
    root, files = clips
    manifest = tmp_path / "m.csv"
    Manifest("m", [VideoRecord("a", files[0], "x", "test")], ["x"], "classification").write(manifest)
    store = tmp_path / "s.zarr"
    base = [
        "extract",
        "--backbone",
        "c3d",
        "--weights",
        "random",
        "--threads",
        "1",
        "--manifest",
        str(manifest),
        "--root",
        str(root),
        "--store",
        str(store),
    ]
    assert fsv(*base).returncode == 0
    err = one_line_error(fsv(*base, "--precision", "bf16"), 2)
    assert "refusing features of spec" in err and "precision" in err, err
    assert FeatureStore.open(store).video_ids() == ["a"]


# ------------------------------------------------------------------------ damaged stores
def shard_files(store: Path) -> list[Path]:
    return sorted(p for p in (store / "parts").glob("*/features/c/**/*") if p.is_file())


def test_missing_shard_file_stops_every_read_naming_store_part_video_and_file(tmp_path: Path) -> None:
    from fsv.errors import StoreCorruptError
    from fsv.pipeline.spec import FeatureSpec, FieldSpec
    from fsv.pipeline.store import StoreLayout

    spec = FeatureSpec(
        "t",
        "t",
        {"name": "random", "seed": 0},
        {"kind": "snippets", "fps": 25, "snippet": 16, "stride": 16},
        {"features": FieldSpec((64,), "float16")},
    )
    store = FeatureStore.create(tmp_path / "s.zarr", spec, layout=StoreLayout(chunk_bytes=1024, shard_bytes=8192))
    rng = np.random.default_rng(0)
    with store.writer() as w:
        for i in range(30):
            w.write(
                f"v{i}",
                rng.standard_normal((10, 64)).astype(np.float16),
                spans=np.stack([np.arange(10.0), np.arange(1.0, 11)], 1),
            )
    files = shard_files(store.path)
    assert len(files) > 2
    gone = files[1]
    gone.unlink()
    s = FeatureStore.open(store.path)
    hit = next(
        v
        for v in s.video_ids()
        if gone in s.row_files(s.index[v].part, "features", s.index[v].offset, s.index[v].offset + s.index[v].length)
    )
    with pytest.raises(
        StoreCorruptError,
        match=rf"part {s.index[hit].part}, video '{hit}', field 'features': its file\(s\) .*{gone.name} are missing",
    ):
        s.get(hit)
    with pytest.raises(StoreCorruptError, match="missing"):
        s.load()
    with pytest.raises(StoreCorruptError, match="missing"):
        s.get_many([hit])
    intact = [
        v
        for v in s.video_ids()
        if not any(
            not f.exists()
            for f in s.row_files(s.index[v].part, "features", s.index[v].offset, s.index[v].offset + s.index[v].length)
        )
    ]
    assert intact and len(s.load(intact)) == len(intact)  # the rest of the store still reads
    err = one_line_error(fsv("store", "export", str(store.path), "--h5", str(tmp_path / "out.h5")), 2)
    assert "missing" in err and str(store.path) in err and hit in err
    assert not list(tmp_path.glob("out.h5*"))  # a failed export leaves no file, .partial included
    verify = fsv("store", "verify", str(store.path))
    assert verify.returncode == 1 and "missing" in verify.stderr and hit in verify.stderr, verify.stderr


def flip_a_decodable_bit(store: Path, victim: str, field: str) -> bool:
    """Flip one bit inside the compressed payload of ``victim``'s first chunk, at a place where the
    codec still decodes (lz4 literals carry no checksum): the rows change, the stream does not."""
    from fsv.errors import StoreCorruptError

    s = FeatureStore.open(store)
    e = s.index[victim]
    data = s.get(victim)
    fast = s.rows_reader(e.part, field)
    shard = e.offset // fast.meta.shard_rows
    chunk = e.offset // fast.meta.chunk_rows - shard * fast.chunks_per_shard
    start, nbytes = (int(x) for x in fast.shard_index(shard)[chunk])
    path = fast.shard_path(shard)
    original = path.read_bytes()
    for pos in range(start + 64, start + nbytes - 16, 7):
        damaged = bytearray(original)
        damaged[pos] ^= 0x10
        path.write_bytes(bytes(damaged))
        try:
            if not np.array_equal(
                FeatureStore.open(store).read_range(e.part, field, e.offset, e.offset + e.length), data
            ):
                return True
        except StoreCorruptError:
            continue  # this flip broke the codec; try a byte that still decodes
    path.write_bytes(original)
    return False


def test_flipped_byte_that_still_decompresses_stops_reads_training_and_eval(tmp_path: Path) -> None:
    from fsv.heads.data.synthetic import SyntheticConfig, write_synthetic
    from fsv.errors import StoreCorruptError

    write_synthetic(tmp_path, SyntheticConfig(dim=16, videos_per_class=8))
    store = tmp_path / "store.zarr"
    run = tmp_path / "run"
    args = ["--store", str(store), "--manifest", str(tmp_path / "manifest.jsonl"), "--shot", "1", "--device", "cpu"]
    assert fsv("train-head", "protonet", "--out", str(run), *args).returncode == 0
    manifest = Manifest.read(tmp_path / "manifest.jsonl")
    test_video = next(r.video_id for r in manifest.select("test"))
    train_video = next(r.video_id for r in manifest.select("train"))
    if not (flip_a_decodable_bit(store, test_video, "grid") and flip_a_decodable_bit(store, train_video, "grid")):
        pytest.skip("no single-bit flip kept the chunk decodable here")
    with pytest.raises(
        StoreCorruptError,
        match=rf"video '{test_video}', field 'grid': its rows in .* do not match the committed checksum",
    ):
        FeatureStore.open(store).get(test_video)
    err = one_line_error(fsv("eval", str(run), "--episodes", "10", "--device", "cpu"), 2)
    assert "do not match the committed checksum" in err and str(store) in err and test_video in err
    err = one_line_error(fsv("train-head", "protonet", "--out", str(tmp_path / "run2"), *args), 2)
    assert "damaged" in err and train_video in err


def test_progress_is_logged_when_stderr_is_not_a_terminal(clips: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, files = clips
    manifest = tmp_path / "m.csv"
    Manifest("m", [VideoRecord(f"v{i}", f, "x", "test") for i, f in enumerate(files)], ["x"], "classification").write(
        manifest
    )
    env = {**os.environ, "FSV_PROGRESS_EVERY_S": "0"}
    proc = subprocess.run(
        [
            *FSV,
            "extract",
            "--backbone",
            "c3d",
            "--weights",
            "random",
            "--manifest",
            str(manifest),
            "--root",
            str(root),
            "--store",
            str(tmp_path / "s.zarr"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "fsv.progress" in line and "videos" in line]
    assert any("1/3 videos (33%)" in line for line in lines), proc.stderr
    assert "3/3 videos (100%)" in lines[-1] and "videos/s" in lines[-1], proc.stderr


def test_manifest_that_names_another_file_for_a_committed_video_is_refused_unless_allowed(
    clips: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, files = clips
    store = tmp_path / "s.zarr"

    def extract(records: list[VideoRecord], name: str, *extra: str) -> subprocess.CompletedProcess:
        Manifest("m", records, ["x"], "classification").write(tmp_path / name)
        return fsv(
            "extract",
            "--backbone",
            "c3d",
            "--weights",
            "random",
            "--manifest",
            str(tmp_path / name),
            "--root",
            str(root),
            "--store",
            str(store),
            *extra,
        )

    first = [VideoRecord("v0", files[0], "x", "test")]
    assert extract(first, "a.csv").returncode == 0
    grown = [*first, VideoRecord("v1", files[1], "x", "test")]  # only adds a video: accepted as it is
    assert extract(grown, "b.csv").returncode == 0
    before = FeatureStore.open(store).get("v0")
    moved = [
        VideoRecord("v0", files[2], "x", "test"),
        VideoRecord("v1", files[1], "x", "test"),
        VideoRecord("v2", files[2], "x", "test"),
    ]
    err = one_line_error(extract(moved, "c.csv"), 2)
    assert f"v0 ({files[0]} -> {files[2]})" in err and "--allow-manifest-change" in err, err
    assert extract(moved, "c.csv", "--allow-manifest-change").returncode == 0
    s = FeatureStore.open(store)
    assert np.array_equal(s.get("v0"), before)  # committed videos are kept as they are
    last = s.part_meta(s.entry("v2").part)  # the part that extended the store records the change
    assert (
        len(last["manifest_changed_from"]) == 2 and last["manifest_sha256"] == Manifest.read(tmp_path / "c.csv").sha256
    )


def test_manifest_not_in_utf8_is_refused_naming_file_and_line(tmp_path: Path) -> None:
    manifest = tmp_path / "latin1.csv"
    manifest.write_bytes("video_id,path,label,split\na,a.mp4,x,test\nb,caf\xe9.mp4,x,test\n".encode("latin-1"))
    for cmd in (
        ["manifest", "check", str(manifest)],
        [
            "extract",
            "--backbone",
            "c3d",
            "--weights",
            "random",
            "--manifest",
            str(manifest),
            "--root",
            str(tmp_path),
            "--store",
            str(tmp_path / "s.zarr"),
        ],
    ):
        err = one_line_error(fsv(*cmd), 2)
        assert f"{manifest}:3: not UTF-8 (byte 0xe9 at column 6)" in err, err


def test_manifest_in_utf16_with_its_bom_reads_like_utf8(tmp_path: Path) -> None:
    text = "video_id,path,label,split\na,a.mp4,x,test\nb,b.mp4,y,test\n"
    (tmp_path / "u8.csv").write_text(text, encoding="utf-8")
    (tmp_path / "u16.csv").write_text(text, encoding="utf-16")
    assert Manifest.read(tmp_path / "u16.csv").records == Manifest.read(tmp_path / "u8.csv").records


def test_a_custom_dataset_name_works_wherever_built_in_names_do(clips: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, files = clips
    manifest = tmp_path / "mine.csv"
    Manifest(
        "mine", [VideoRecord(f"v{i}", f, "x", "test") for i, f in enumerate(files)], ["x"], "classification"
    ).write(manifest)
    env = {
        **os.environ,
        "FSV_CONFIG": str(tmp_path / "config.toml"),
        "FSV_STORES": str(tmp_path / "stores"),
        "COLUMNS": "400",
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*FSV, *args], capture_output=True, text=True, timeout=600, env=env)

    assert run("datasets", "set", "mine", "--root", str(root), "--manifest", str(manifest)).returncode == 0
    listing = run("datasets", "list")
    assert listing.returncode == 0 and any(
        line.split("│")[1].strip() == "mine" and str(manifest) in line
        for line in listing.stdout.splitlines()
        if "│" in line
    ), listing.stdout
    done = run("extract", "--dataset", "mine", "--backbone", "c3d", "--weights", "random")
    assert done.returncode == 0, done.stderr
    stores = list((tmp_path / "stores" / "mine").glob("*.zarr"))
    assert len(stores) == 1 and len(FeatureStore.open(stores[0]).index) == 3
    err = one_line_error(run("datasets", "set", "yours", "--root", str(root)), 2)
    assert "not a built-in dataset" in err and "--manifest" in err, err


def test_train_head_that_cannot_start_leaves_no_run_folder_and_the_corrected_retry_runs(tmp_path: Path) -> None:
    from fsv.heads.data.synthetic import SyntheticConfig, write_synthetic

    data = tmp_path / "synthetic"
    write_synthetic(data, SyntheticConfig(classes=(4, 3, 3), videos_per_class=4))
    run = tmp_path / "run"
    base = [
        "train-head",
        "protonet",
        "--store",
        str(data / "store.zarr"),
        "--manifest",
        str(data / "manifest.jsonl"),
        "--out",
        str(run),
        "--device",
        "cpu",
        "--set",
        "query=1",
        "--set",
        "train_episodes=2",
        "--set",
        "val_every=2",
        "--set",
        "val_episodes=2",
        "--set",
        "test_episodes=2",
    ]
    err = one_line_error(fsv(*base, "--way", "5", "--shot", "1"), 2)
    assert "a 5-way episode needs 5" in err and "(1 shot + 1 query)" in err, err
    assert not run.exists()  # nothing written by a run that could not start
    done = fsv(*base, "--way", "3", "--shot", "1")
    assert done.returncode == 0, done.stderr
    assert (run / "config.json").is_file() and (run / "best.pt").is_file()


def test_redo_corrupt_extracts_again_exactly_the_damaged_videos_and_verify_is_clean_after(
    clips: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, files = clips
    store = tmp_path / "s.zarr"

    def extract(n: int, *extra: str) -> subprocess.CompletedProcess:
        Manifest(
            "m", [VideoRecord(f"v{i}", f, "x", "test") for i, f in enumerate(files[:n])], ["x"], "classification"
        ).write(tmp_path / "m.csv")
        return fsv(
            "extract",
            "--backbone",
            "c3d",
            "--weights",
            "random",
            "--manifest",
            str(tmp_path / "m.csv"),
            "--root",
            str(root),
            "--store",
            str(store),
            "--device",
            "cpu",
            *extra,
        )

    assert extract(2).returncode == 0 and extract(3).returncode == 0  # v0, v1 in one part; v2 in another
    s = FeatureStore.open(store)
    before = {v: s.get(v) for v in s.video_ids()}
    first, second = s.index["v0"].part, s.index["v2"].part
    for name in s.spec.fields:
        for f in [p for p in (store / "parts" / first / name / "c").rglob("*") if p.is_file()]:
            f.unlink()
    verify = fsv("store", "verify", str(store))
    assert verify.returncode == 1 and "--redo-corrupt" in verify.stderr, verify.stderr
    repair = extract(3, "--redo-corrupt")
    assert repair.returncode == 0, repair.stderr
    s = FeatureStore.open(store)
    assert s.index["v2"].part == second  # the intact video is not touched
    assert s.index["v0"].part == s.index["v1"].part not in (first, second)  # the damaged ones live in the repair part
    verify = fsv("store", "verify", str(store))
    assert verify.returncode == 0 and "all intact" in verify.stdout and "superseded" in verify.stderr, (
        verify.stdout + verify.stderr
    )
    for v, x in before.items():
        assert np.array_equal(s.get(v), x)  # the repaired features are the ones extracted first


def test_manifest_check_reports_every_problem_at_once(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "video_id,path,label,split,fps,num_frames,duration,segments,ambiguous\n"
        'a,a.mp4,x,test,25,100,4.0,"[[0, 1, ""x""]",\n'  # 2: unparsable segments
        "b,b.mp4,x,test,25,100,4.0,not json,\n"  # 3: unparsable segments
        "c,c.mp4,,test,25,100,4.0,,\n"  # 4: empty label
        "d,d.mp4,x,test,-5,100,4.0,,\n"  # 5: negative fps
        'e,e.mp4,x,test,25,100,4.0,"[[3, 9, ""x""]]",\n'  # 6: segment beyond the duration
        "e,f.mp4,x,test,25,100,4.0,,\n"  # 7: duplicate id
    )
    proc = fsv("manifest", "check", str(manifest))
    assert proc.returncode == 2
    for line in range(2, 8):
        assert f"{manifest}:{line}:" in proc.stderr, (line, proc.stderr)
    assert "6 problem(s)" in proc.stderr, proc.stderr


def test_manifest_check_probe_catches_a_truncated_file_that_extraction_rejects(tmp_path: Path, make_video) -> None:
    make_video(tmp_path / "ok.avi", n_frames=60, fps=25, seed=1)
    whole = (tmp_path / "ok.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(whole[: len(whole) * 6 // 10])  # its header still declares 60 frames
    manifest = tmp_path / "m.csv"
    Manifest(
        "m",
        [VideoRecord("ok", "ok.avi", "x", "test"), VideoRecord("cut", "cut.avi", "x", "test")],
        ["x"],
        "classification",
    ).write(manifest)
    proc = fsv("manifest", "check", str(manifest), "--root", str(tmp_path), "--probe")
    assert (
        proc.returncode == 2 and "[cut]" in proc.stderr and "truncated" in proc.stderr and "[ok]" not in proc.stderr
    ), proc.stderr
    extract = fsv(
        "extract",
        "--backbone",
        "c3d",
        "--weights",
        "random",
        "--manifest",
        str(manifest),
        "--root",
        str(tmp_path),
        "--store",
        str(tmp_path / "s.zarr"),
    )
    assert extract.returncode == 0 and "failed cut" in extract.stderr and "truncated" in extract.stderr, (
        extract.stderr
    )  # the same verdict


def test_damaged_run_files_and_export_targets_get_one_line_naming_the_path(tmp_path: Path) -> None:
    from fsv.heads.data.synthetic import SyntheticConfig, write_synthetic

    write_synthetic(tmp_path, SyntheticConfig(dim=16, classes=(4, 3, 3), videos_per_class=4))
    run = tmp_path / "run"
    args = [
        "--store",
        str(tmp_path / "store.zarr"),
        "--manifest",
        str(tmp_path / "manifest.jsonl"),
        "--way",
        "3",
        "--shot",
        "1",
        "--device",
        "cpu",
        "--set",
        "query=1",
        "--set",
        "train_episodes=2",
        "--set",
        "val_every=2",
        "--set",
        "val_episodes=2",
        "--set",
        "test_episodes=2",
    ]
    assert fsv("train-head", "protonet", "--out", str(run), *args).returncode == 0
    best = run / "best.pt"
    whole = best.read_bytes()
    best.write_bytes(whole[: len(whole) // 2])
    err = one_line_error(fsv("eval", str(run), "--device", "cpu"), 2)
    assert f"{best}: cannot be read as a checkpoint" in err, err
    best.write_bytes(whole)
    whole_config = (run / "config.json").read_text()
    for damaged in ('{"config": {"head": "protonet",', '{"config": "x", "data": {}}'):
        (run / "config.json").write_text(damaged)
        err = one_line_error(fsv("eval", str(run), "--device", "cpu"), 2)
        assert f"{run / 'config.json'}: not a readable run configuration" in err, err
    record = json.loads(whole_config)
    record["config"]["bogus_setting"] = 1  # written by another fsv version, say
    (run / "config.json").write_text(json.dumps(record))
    err = one_line_error(fsv("eval", str(run), "--device", "cpu"), 2)
    assert f"{run / 'config.json'}: does not match protonet's run configuration" in err and "new --out folder" in err, (
        err
    )
    err = one_line_error(
        fsv("store", "export", str(tmp_path / "store.zarr"), "--h5", str(tmp_path / "no" / "such" / "out.h5")), 2
    )
    assert f"folder {tmp_path / 'no' / 'such'} does not exist" in err, err


def test_video_ids_that_clash_as_hdf5_names_are_refused_before_writing(tmp_path: Path) -> None:
    src = tmp_path / "feats"
    (src / "misc").mkdir(parents=True)
    np.save(src / "misc.npy", np.ones((2, 4096), np.float32))
    np.save(src / "misc" / "test.npy", np.ones((2, 4096), np.float32))
    manifest = tmp_path / "m.csv"
    Manifest(
        "m",
        [VideoRecord("misc", "misc.mp4", "x", "test"), VideoRecord("misc/test", "misc/test.mp4", "x", "test")],
        ["x"],
        "classification",
    ).write(manifest)
    store = tmp_path / "s.zarr"
    imported = fsv(
        "store", "import", str(src), "--store", str(store), "--manifest", str(manifest), "--spec", "c3d-sports1m-fc6-16"
    )
    assert imported.returncode == 0, imported.stderr
    err = one_line_error(fsv("store", "export", str(store), "--h5", str(tmp_path / "out.h5")), 2)
    assert "'misc' and 'misc/test'" in err, err
    assert not list(tmp_path.glob("out.h5*"))


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 96 KiB file system (tmpfs): a store on it fills the disk. Needs root (mount)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_during_extract_is_one_message_and_committed_videos_stay_intact(
    small_disk: Path, tmp_path: Path, make_video
) -> None:
    for i in range(6):
        make_video(tmp_path / f"v{i}.mp4", n_frames=64, fps=25, seed=i)
    manifest = tmp_path / "m.csv"
    Manifest("m", [VideoRecord(f"v{i}", f"v{i}.mp4", "x", "test") for i in range(6)], ["x"], "classification").write(
        manifest
    )
    store = small_disk / "s.zarr"
    args = [
        "extract",
        "--backbone",
        "c3d",
        "--weights",
        "random",
        "--manifest",
        str(manifest),
        "--root",
        str(tmp_path),
        "--store",
        str(store),
        "--commit-every",
        "0",
    ]
    err = one_line_error(fsv(*args), 1)
    assert "no space left on the device" in err and str(store) in err, err
    verify = fsv("store", "verify", str(store))
    assert verify.returncode == 0 and "all intact" in verify.stdout, verify.stdout + verify.stderr
    committed = len(FeatureStore.open(store).index)
    assert 0 < committed < 6
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)  # a read-only store
    err = one_line_error(fsv(*args), 2)
    assert "read-only" in err and str(store) in err, err
    assert len(FeatureStore.open(store).index) == committed


def write_rotated(path: Path, degrees: int, frames: int = 20) -> None:
    """A 64x48 clip with a white block in the top-left corner and a display rotation of ``degrees``."""
    import av

    rng = np.random.default_rng(degrees)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.set_display_rotation(degrees)
        for _ in range(frames):
            img = rng.integers(0, 100, (48, 64, 3), dtype=np.uint8)
            img[:8, :16] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.mark.parametrize("degrees", [90, 180])
def test_rotated_video_gives_the_same_frames_and_features_on_every_decoder(tmp_path: Path, degrees: int) -> None:
    from fsv.errors import FsvInputError
    from fsv.pipeline.decode.backends import open_video

    write_rotated(tmp_path / "phone.mp4", degrees)
    frame = next(open_video(tmp_path / "phone.mp4", "auto").iter_frames(np.array([0])))[0]
    white = np.argwhere(frame.min(axis=2) > 200).mean(axis=0)
    # as players show it: rotated counter-clockwise, the top-left block goes to the bottom-left (90) or bottom-right (180)
    assert frame.shape == ((64, 48, 3) if degrees == 90 else (48, 64, 3))
    assert (white > [40, -1]).all() and (white[1] < 10 if degrees == 90 else white[1] > 40), white
    with pytest.raises(FsvInputError, match="display rotation"):
        open_video(tmp_path / "phone.mp4", "decord")
    manifest = tmp_path / "m.csv"
    Manifest("m", [VideoRecord("phone", "phone.mp4", "x", "test")], ["x"], "classification").write(manifest)
    feats = {}
    for decoder in ("auto", "pyav"):
        store = tmp_path / f"{decoder}.zarr"
        done = fsv(
            "extract",
            "--backbone",
            "c3d",
            "--weights",
            "random",
            "--manifest",
            str(manifest),
            "--root",
            str(tmp_path),
            "--store",
            str(store),
            "--decoder",
            decoder,
            "--device",
            "cpu",
        )
        assert done.returncode == 0, done.stderr
        s = FeatureStore.open(store)
        assert s.index["phone"].meta["rotation"] == degrees  # recorded per video
        feats[decoder] = s.get("phone")
    assert np.array_equal(feats["auto"], feats["pyav"])


def test_memory_follows_resolution_batches_are_bounded_in_bytes(
    tmp_path: Path, make_video, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fsv.pipeline.decode import backends

    assert backends.frames_per_batch(3840 * 2160 * 3, 32) == 4 and backends.frames_per_batch(320 * 240 * 3, 32) == 32
    make_video(tmp_path / "v.mp4", n_frames=20, fps=25, size=(64, 48))
    monkeypatch.setattr(backends, "BATCH_BYTES", 64 * 48 * 3 * 4)  # four frames of this clip
    for name in ("decord", "pyav"):
        sizes = [len(b) for b in backends.open_video(tmp_path / "v.mp4", name).iter_frames(np.arange(20))]
        assert sum(sizes) == 20 and max(sizes) <= 4, (name, sizes)
    monkeypatch.setattr(backends, "DECORD_MAX_FRAME_BYTES", 64 * 48 * 3 - 1)  # as if above 1080p
    assert backends.open_video(tmp_path / "v.mp4", "auto").backend == "pyav"
    with caplog.at_level(
        logging.WARNING, logger=backends.__name__
    ):  # asked for by name, decord is used and the cost named
        assert backends.open_video(tmp_path / "v.mp4", "decord").backend == "decord"
    assert "--decoder auto or pyav" in caplog.text


def test_imported_features_are_repaired_by_importing_them_again(tmp_path: Path) -> None:
    src = tmp_path / "feats"
    src.mkdir()
    for i in range(2):
        np.save(src / f"v{i}.npy", np.full((3, 4096), i + 1, np.float32))
    manifest = tmp_path / "m.csv"
    Manifest("m", [VideoRecord(f"v{i}", f"v{i}.mp4", "x", "test") for i in range(2)], ["x"], "classification").write(
        manifest
    )
    store = tmp_path / "s.zarr"
    args = [
        "store",
        "import",
        str(src),
        "--store",
        str(store),
        "--manifest",
        str(manifest),
        "--spec",
        "c3d-sports1m-fc6-16",
    ]
    assert fsv(*args).returncode == 0
    for f in shard_files(store):
        f.unlink()
    assert "--overwrite" in fsv("store", "verify", str(store)).stderr
    assert fsv(*args, "--overwrite").returncode == 0
    verify = fsv("store", "verify", str(store))
    assert verify.returncode == 0 and "all intact" in verify.stdout, verify.stdout + verify.stderr
    assert np.array_equal(FeatureStore.open(store).get("v1"), np.full((3, 4096), 2, np.float16))
