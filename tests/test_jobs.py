"""Batch jobs without a scheduler: scheduler options as submitit and sbatch take them, failure
causes, the local executor's error reports, balanced shards, the merged summary's wall time.
(The same code against a real SLURM: ``tests/test_slurm.py``.)"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from fsv.errors import FsvInputError, FsvJobError
from fsv.jobs.failures import cause_from_trace, dead_job_cause, log_cause, raised_cause, submitit_trace
from fsv.jobs.options import ClusterOptions
from fsv.jobs.run import Submitter
from fsv.jobs.slurm import TaskState, _expand
from fsv.pipeline.balance import imbalance, plan_shards, record_costs, shard_records
from fsv.pipeline.manifests import Manifest, VideoRecord

TRACE = """Traceback (most recent call last):
  File "/x/fsv/pipeline/extract.py", line 120, in extract
    raise FsvInputError(msg)
fsv.errors.FsvInputError: split 'val' has 2 classes with >= 6 videos; a 5-way episode needs 5
"""


@pytest.mark.parametrize("executor", ["slurm", "local"])
def test_submitit_accepts_every_parameter_fsv_passes(
    executor: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import submitit
    from submitit.slurm.slurm import SlurmExecutor

    # only the parameters are checked here, so SLURM's srun need not be installed (test_slurm.py submits for real)
    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    cluster = ClusterOptions(folder=tmp_path, partition="gpu", time_min=90, cpus_per_task=8, gpus_per_node=2, mem_gb=40)
    ex = submitit.AutoExecutor(folder=tmp_path / "%j", cluster=executor, **cluster.submitit_executor_kwargs(executor))
    ex.update_parameters(
        **cluster.submitit_parameters(executor, "fsv-test")
    )  # raises on an unknown key (the old slurm_mem_per_node)
    if executor == "slurm":
        params = ex._executor.parameters
        assert (
            params["mem"] == "40GB"
            and params["partition"] == "gpu"
            and params["time"] == 90
            and params["gpus_per_node"] == 2
        )
        assert params["signal_delay_s"] == 120 and ex._executor.max_num_timeout == 10
    assert cluster.sbatch_flags() == [
        "--time=90",
        "--cpus-per-task=8",
        "--mem=40G",
        "--partition=gpu",
        "--gpus-per-node=2",
    ]


def test_cluster_options_refuse_bad_values_and_cuda_without_gpus() -> None:
    with pytest.raises(FsvInputError, match="--mem must be at least 1"):
        ClusterOptions(mem_gb=0)
    with pytest.raises(FsvInputError, match="--dask-cluster"):
        ClusterOptions(dask_cluster="lsf")
    with pytest.raises(FsvInputError, match="ask for no GPU"):
        ClusterOptions().check_device("slurm", "cuda")
    assert ClusterOptions(gpus_per_node=1).check_device("slurm", "auto") == "cuda"
    assert ClusterOptions().check_device("slurm", "auto") == "auto"
    assert ClusterOptions(time_min=2).signal_delay_s == 15 and ClusterOptions(time_min=240).signal_delay_s == 120


def test_failure_causes_keep_the_error_and_what_slurm_did(tmp_path: Path) -> None:
    assert (
        cause_from_trace(TRACE) == "FsvInputError: split 'val' has 2 classes with >= 6 videos; a 5-way episode needs 5"
    )
    message = f"Job (task=0) failed during processing with trace:\n----------------------\n{TRACE}\n----------------------\nYou can check full logs at paths:\n  - /j/0_log.err"
    assert submitit_trace(message).strip() == TRACE.strip()
    assert cause_from_trace(submitit_trace(message)).startswith("FsvInputError: split 'val'")
    log = tmp_path / "0_log.err"
    log.write_text(
        "loading\nslurmstepd: error: *** JOB 12 ON node3 CANCELLED AT 2026-12-02T01:00:00 DUE TO TIME LIMIT ***\n"
    )
    assert "DUE TO TIME LIMIT" in log_cause(log)
    assert dead_job_cause(TaskState("CANCELLED", exit_code="0:15"), log).startswith("was cancelled")
    assert "out of memory" in dead_job_cause(TaskState("OUT_OF_MEMORY", exit_code="0:125"), tmp_path / "none.err")
    assert "signal 9" in dead_job_cause(TaskState("FAILED", exit_code="0:9"), tmp_path / "none.err")
    assert "exit code 3" in dead_job_cause(TaskState("FAILED", exit_code="3:0"), tmp_path / "none.err")
    assert raised_cause(
        TaskState("CANCELLED"), "RuntimeError: DataLoader worker is killed by signal: Terminated."
    ).startswith("was cancelled")
    assert raised_cause(TaskState("FAILED"), "ValueError: boom") == "ValueError: boom"
    assert (
        _expand("12_[0-2,5]") == ["12_0", "12_1", "12_2", "12_5"]
        and _expand("12_3") == ["12_3"]
        and _expand("7") == ["7"]
    )


@pytest.mark.slow
def test_local_executor_reports_each_failed_job_with_its_error_and_log(tmp_path: Path) -> None:
    sub = Submitter(
        "local", ClusterOptions(folder=tmp_path / "jobs", time_min=5, cpus_per_task=1, mem_gb=1), "fsv-test"
    )
    assert sub.run(int, ["3", "4"]) == [3, 4]
    with pytest.raises(FsvJobError) as e:
        sub.run(int, ["3", "x", "y"])
    text = str(e.value)
    assert "2 of 3 jobs failed" in text and "ValueError: invalid literal for int() with base 10: 'x'" in text
    assert (
        "job 2/3" in text
        and "job 3/3" in text
        and "job 1/3" not in text
        and str(tmp_path / "jobs") in text
        and "_log.err" in text
    )


def test_unknown_executor_is_refused() -> None:
    with pytest.raises(FsvInputError, match="unknown executor 'pbs'"):
        Submitter("pbs", ClusterOptions())


# ------------------------------------------------------------------------------ balanced shards
def longtail(n: int, seed: int = 0) -> np.ndarray:
    return np.exp(np.random.default_rng(seed).normal(np.log(120.0), 1.2, n)) * 25


def test_balanced_shards_cover_every_video_once_deterministically_and_evenly() -> None:
    costs = longtail(5000)
    for n in (1, 4, 16, 64):
        plan = plan_shards(costs, n)
        assert sorted(k for s in plan for k in s) == list(range(len(costs)))
        assert plan == plan_shards(costs.copy(), n)
        assert imbalance(costs, plan) <= 1.05 < imbalance(costs, plan_shards(costs, n, "stride")) or n == 1
    assert plan_shards(np.ones(10), 3, "stride") == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]  # every N-th, as before
    one_long = np.array([100.0, 1, 1, 1, 1])
    assert plan_shards(one_long, 2) == [[0], [1, 2, 3, 4]]  # the bound: the longest video alone
    with pytest.raises(FsvInputError, match="--shard-by"):
        plan_shards(costs, 2, "random")


def test_costs_come_from_frames_durations_or_probing(tmp_path: Path, make_video) -> None:
    make_video(tmp_path / "p.mp4", n_frames=30, fps=25)
    records = [
        VideoRecord("a", "a.mp4", "x", "t", fps=30.0, num_frames=300),
        VideoRecord("b", "b.mp4", "x", "t", fps=25.0, duration=10.0),
        VideoRecord("c", "c.mp4", "x", "t", duration=4.0),  # at the median known rate (27.5 fps)
        VideoRecord("p", "p.mp4", "x", "t"),  # probed from its file
        VideoRecord("m", "missing.mp4", "x", "t"),  # unreadable: costs nothing, fails fast when extracted
    ]
    np.testing.assert_allclose(record_costs(records, root=tmp_path), [300, 250, 110, 30, 0])
    np.testing.assert_array_equal(record_costs(records, fixed_per_video=True), np.ones(5))


def test_standalone_shards_plan_what_a_submission_plans(tmp_path: Path, make_video) -> None:
    frames = [20, 90, 35, 60, 25, 80, 40]
    for i, n in enumerate(frames):
        make_video(tmp_path / f"v{i}.mp4", n_frames=n, fps=25, seed=i)
    records = [VideoRecord(f"v{i}", f"v{i}.mp4", "x", "t") for i in range(len(frames))]  # no durations: probed
    shards = [shard_records(records, (i, 3), root=tmp_path) for i in range(3)]
    assert sorted(r.video_id for s in shards for r in s) == sorted(r.video_id for r in records)
    plan = plan_shards(np.array(frames, dtype=float), 3)
    assert [[r.video_id for r in s] for s in shards] == [[f"v{k}" for k in ks] for ks in plan]
    assert max(sum(frames[int(r.video_id[1:])] for r in s) for s in shards) <= 120  # 350 frames over 3 shards


@pytest.mark.slow
def test_merged_summary_throughput_is_total_work_over_wall_time(tmp_path: Path, make_video) -> None:
    from fsv.pipeline.cluster import ExtractJob, submit_extract
    from fsv.pipeline.extract import RunOptions
    from fsv.pipeline.plan import make_recipe
    from fsv.pipeline.weights import WeightsRef

    for i in range(4):
        make_video(tmp_path / f"v{i}.mp4", n_frames=40, fps=25, seed=i)
    manifest = tmp_path / "m.csv"
    Manifest("m", [VideoRecord(f"v{i}", f"v{i}.mp4", "a", "test") for i in range(4)], ["a"], "classification").write(
        manifest
    )
    cfg = make_recipe("c3d", weights={"rgb": WeightsRef("random", None, None, seed=0)})
    job = ExtractJob(str(manifest), tmp_path, tmp_path / "s.zarr", cfg, RunOptions(workers=0, threads=1))
    t0 = time.perf_counter()
    summary = submit_extract(
        job, 2, "local", ClusterOptions(folder=tmp_path / "jobs", cpus_per_task=1, mem_gb=2, time_min=10)
    )
    wall = time.perf_counter() - t0
    assert summary.written == 4
    assert 0.9 * wall <= summary.seconds <= wall  # the whole submission, not the slowest shard's own run
