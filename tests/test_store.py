"""The feature store's properties: spec binding, reads, parallel writers, crash safety, few files,
failures, verification."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr

from fsv import __version__
from fsv.errors import FsvInputError, SpecMismatchError
from fsv.pipeline.spec import FieldSpec
from fsv.pipeline.store import FeatureStore, StoreLayout
from fsv.pipeline.store.layout import JOURNAL, PARTS_DIR
from fsv.pipeline.store.verify import verify_store

sys.path.insert(0, str(Path(__file__).parent))
from store_worker import SMALL_LAYOUT, SPEC, features, spans  # noqa: E402

WORKER = str(Path(__file__).parent / "store_worker.py")


def write_range(store: FeatureStore, start: int, stop: int, **kw) -> None:
    with store.writer(**kw) as w:
        for i in range(start, stop):
            w.write(f"v{i}", features(i), spans=spans(i), fps=25.0)


def file_count(path: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    return FeatureStore.create(tmp_path / "s.zarr", SPEC, manifest_sha256="abc123", dataset="toy", layout=SMALL_LAYOUT)


# ------------------------------------------------------------------------------ spec binding
def test_store_records_spec_manifest_and_version(store: FeatureStore) -> None:
    attrs = json.loads((store.path / "zarr.json").read_text())["attributes"]["fsv"]
    assert attrs["spec_key"] == SPEC.key
    assert attrs["manifest_sha256"] == "abc123"
    assert attrs["fsv_version"] == __version__
    assert FeatureStore.open(store.path).spec == SPEC


def test_spec_key_ignores_name_but_not_numbers() -> None:
    assert replace(SPEC, name="renamed").key == SPEC.key
    assert replace(SPEC, sampling={**SPEC.sampling, "stride": 8}).key != SPEC.key
    assert replace(SPEC, fields={"features": FieldSpec((64,), "float32")}).key != SPEC.key


def test_other_spec_is_refused_with_the_difference(store: FeatureStore) -> None:
    other = replace(SPEC, weights={"name": "imagenet", "sha256": "ff"})
    with pytest.raises(SpecMismatchError, match="weights"):
        FeatureStore.create(store.path, other)


def test_wrong_feature_dims_are_refused(store: FeatureStore) -> None:
    with store.writer() as w:
        with pytest.raises(SpecMismatchError, match=r"v1.*\(4, 64\)"):
            w.write("v1", np.zeros((4, 65), np.float16), spans=np.zeros((4, 2)))
        with pytest.raises(FsvInputError, match="NaN"):
            w.write("v2", np.full((4, 64), np.nan, np.float16), spans=np.zeros((4, 2)))
        w.write("v3", features(3), spans=spans(3))
    assert store.video_ids() == ["v3"]


def test_open_non_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FsvInputError, match="not a feature store"):
        FeatureStore.open(tmp_path)


# ------------------------------------------------------------------------------------- reads
def test_reads_by_id_batch_split_mmap_dask_xarray(store: FeatureStore, tmp_path: Path) -> None:
    write_range(store, 0, 60)
    s = FeatureStore.open(store.path)
    for i in (0, 7, 59):
        np.testing.assert_array_equal(s.get(f"v{i}"), features(i))
        np.testing.assert_array_equal(s.spans(f"v{i}"), spans(i))
        assert s.index[f"v{i}"].fps == 25.0
    order = ["v42", "v3", "v17", "v3", "v58"]
    for vid, x in zip(order, s.get_many(order)):
        np.testing.assert_array_equal(x, features(int(vid[1:])))
    packed = s.load(mmap_path=tmp_path / "all.npy")
    assert isinstance(np.load(tmp_path / "all.npy", mmap_mode="r"), np.memmap)
    for i, vid in enumerate(packed.video_ids):
        np.testing.assert_array_equal(packed.video(i), features(int(vid[1:])))
    arr, ids, offsets, lengths = s.to_dask()
    assert arr.shape == (int(lengths.sum()), 64)
    np.testing.assert_array_equal(arr[offsets[5] : offsets[5] + lengths[5]].compute(), features(int(ids[5][1:])))
    ds = s.to_xarray()
    first = ds.where(ds.video_id == "v4", drop=True)
    np.testing.assert_array_equal(first["features"].values, features(4))
    np.testing.assert_allclose(first["t_start"].values, spans(4)[:, 0])


def test_fast_reader_matches_zarr_python(tmp_path: Path) -> None:
    layout = StoreLayout(chunk_bytes=512, shard_bytes=8 * 512)  # 4-row chunks, 8 chunks per shard
    store = FeatureStore.create(tmp_path / "z.zarr", SPEC, layout=layout)
    with store.writer() as w:
        for i in range(40):
            x = np.zeros((3 + i % 5, 64), np.float16) if i % 7 == 0 else features(i)  # zero chunks are not stored
            w.write(f"v{i}", x, spans=spans(i))
    s = FeatureStore.open(store.path)
    part = s.part_names()[0]
    ref = zarr.open_array(str(s.path / PARTS_DIR / part / "features"), mode="r")
    rng = np.random.default_rng(0)
    n = ref.shape[0]
    for lo, hi in [(0, n), (0, 1), (3, 5), (31, 33), (n - 1, n), *[sorted(rng.integers(0, n, 2)) for _ in range(30)]]:
        np.testing.assert_array_equal(s.read_range(part, "features", lo, hi), ref[lo:hi])


# ----------------------------------------------------------------------------- parallel writes
def test_four_parallel_writer_processes(tmp_path: Path) -> None:
    path = tmp_path / "par.zarr"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                WORKER,
                str(path),
                "--start",
                str(k * 50),
                "--stop",
                str((k + 1) * 50),
                "--shard",
                f"{k}/4",
                "--commit-interval",
                "0",
            ]
        )
        for k in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    s = FeatureStore.open(path)
    assert len(s.part_names()) == 4
    assert sorted(s.video_ids(), key=lambda v: int(v[1:])) == [f"v{i}" for i in range(200)]
    journal_ids = [e.video_id for j in s.journals().values() for e in j.entries]
    assert len(journal_ids) == len(set(journal_ids)) == 200
    for vid in s.video_ids():
        np.testing.assert_array_equal(s.get(vid), features(int(vid[1:])))
    assert verify_store(s).ok


# ------------------------------------------------------------------------------- crash safety
def test_sigkill_mid_run_then_rerun_is_complete_and_bit_identical(tmp_path: Path) -> None:
    reference = tmp_path / "ref.zarr"
    subprocess.run([sys.executable, WORKER, str(reference), "--start", "0", "--stop", "300"], check=True, timeout=120)
    path = tmp_path / "crash.zarr"
    proc = subprocess.Popen(
        [
            sys.executable,
            WORKER,
            str(path),
            "--start",
            "0",
            "--stop",
            "300",
            "--commit-interval",
            "0",
            "--sleep",
            "0.01",
        ]
    )
    deadline = time.time() + 60
    journal_lines = 0
    while time.time() < deadline and journal_lines < 40:
        journals = list((path / PARTS_DIR).glob(f"*/{JOURNAL}")) if (path / PARTS_DIR).exists() else []
        journal_lines = sum(j.read_bytes().count(b"\n") for j in journals)
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    crashed = FeatureStore.open(path)
    visible = crashed.video_ids()
    assert 40 <= len(visible) < 300, "the writer should have been killed mid-run"
    for vid in visible:  # nothing half-visible: every committed video is whole and right
        np.testing.assert_array_equal(crashed.get(vid), features(int(vid[1:])))
    assert verify_store(crashed).ok
    subprocess.run([sys.executable, WORKER, str(path), "--start", "0", "--stop", "300"], check=True, timeout=120)
    done, ref = FeatureStore.open(path), FeatureStore.open(reference)
    assert sorted(done.video_ids()) == sorted(ref.video_ids())
    a, b = done.load(ref.video_ids()), ref.load()
    assert a.data.tobytes() == b.data.tobytes()
    assert a.spans.tobytes() == b.spans.tobytes()
    assert verify_store(done).ok


def test_torn_journal_tail_is_ignored_and_noted(store: FeatureStore) -> None:
    write_range(store, 0, 5)
    part = store.part_names()[0]
    with open(store.path / PARTS_DIR / part / JOURNAL, "ab") as f:
        f.write(b'{"id":"v99","status":"ok","offset":0,"len')
    s = FeatureStore.open(store.path)
    assert sorted(s.video_ids()) == [f"v{i}" for i in range(5)]
    report = verify_store(s)
    assert report.ok and any("torn" in n for n in report.notes)


# ---------------------------------------------------------------------------------- few files
def test_file_count_grows_with_parts_not_videos(tmp_path: Path) -> None:
    spec = replace(SPEC, fields={"features": FieldSpec((8, 16), "float16")})
    store = FeatureStore.create(tmp_path / "many.zarr", spec)
    x = np.ones((2, 8, 16), np.float16)
    t = np.zeros((2, 2))
    with store.writer(commit_interval_s=3600) as w:
        for i in range(5000):
            w.write(f"v{i}", x * (i % 100), spans=t)
    s = FeatureStore.open(store.path)
    assert len(s) == 5000
    assert file_count(s.path) < 100
    np.testing.assert_array_equal(s.get("v4321"), x * 21)


# ------------------------------------------------------------------------ failures and retries
def test_failures_are_recorded_listed_and_cleared_by_a_retry(store: FeatureStore) -> None:
    with store.writer() as w:
        w.write("v0", features(0), spans=spans(0))
        w.fail("v1", "corrupt video: moov atom not found", path="a/v1.mp4")
    s = FeatureStore.open(store.path)
    assert s.failures["v1"].error == "corrupt video: moov atom not found"
    assert s.info()["failed"] == 1
    with pytest.raises(KeyError, match="retry"):
        s.get("v1")
    write_range(s, 1, 2)
    s.refresh()
    assert "v1" not in s.failures
    np.testing.assert_array_equal(s.get("v1"), features(1))


# ------------------------------------------------------------------------------- verification
def test_verify_reports_the_corrupt_video_and_field(tmp_path: Path) -> None:
    store = FeatureStore.create(
        tmp_path / "c.zarr", SPEC, layout=StoreLayout(chunk_bytes=4096, shard_bytes=64 * 1024, codec="none")
    )
    write_range(store, 0, 30)
    s = FeatureStore.open(store.path)
    e = s.index["v10"]
    shard = next(p for p in (s.path / PARTS_DIR / e.part / "features" / "c").rglob("*") if p.is_file())
    data = bytearray(shard.read_bytes())
    row_bytes = 64 * 2
    pos = e.offset * row_bytes + 5  # uncompressed codec: byte position of v10's first row
    data[pos] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = verify_store(FeatureStore.open(s.path))
    assert not report.ok
    assert len(report.problems) == 1
    assert (
        "'v10'" in report.problems[0]
        and "'features'" in report.problems[0]
        and "checksum mismatch" in report.problems[0]
    )


def test_verify_reports_unreadable_journal_lines(store: FeatureStore) -> None:
    write_range(store, 0, 3)
    journal = store.path / PARTS_DIR / store.part_names()[0] / JOURNAL
    lines = journal.read_bytes().split(b"\n")
    lines.insert(1, b"{not json")
    journal.write_bytes(b"\n".join(lines))
    report = verify_store(FeatureStore.open(store.path))
    assert any(f"{JOURNAL}:2" in p for p in report.problems)


def test_verify_counts_a_video_committed_twice_once_and_names_the_duplicate(store: FeatureStore) -> None:
    write_range(store, 0, 4)
    write_range(store, 2, 6, shard="1/2")  # an overlapping second submission commits v2 and v3 again
    report = verify_store(FeatureStore.open(store.path))
    assert report.ok and report.checked == 6 and report.commits == 8
    assert sum("committed 2 times" in n for n in report.notes) == 2
    assert any("'v2' is committed 2 times" in n for n in report.notes)
    proc = subprocess.run(
        [sys.executable, "-m", "fsv", "store", "verify", str(store.path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "6 videos checked (2 duplicate commit(s)), all intact" in proc.stdout, (
        proc.stdout + proc.stderr
    )
    assert "committed 2 times" in proc.stderr
