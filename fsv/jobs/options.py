"""What a batch job asks the scheduler for, the same for every ``fsv submit`` verb.

:class:`ClusterOptions` is turned into submitit parameters (SLURM job arrays, local processes), into
``sbatch --test-only`` flags (the request is checked before anything is submitted) and into
dask-jobqueue keyword arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsv.errors import FsvInputError

EXECUTORS = ("local", "slurm", "dask")
DASK_CLUSTERS = {"local": None, "slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster"}


@dataclass(frozen=True)
class ClusterOptions:
    """Scheduler settings of one submission.

    ``time_min``, ``cpus_per_task``, ``mem_gb`` and ``gpus_per_node`` are per job (one shard or
    seed); ``array_parallelism`` caps how many array tasks SLURM runs at once; ``requeues`` is how
    often a job that reaches its time limit is requeued (each run resumes from the last one's
    committed work); ``dask_cluster`` is
    ``local`` (a ``distributed.LocalCluster`` of ``dask_workers`` processes) or a dask-jobqueue
    cluster (``slurm``, ``pbs``, ``sge``) of ``dask_workers`` jobs; ``extra`` is passed to
    submitit's ``update_parameters`` as it is.
    """

    folder: Path = Path("fsv-jobs")
    partition: str | None = None
    time_min: int = 240
    cpus_per_task: int = 4
    gpus_per_node: int = 0
    mem_gb: int = 16
    array_parallelism: int = 64
    dask_cluster: str = "local"
    dask_workers: int = 2
    requeues: int = 10
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.requeues < 0:
            raise FsvInputError(f"--requeues must be 0 or more, got {self.requeues}")
        for name in ("time_min", "cpus_per_task", "mem_gb", "array_parallelism", "dask_workers"):
            if getattr(self, name) < 1:
                raise FsvInputError(f"--{_FLAGS[name]} must be at least 1, got {getattr(self, name)}")
        if self.gpus_per_node < 0:
            raise FsvInputError(f"--gpus must be 0 or more, got {self.gpus_per_node}")
        if self.dask_cluster not in DASK_CLUSTERS:
            raise FsvInputError(f"--dask-cluster must be one of {', '.join(DASK_CLUSTERS)}, got {self.dask_cluster!r}")

    @property
    def signal_delay_s(self) -> int:
        """Seconds before the time limit at which SLURM sends the checkpoint signal (USR2): a tenth
        of the limit, between 15 s and 120 s (SLURM may send it up to a minute earlier)."""
        return max(15, min(120, self.time_min * 6))

    def submitit_executor_kwargs(self, executor: str) -> dict[str, Any]:
        """Keyword arguments of the ``submitit.AutoExecutor`` constructor."""
        return {"slurm_max_num_timeout": self.requeues} if executor == "slurm" else {}

    def submitit_parameters(self, executor: str, name: str) -> dict[str, Any]:
        """Keyword arguments of ``submitit.AutoExecutor.update_parameters``."""
        params: dict[str, Any] = {
            "name": name,
            "timeout_min": self.time_min,
            "cpus_per_task": self.cpus_per_task,
            "mem_gb": self.mem_gb,
        }
        if self.gpus_per_node:
            params["gpus_per_node"] = self.gpus_per_node
        if executor == "slurm":
            params["slurm_array_parallelism"] = self.array_parallelism
            params["slurm_signal_delay_s"] = self.signal_delay_s
            if self.partition:
                params["slurm_partition"] = self.partition
        params.update(self.extra)
        return params

    def sbatch_flags(self) -> list[str]:
        """The resource flags of one job, as ``sbatch`` takes them."""
        flags = [f"--time={self.time_min}", f"--cpus-per-task={self.cpus_per_task}", f"--mem={self.mem_gb}G"]
        if self.partition:
            flags.append(f"--partition={self.partition}")
        if self.gpus_per_node:
            flags.append(f"--gpus-per-node={self.gpus_per_node}")
        return flags

    def jobqueue_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of a dask-jobqueue cluster: one worker process per job whose nanny
        starts non-daemonic workers (a shard's decoding processes are the worker's children)."""
        return {
            "cores": self.cpus_per_task,
            "processes": 1,
            "memory": f"{self.mem_gb}GB",
            "walltime": f"{self.time_min // 60:02d}:{self.time_min % 60:02d}:00",
            "queue": self.partition,
            "log_directory": str(self.folder),
            "job_script_prologue": ["export DASK_DISTRIBUTED__WORKER__DAEMON=False"],
            **({"job_extra_directives": [f"--gpus-per-node={self.gpus_per_node}"]} if self.gpus_per_node else {}),
            **self.extra,
        }

    def check_device(self, executor: str, device: str) -> str:
        """The ``--device`` the jobs run with: CUDA where the jobs get no GPU is an input error; on
        SLURM with ``--gpus``, ``auto`` becomes ``cuda`` so that a job without a usable GPU stops
        with that cause instead of running on its CPUs."""
        wants_cuda = device.startswith("cuda")
        if executor == "slurm" or (executor == "dask" and self.dask_cluster != "local"):
            if wants_cuda and not self.gpus_per_node:
                raise FsvInputError(
                    f"--device {device} but the jobs ask for no GPU; add --gpus 1 (or use --device cpu)"
                )
            if device == "auto" and self.gpus_per_node:
                return "cuda"
            return device
        from fsv.device import resolve_device

        resolve_device(device)  # local processes share this machine's devices
        return device


_FLAGS = {
    "time_min": "time",
    "cpus_per_task": "cpus",
    "mem_gb": "mem",
    "array_parallelism": "parallel",
    "dask_workers": "dask-workers",
}
