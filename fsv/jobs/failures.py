"""Why a job failed, in one line a user can act on: the Python error, or what SLURM did to it.

submitit reports a job that raised with its whole traceback followed by the log paths, and a job
that died without a result (cancelled, killed, out of memory, time limit) with its state and log;
these helpers keep the cause and the log path and drop the rest.
"""

from __future__ import annotations

import re
from pathlib import Path

from fsv.jobs.slurm import TaskState

_ERROR_LINE = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Failure))(?::\s*(.*))?$"
)
_SLURM_LINE = re.compile(r"(slurmstepd: error: .*|\*\*\* (?:JOB|STEP) .* \*\*\*)")

STATE_WORDS = {
    "CANCELLED": "was cancelled (scancel, or an administrator)",
    "TIMEOUT": "hit its time limit and was not requeued",
    "OUT_OF_MEMORY": "ran out of memory (ask for more with --mem)",
    "NODE_FAIL": "lost its node",
    "BOOT_FAIL": "could not boot its node",
    "DEADLINE": "passed its deadline",
    "PREEMPTED": "was preempted",
    "REVOKED": "was revoked",
}


def cause_from_trace(trace: str) -> str:
    """The raised error of a traceback (``"FsvInputError: split 'val' has ..."``), or its last line.

    >>> cause_from_trace("Traceback (most recent call last):\\n  File ...\\nfsv.errors.FsvInputError: bad split")
    'FsvInputError: bad split'
    """
    lines = [ln.strip() for ln in trace.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        m = _ERROR_LINE.match(line)
        if m:
            return f"{m.group(1)}: {m.group(2)}" if m.group(2) else m.group(1)
    return lines[-1] if lines else "no error message"


def submitit_trace(message: str) -> str:
    """The traceback inside a submitit ``FailedJobError`` message (between its dashed lines)."""
    parts = re.split(r"\n-{10,}\n", message)
    return parts[1] if len(parts) >= 3 else message


def log_cause(stderr: Path) -> str | None:
    """The last error a job's stderr log shows: a Python error, or SLURM's own line
    (``*** JOB 12 ON node CANCELLED AT ... DUE TO TIME LIMIT ***``)."""
    try:
        text = stderr.read_text(errors="replace")[-200_000:]
    except OSError:
        return None
    slurm = _SLURM_LINE.findall(text)
    if slurm:
        return slurm[-1].strip()
    for line in reversed(text.splitlines()):
        m = _ERROR_LINE.match(line.strip())
        if m:
            return f"{m.group(1)}: {m.group(2)}" if m.group(2) else m.group(1)
    return None


def dead_job_cause(state: TaskState, stderr: Path) -> str:
    """Why a job that ended without a result did so, from SLURM's state and the job's log."""
    base = state.state
    if base in STATE_WORDS:
        words = STATE_WORDS[base]
    else:
        code, _, sig = state.exit_code.partition(":")
        if sig and sig != "0":
            words = f"was killed by signal {sig}" + (
                " (SIGKILL: the out-of-memory killer or an administrator)" if sig == "9" else ""
            )
        else:
            words = f"ended ({base}, exit code {code or '?'}) without writing its result"
    found = log_cause(stderr)
    return f"{words} [SLURM state {base}]" + (f"; log says: {found}" if found else "")


def raised_cause(state: TaskState | None, error: str) -> str:
    """A job that raised ``error``: when SLURM ended it (cancelled, time limit, memory, node), that
    is the cause and the error its consequence; otherwise the error itself."""
    if state is not None and state.state in STATE_WORDS:
        return f"{STATE_WORDS[state.state]} [SLURM state {state.state}]; its last error: {error}"
    return error
