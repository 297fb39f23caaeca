"""``fsv submit`` against a real SLURM (``tests/cluster/slurm.sh``: slurmctld, slurmd, slurmdbd on
MariaDB, munge), end to end through the CLI on small real videos: shards equal a single run bit
for bit, a cancelled task is redone alone, a task at its time limit is requeued and resumes by
itself, a killed job is reported instead of waited on, seed sweeps equal single runs, and
dask-jobqueue runs on the same cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from fsv.pipeline.manifests import Manifest, VideoRecord
from fsv.pipeline.store import FeatureStore
from fsv.pipeline.store.layout import read_journal

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

FSV = [sys.executable, "-m", "fsv"]
C3D = ["--backbone", "c3d", "--weights", "random", "--threads", "1"]
SMALL = ["--cpus", "1", "--mem", "2"]


def fsv(*args: str, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*FSV, *args], capture_output=True, text=True, timeout=timeout, env=env)


def clip_set(root: Path, frames: list[int]) -> Path:
    """Real mpeg4 clips of the given lengths at 25 fps and their manifest (durations unknown, so
    shards are planned from probed frame counts)."""
    from conftest import write_video

    ids = [f"v{i:02d}" for i in range(len(frames))]
    for i, (v, n) in enumerate(zip(ids, frames)):
        write_video(root / f"{v}.mp4", n_frames=n, fps=25, size=(96, 72), seed=i)
    manifest = root / "m.csv"
    Manifest("m", [VideoRecord(v, f"{v}.mp4", "a", "test") for v in ids], ["a"], "classification").write(manifest)
    return manifest


def exported(store: Path, out: Path) -> dict[str, tuple[np.ndarray, dict]]:
    """``fsv store export`` of a store, read back: video -> (features, attributes)."""
    proc = fsv("store", "export", str(store), "--h5", str(out))
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out, "r") as f:
        return {k: (f[k][()], {a: np.asarray(f[k].attrs[a]).tolist() for a in f[k].attrs}) for k in f}


def assert_same_export(a: Path, b: Path, tmp: Path) -> None:
    ea, eb = exported(a, tmp / f"{a.name}.h5"), exported(b, tmp / f"{b.name}.h5")
    assert sorted(ea) == sorted(eb)
    for v in ea:
        assert ea[v][0].dtype == eb[v][0].dtype and ea[v][0].tobytes() == eb[v][0].tobytes(), v
        assert ea[v][1] == eb[v][1], v


def slurm_out(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=60).stdout


def array_id(folder: Path) -> str:
    """The SLURM job (array) id of the one submission whose jobs live in ``folder``."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ids = (
            {p.name.split("_")[0] for p in folder.iterdir() if p.is_dir() and p.name[0].isdigit()}
            if folder.is_dir()
            else set()
        )
        if ids:
            return ids.pop()
        time.sleep(0.2)
    raise AssertionError(f"no job folder appeared in {folder}")


def committed(store: Path, part_prefix: str = "") -> list[str]:
    """Videos committed by the parts whose names start with ``part_prefix`` (e.g. ``0of2``)."""
    out = []
    for journal in (store / "parts").glob(f"{part_prefix}*/journal.jsonl"):
        out += [e.video_id for e in read_journal(journal, journal.parent.name).entries if e.status == "ok"]
    return out


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory, slurm_cluster: str) -> tuple[Path, Path, Path]:
    """Six short clips of unequal length, and a single-process `fsv extract` of them."""
    root = tmp_path_factory.mktemp("short")
    manifest = clip_set(root, [40, 64, 33, 52, 90, 48])
    single = root / "single.zarr"
    proc = fsv("extract", *C3D, "--manifest", str(manifest), "--root", str(root), "--store", str(single))
    assert proc.returncode == 0, proc.stderr
    return root, manifest, single


