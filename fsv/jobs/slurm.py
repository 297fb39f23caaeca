"""Asking SLURM directly: can a request run at all, what state each array task is in, why it waits.

submitit reads job states with ``sacct`` at most every few minutes and waits on a job that died
without writing its result until ``sacct`` says so; fsv asks ``sacct`` and ``squeue`` itself on its
own schedule, so a dead job is reported within seconds of SLURM knowing it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from fsv.errors import FsvInputError

# States after which a job never runs again (SLURM's JOB_STATE_CODES); REQUEUED, PREEMPTED and
# RESIZING go back to PENDING.
FINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "REVOKED",
    "SPECIAL_EXIT",
}
# Pending reasons that no amount of waiting resolves: the request does not fit the partition,
# account or QOS (SLURM's "job reason codes").
HOPELESS_REASONS = {
    "BadConstraints",
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "InvalidAccount",
    "InvalidQOS",
    "AccountNotAllowed",
    "QOSNotAllowed",
    "JobLaunchFailure",
    "DependencyNeverSatisfied",
}


@dataclass(frozen=True)
class TaskState:
    """One array task as SLURM reports it: ``state`` (``PENDING``, ``RUNNING``, ``COMPLETED``,
    ``CANCELLED``...), the pending ``reason`` (``Resources``, ``Priority``...), ``exit_code``
    (``code:signal``)."""

    state: str
    reason: str = ""
    exit_code: str = ""

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


def _run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    if shutil.which(cmd[0]) is None:
        raise FsvInputError(
            f"--executor slurm needs SLURM's {cmd[0]} on PATH; run on a cluster login node (or use --executor local or dask)"
        )
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check_request(flags: list[str]) -> None:
    """Raise :class:`FsvInputError` with SLURM's own words unless a job with ``flags`` could run
    (``sbatch --test-only``: partition, cores, memory, GPUs and time limit checked, nothing submitted)."""
    proc = _run(["sbatch", "--test-only", *flags, "--wrap", "true"])
    if proc.returncode != 0:
        said = " ".join(line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip())
        raise FsvInputError(
            f"SLURM refuses the request {' '.join(flags)}: {said}; ask for less (--cpus, --mem, --gpus, --time) or another --partition"
        )


def _expand(job_id: str) -> list[str]:
    """``"12_[0-2,5]"`` -> ``["12_0", "12_1", "12_2", "12_5"]``; other ids as they are."""
    m = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not m:
        return [job_id]
    out = []
    for piece in m.group(2).split("%")[0].split(","):
        lo, _, hi = piece.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def task_states(array_ids: set[str]) -> dict[str, TaskState]:
    """The state of every task of the job arrays ``array_ids`` (``"12"``), keyed ``"12_3"`` (or
    ``"12"`` for a plain job): ``sacct`` for the record, ``squeue`` for the live reason of pending
    tasks. A task SLURM does not know yet is absent."""
    if not array_ids:
        return {}
    states: dict[str, TaskState] = {}
    ids = ",".join(sorted(array_ids))
    acct = _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State,ExitCode", "-j", ids])
    if acct.returncode == 0:
        for line in acct.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 3:
                for task in _expand(parts[0]):
                    states[task] = TaskState(parts[1].split(" ")[0], "", parts[2])
    queue = _run(["squeue", "-h", "-r", "-o", "%i|%T|%r", "-j", ids])
    if queue.returncode == 0:
        for line in queue.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 3:
                old = states.get(parts[0])
                states[parts[0]] = TaskState(
                    parts[1], "" if parts[2] == "None" else parts[2], old.exit_code if old else ""
                )
    return states


def cancel(job_ids: list[str]) -> None:
    """``scancel`` the jobs (errors ignored: a job may have ended meanwhile)."""
    if job_ids:
        _run(["scancel", *job_ids])
