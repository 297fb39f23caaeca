"""One function over many items as batch jobs: a submitit job array (SLURM, or local processes) or
dask futures, waited on until every job has a result or a cause.

Every job is :class:`Resumable`: when SLURM signals the time limit (or a preemption), submitit
calls its ``checkpoint`` and requeues the same call, which resumes from what the job committed
(extraction skips committed videos, training restarts from ``last.pt``). While waiting, fsv asks
SLURM for the state of every task itself (:mod:`fsv.jobs.slurm`): a job that ended without a
result (cancelled, killed, out of memory, node lost) is reported with its cause within seconds of
SLURM recording it, and a job that can never start is cancelled with SLURM's reason.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from fsv.errors import FsvInputError, FsvJobError
from fsv.jobs import slurm
from fsv.jobs.failures import cause_from_trace, dead_job_cause, raised_cause, submitit_trace
from fsv.jobs.options import DASK_CLUSTERS, EXECUTORS, ClusterOptions
from fsv.progress import StatusLine

log = logging.getLogger(__name__)

RESULT_POLL_S = 2.0  # how often result files are looked for
GRACE_S = 20.0  # a job SLURM calls finished may still be writing its result (slow file systems)
UNKNOWN_LIMIT_S = 300.0  # a job SLURM has no record of for this long is reported as lost


class Resumable:
    """``fn(item)`` as a job SLURM may stop and requeue: ``checkpoint`` (called by submitit on the
    time-limit or preemption signal, just before it requeues the job and exits) returns the same
    call, which resumes from committed work.

    The requeue's SIGTERM also reaches the job's decoding processes; their death is the stop's
    doing, not the job's error, so once ``checkpoint`` ran the job exits instead of reporting it
    (a result file with that error would end the wait for a job that is about to run again).
    """

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn
        self._stopping = False

    def __getstate__(self) -> dict[str, Any]:
        return {"fn": self.fn}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.fn, self._stopping = state["fn"], False

    def __call__(self, item: Any) -> Any:
        try:
            return self.fn(item)
        except Exception:
            if self._stopping:
                raise SystemExit(-1) from None
            raise

    def checkpoint(self, item: Any) -> Any:
        import os
        import signal

        from submitit.helpers import DelayedSubmission

        self._stopping = True
        signal.signal(signal.SIGCHLD, lambda *_: None)  # torch's handler would raise on the decoding workers' death
        # a repeated signal (SLURM may send it again while it stops the job) must not requeue it twice
        signal.signal(getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")), signal.SIG_IGN)
        log.warning("checkpoint signal: this job is requeued and resumes from what it has committed")
        return DelayedSubmission(self, item)


class Submitter:
    """Where jobs go, checked before anything is created or submitted: the executor's name, the
    scheduler request (``sbatch --test-only`` on SLURM), the submitit parameters, dask-jobqueue."""

    def __init__(self, executor: str, cluster: ClusterOptions, name: str = "fsv") -> None:
        if executor not in EXECUTORS:
            raise FsvInputError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
        self.executor, self.cluster, self.name = executor, cluster, name
        if executor == "slurm" or (executor == "dask" and cluster.dask_cluster == "slurm"):
            slurm.check_request(cluster.sbatch_flags())
        if executor == "dask":
            if cluster.dask_cluster != "local":
                try:
                    import dask_jobqueue  # noqa: F401
                except ImportError as e:
                    raise FsvInputError(
                        f"--dask-cluster {cluster.dask_cluster} needs dask-jobqueue: pip install 'fsv[jobqueue]'"
                    ) from e
            self._submitit = None
        else:
            import submitit

            self._submitit = submitit.AutoExecutor(
                folder=cluster.folder / "%j", cluster=executor, **cluster.submitit_executor_kwargs(executor)
            )
            self._submitit.update_parameters(**cluster.submitit_parameters(executor, name))

    def run(self, fn: Callable[[Any], Any], items: list[Any], *, wait: bool = True) -> list[Any]:
        """``fn(item)`` for every item, one job each; the results in order (with ``wait=False``
        on submitit, the job ids). Raises :class:`FsvJobError` naming every failed job with its
        cause and log, after all of them have ended."""
        if self._submitit is None:
            return _run_dask(fn, items, self.cluster, self.name)
        jobs = self._submitit.map_array(Resumable(fn), items)
        log.info("submitted %d job(s) to %s: %s", len(jobs), self.executor, ", ".join(j.job_id for j in jobs))
        if not wait:
            return [j.job_id for j in jobs]
        return wait_for_jobs(jobs, self.executor, self.name)


def _job_label(i: int, n: int, job: Any) -> str:
    return f"job {i + 1}/{n} (id {job.job_id}, log {job.paths.stderr})"


def wait_for_jobs(jobs: list[Any], executor: str, name: str) -> list[Any]:
    """Wait for submitit ``jobs``; their results, or :class:`FsvJobError` with every failure.

    A job that raised is reported with SLURM's verdict when SLURM has one: a cancelled job's
    processes die of the SIGTERM, and "cancelled" is the cause, not the error that followed."""
    n = len(jobs)
    results: list[Any] = [None] * n
    errors: dict[int, str] = {}
    raised: dict[int, str] = {}  # the job's own error, while SLURM's state is awaited
    ended_at: dict[int, float] = {}  # when a job was first seen ended (final state, or an error result)
    unknown_since: dict[int, float] = {}
    hopeless: dict[int, str] = {}
    pending = set(range(n))
    arrays = {j.job_id.split("_")[0] for j in jobs}
    states: dict[str, slurm.TaskState] = {}
    t0 = time.monotonic()
    next_query = 0.0
    with StatusLine(f"{name} {', '.join(sorted(arrays))}", n) as status:
        while pending:
            now = time.monotonic()
            if executor == "slurm" and now >= next_query:
                states = slurm.task_states(arrays)
                next_query = now + min(
                    60.0, max(5.0, (now - t0) / 10)
                )  # every 5 s at first, every minute after 10 minutes
            for i in sorted(pending):
                job = jobs[i]
                st = states.get(job.job_id)
                if i not in raised and (job.paths.result_pickle.exists() or (executor == "local" and job.done())):
                    try:
                        results[i] = job.result()
                        pending.discard(i)
                        continue
                    except (
                        Exception
                    ) as e:  # the job's own error (submitit re-raises it with its traceback) or a dead process
                        raised[i] = cause_from_trace(submitit_trace(str(e)))
                if i in raised:
                    if (
                        executor != "slurm"
                        or (st is not None and st.final)
                        or now - ended_at.setdefault(i, now) > GRACE_S
                    ):
                        errors[i] = f"{_job_label(i, n, job)}: {raised_cause(st, raised[i])}"
                        pending.discard(i)
                    continue
                if executor != "slurm":
                    continue
                if st is None:
                    if now - unknown_since.setdefault(i, now) > UNKNOWN_LIMIT_S:
                        errors[i] = (
                            f"{_job_label(i, n, job)}: SLURM has no record of it (sacct and squeue); it was lost"
                        )
                        pending.discard(i)
                    continue
                unknown_since.pop(i, None)
                if st.final:
                    if now - ended_at.setdefault(i, now) > GRACE_S:
                        errors[i] = f"{_job_label(i, n, job)}: {dead_job_cause(st, job.paths.stderr)}"
                        pending.discard(i)
                elif st.state == "PENDING" and st.reason.split(",")[0] in slurm.HOPELESS_REASONS:
                    hopeless[i] = st.reason
            if hopeless:
                slurm.cancel([jobs[i].job_id for i in sorted(pending)])
                reasons = ", ".join(sorted(set(hopeless.values())))
                raise FsvInputError(
                    f"SLURM will never start {len(hopeless)} of the {n} jobs (pending reason: {reasons}); "
                    f"cancelled the {len(pending)} unfinished job(s): ask for less (--cpus, --mem, --gpus, --time) or another --partition"
                )
            status.update(
                _summary(n, pending, errors, [states.get(jobs[i].job_id) for i in pending], executor), n - len(pending)
            )
            if pending:
                time.sleep(RESULT_POLL_S)
    _raise_failures(errors, n)
    return results


def _raise_failures(errors: dict[int, str], n: int) -> None:
    if errors:
        raise FsvJobError(
            f"{len(errors)} of {n} jobs failed (the others' work is kept; submit again to redo only what is missing):\n"
            + "\n".join(errors[i] for i in sorted(errors))
        )


def _summary(
    n: int, pending: set[int], errors: dict[int, str], live: list[slurm.TaskState | None], executor: str
) -> str:
    done = n - len(pending) - len(errors)
    parts = [f"{done} done"] + ([f"{len(errors)} failed"] if errors else [])
    if executor == "slurm":
        counts = Counter(
            (s.state.lower() + (f" ({s.reason})" if s.state == "PENDING" and s.reason else "")) if s else "submitted"
            for s in live
        )
        parts += [f"{c} {what}" for what, c in sorted(counts.items())]
    else:
        parts.append(f"{len(pending)} running")
    return ", ".join(parts)


def _run_dask(fn: Callable[[Any], Any], items: list[Any], cluster: ClusterOptions, name: str) -> list[Any]:
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.worker.daemon": False}):  # shards start decoding processes of their own
        if cluster.dask_cluster == "local":
            dc = LocalCluster(
                n_workers=cluster.dask_workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
        else:
            import dask_jobqueue

            dc = getattr(dask_jobqueue, DASK_CLUSTERS[cluster.dask_cluster])(**cluster.jobqueue_kwargs())
            dc.scale(jobs=min(cluster.dask_workers, len(items)))
        with dc, Client(dc) as client:
            futures = client.map(fn, items, pure=False)
            results: list[Any] = [None] * len(items)
            errors: dict[int, str] = {}
            index = {f.key: i for i, f in enumerate(futures)}
            remaining = set(futures)
            with StatusLine(f"{name} (dask {cluster.dask_cluster})", len(items)) as status:
                while remaining:
                    done = {f for f in remaining if f.done()}
                    remaining -= done
                    for f in done:
                        i = index[f.key]
                        try:
                            results[i] = f.result()
                        except Exception as e:  # the job's own error, raised again here
                            errors[i] = f"job {i + 1}/{len(items)}: {type(e).__name__}: {e}"
                    workers = len(client.scheduler_info().get("workers", {}))
                    status.update(
                        f"{len(items) - len(remaining) - len(errors)} done, {len(errors)} failed, {len(remaining)} to go on {workers} worker(s)",
                        len(items) - len(remaining),
                    )
                    if remaining:
                        time.sleep(RESULT_POLL_S)
    _raise_failures(errors, len(items))
    return results