@pytest.fixture(scope="module")
def long(tmp_path_factory: pytest.TempPathFactory, slurm_cluster: str) -> tuple[Path, Path, Path]:
    """22 clips of 3 snippets that take about 58 s on one core, and a single run of them. SLURM
    checks time limits on a 30 s tick and sends a 1-minute job's checkpoint signal 15-45 s after
    its start, so a job of these clips is always stopped at least once; at about 3 s a clip, every
    run commits clips even on a loaded machine."""
    root = tmp_path_factory.mktemp("long")
    manifest = clip_set(root, [56 + 2 * (i % 4) for i in range(22)])
    single = root / "single.zarr"
    proc = fsv("extract", *C3D, "--manifest", str(manifest), "--root", str(root), "--store", str(single), timeout=1200)
    assert proc.returncode == 0, proc.stderr
    return root, manifest, single


def test_slurm_shards_equal_a_single_run(short: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, manifest, single = short
    store = tmp_path / "slurm.zarr"
    proc = fsv(
        "submit",
        "extract",
        *C3D,
        "--manifest",
        str(manifest),
        "--root",
        str(root),
        "--store",
        str(store),
        "--shards",
        "3",
        "--executor",
        "slurm",
        *SMALL,
        "--folder",
        str(tmp_path / "jobs"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 done" in proc.stderr  # the wait reported the jobs' states
    assert len(FeatureStore.open(store).part_names()) == 3
    assert_same_export(single, store, tmp_path)
    sizes = sorted(len(committed(store, f"{i}of3")) for i in range(3))
    assert sizes == [2, 2, 2]  # balanced by probed frame counts: 2 videos each here


def test_slurm_scancel_of_one_task_then_the_same_command_does_only_the_missing_videos(
    short: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, manifest, single = short
    store, jobs = tmp_path / "slurm.zarr", tmp_path / "jobs"
    cmd = [
        *FSV,
        "submit",
        "extract",
        *C3D,
        "--manifest",
        str(manifest),
        "--root",
        str(root),
        "--store",
        str(store),
        "--shards",
        "2",
        "--executor",
        "slurm",
        *SMALL,
        "--folder",
        str(jobs),
        "--commit-every",
        "0",
    ]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    array = array_id(jobs)
    deadline = time.monotonic() + 600
    while not committed(store, "0of2") and time.monotonic() < deadline:
        time.sleep(0.2)
    subprocess.run(["scancel", f"{array}_0"], check=True)
    out, errs = first.communicate(timeout=600)
    assert first.returncode == 1, out + errs
    assert f"job 1/2 (id {array}_0" in errs and "was cancelled" in errs and "CANCELLED" in errs, errs
    done_before = set(FeatureStore.open(store).video_ids())
    assert 0 < len(done_before) < 6, "the cancel should land mid-run"
    parts_before = set(FeatureStore.open(store).part_names())
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    s = FeatureStore.open(store)
    new_parts = set(s.part_names()) - parts_before
    redone = [v for p in new_parts for v in committed(store, p)]
    assert sorted(redone) == sorted(set(s.video_ids()) - done_before)  # only the missing videos, each once
    assert all(p.startswith("0of2") for p in new_parts)  # the finished shard had nothing to do
    assert_same_export(single, store, tmp_path)


def release_requeued(job: str, stop: threading.Event) -> None:
    """SLURM holds a requeued job for about two minutes (pending reason BeginTime); start it at
    once, as an administrator may, so the test does not wait for the hold (fsv does nothing)."""
    while not stop.wait(0.5):
        reason = subprocess.run(["squeue", "-h", "-j", job, "-o", "%r"], capture_output=True, text=True).stdout.strip()
        if reason == "BeginTime":
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)


def test_slurm_task_at_its_time_limit_is_requeued_and_resumes_by_itself(
    long: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, manifest, single = long
    store, jobs = tmp_path / "slurm.zarr", tmp_path / "jobs"
    cmd = [
        *FSV,
        "submit",
        "extract",
        *C3D,
        "--manifest",
        str(manifest),
        "--root",
        str(root),
        "--store",
        str(store),
        "--shards",
        "1",
        "--executor",
        "slurm",
        *SMALL,
        "--time",
        "1",
        "--folder",
        str(jobs),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    array = array_id(jobs)
    stop = threading.Event()
    releaser = threading.Thread(target=release_requeued, args=(array, stop), daemon=True)
    releaser.start()
    try:
        out, errs = proc.communicate(timeout=900)
    finally:
        stop.set()
    assert proc.returncode == 0, out + errs
    history = slurm_out("sacct", "-D", "-X", "-n", "-P", "-o", "JobID,State", "-j", array)
    assert "REQUEUED" in history, history  # SLURM stopped it at the time limit and ran it again
    runs = FeatureStore.open(store).part_names()
    assert len(runs) >= 2  # each run wrote its own part and resumed after the last one's videos
    assert_same_export(single, store, tmp_path)


def test_slurm_job_killed_without_a_result_is_reported_not_waited_on(
    short: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, manifest, _ = short
    store, jobs = tmp_path / "slurm.zarr", tmp_path / "jobs"
    cmd = [
        *FSV,
        "submit",
        "extract",
        *C3D,
        "--manifest",
        str(manifest),
        "--root",
        str(root),
        "--store",
        str(store),
        "--shards",
        "1",
        "--executor",
        "slurm",
        *SMALL,
        "--folder",
        str(jobs),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    array = array_id(jobs)
    deadline = time.monotonic() + 300
    pids: list[int] = []
    while not pids and time.monotonic() < deadline:  # the job's python, as the out-of-memory killer would find it
        found = subprocess.run(
            ["pgrep", "-f", f"submitit.core._submit.*{jobs}"], capture_output=True, text=True
        ).stdout.split()
        pids = [int(p) for p in found]
        time.sleep(0.2)
    assert pids, "the job never started"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    t_kill = time.monotonic()
    out, errs = proc.communicate(timeout=300)
    assert proc.returncode == 1, out + errs
    assert time.monotonic() - t_kill < 120
    assert f"(id {array}," in errs and ("signal 9" in errs or "FAILED" in errs), errs
    assert "log " in errs and str(jobs) in errs  # the log path is named


def test_slurm_request_no_partition_can_satisfy_is_refused_at_submit_time(
    short: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, manifest, _ = short
    base = [
        "submit",
        "extract",
        *C3D,
        "--manifest",
        str(manifest),
        "--root",
        str(root),
        "--store",
        str(tmp_path / "s.zarr"),
        "--shards",
        "2",
        "--executor",
        "slurm",
        "--folder",
        str(tmp_path / "jobs"),
    ]
    for extra, said in (
        (["--cpus", "512"], "Requested node configuration is not available"),
        (["--gpus", "1"], "gres"),
        (["--partition", "nope"], "invalid partition"),
        (["--device", "cuda"], "ask for no GPU"),
    ):
        proc = fsv(*base, *extra)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert said.lower() in proc.stderr.lower() and "Traceback" not in proc.stderr, proc.stderr
    assert not list((tmp_path / "jobs").glob("*_*")), "nothing may be submitted"


def test_slurm_seed_sweep_equals_single_runs_and_evaluates(tmp_path: Path, slurm_cluster: str) -> None:
    from fsv.heads.data.synthetic import SyntheticConfig, write_synthetic

    data = tmp_path / "data"
    write_synthetic(data, SyntheticConfig(dim=32, videos_per_class=12))
    env = {**os.environ, "FSV_EPISODES": str(tmp_path / "episodes")}
    common = [
        "--store",
        str(data / "store.zarr"),
        "--manifest",
        str(data / "manifest.jsonl"),
        "--shot",
        "1",
        "--device",
        "cpu",
        "--set",
        "train_episodes=24",
        "--set",
        "val_every=12",
        "--set",
        "val_episodes=10",
        "--set",
        "episodes_per_update=4",
        "--set",
        "head_args.out_dim=32",
    ]
    sweep = tmp_path / "sweep"
    proc = fsv(
        "submit",
        "train-head",
        "trx",
        "--out",
        str(sweep),
        "--seeds",
        "3",
        "--executor",
        "slurm",
        *SMALL,
        "--time",
        "30",
        "--folder",
        str(tmp_path / "jobs"),
        *common,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for k in range(3):
        single = tmp_path / f"single{k}"
        one = fsv("train-head", "trx", "--out", str(single), "--seed", str(k), *common, env=env)
        assert one.returncode == 0, one.stderr
        assert (single / "metrics.csv").read_text() == (sweep / f"seed{k}" / "metrics.csv").read_text()
        a = torch.load(single / "best.pt", weights_only=True)["model"]
        b = torch.load(sweep / f"seed{k}" / "best.pt", weights_only=True)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    ev = fsv("eval", str(sweep), "--episodes", "20", "--json", "--device", "cpu", env=env)
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert result["seeds"] == 3 and len(result["runs"]) == 3


def test_slurm_sweep_with_a_split_too_small_is_refused_before_submitting(tmp_path: Path, slurm_cluster: str) -> None:
    from fsv.heads.data.synthetic import SyntheticConfig, write_synthetic

    data = tmp_path / "data"
    write_synthetic(data, SyntheticConfig(dim=32, videos_per_class=12))
    proc = fsv(
        "submit",
        "train-head",
        "protonet",
        "--out",
        str(tmp_path / "sweep"),
        "--seeds",
        "2",
        "--executor",
        "slurm",
        *SMALL,
        "--folder",
        str(tmp_path / "jobs"),
        "--store",
        str(data / "store.zarr"),
        "--manifest",
        str(data / "manifest.jsonl"),
        "--way",
        "40",
        env={**os.environ, "FSV_EPISODES": str(tmp_path / "episodes")},
    )
    assert proc.returncode == 2 and "needs 40" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "jobs").exists() or not list((tmp_path / "jobs").glob("*_*"))


def test_dask_jobqueue_on_the_same_slurm_with_decoding_workers(short: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, manifest, single = short
    store = tmp_path / "dask.zarr"
    proc = fsv(
        "submit",
        "extract",
        *C3D,
        "--manifest",
        str(manifest),
        "--root",
        str(root),
        "--store",
        str(store),
        "--shards",
        "3",
        "--executor",
        "dask",
        "--dask-cluster",
        "slurm",
        "--dask-workers",
        "2",
        *SMALL,
        "--time",
        "30",
        "--folder",
        str(tmp_path / "jobs"),
    )
    assert proc.returncode == 0, (
        proc.stdout + proc.stderr
    )  # default --workers 1: decoding processes inside dask workers
    assert_same_export(single, store, tmp_path)


def test_slurm_job_that_can_never_start_is_cancelled_with_its_reason(
    short: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, manifest, _ = short
    cpus = slurm_out("sinfo", "-h", "-o", "%c").split()[0]
    blocker = slurm_out(
        "sbatch",
        "--parsable",
        f"--cpus-per-task={cpus}",
        "--mem=1G",
        "--time=10",
        "-o",
        "/dev/null",
        "--wrap",
        "sleep 600",
    ).strip()
    jobs = tmp_path / "jobs"
    cmd = [
        *FSV,
        "submit",
        "extract",
        *C3D,
        "--manifest",
        str(manifest),
        "--root",
        str(root),
        "--store",
        str(tmp_path / "s.zarr"),
        "--shards",
        "2",
        "--executor",
        "slurm",
        *SMALL,
        "--time",
        "30",
        "--folder",
        str(jobs),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "PD" not in slurm_out("squeue", "-h", "-n", "fsv-extract", "-o", "%t"):
            time.sleep(0.5)
        # the partition's limit drops below the jobs' --time while they wait: they can never start
        subprocess.run(["scontrol", "update", "PartitionName=debug", "MaxTime=5"], check=True)
        out, errs = proc.communicate(timeout=300)
    finally:
        subprocess.run(["scontrol", "update", "PartitionName=debug", "MaxTime=INFINITE"], check=True)
        subprocess.run(["scancel", blocker], check=True)
    assert proc.returncode == 2, out + errs
    assert "PartitionTimeLimit" in errs and "cancelled the 2 unfinished job(s)" in errs, errs
    assert not slurm_out("squeue", "-h", "-n", "fsv-extract", "-o", "%i").strip()
