"""The command-line options that several ``fsv`` commands share, declared once, and the
decorators that give them to a command (:func:`with_options`).

``fsv extract`` and ``fsv submit extract`` take :data:`EXTRACT_OPTIONS` and receive an
:class:`~fsv.pipeline.extract_setup.ExtractRequest`; ``fsv train-head`` and ``fsv submit
train-head`` take :data:`TRAIN_OPTIONS` and receive a :class:`~fsv.heads.setup.RunRequest`; every
``fsv submit`` verb takes :data:`SCHEDULER_OPTIONS` and receives ``executor``, a
:class:`~fsv.jobs.options.ClusterOptions` and ``wait``. Types and defaults come from those
classes, so they are written once too.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from fsv.pipeline.extract_setup import ExtractRequest

DEVICE = typer.Option("--device", help="auto (CUDA when available), cpu, cuda or cuda:N.")
DATASET = typer.Option("--dataset", help="Dataset name (see `fsv datasets list`).")
MANIFEST = typer.Option("--manifest", help="Manifest file (with --root and --store).")
DeviceOpt = Annotated[str, DEVICE]
DatasetOpt = Annotated[Optional[str], DATASET]
ManifestOpt = Annotated[Optional[Path], MANIFEST]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Exit 1 when any video failed.")]

# the options of `fsv extract` and `fsv submit extract`, declared once (types and defaults: ExtractRequest's)
EXTRACT_OPTIONS = {
    "backbone": typer.Option(
        "--backbone",
        help="resnet50 | i3d | c3d | clip-vit-b32 | clip-vit-b16 | clip-vit-l14 | videomaev2-g | videomaev2-b | videomaev2-s | videomae-b | videomae-l.",
    ),
    "recipe": typer.Option(
        "--recipe",
        help="A published extraction recipe of the backbone (default: its first), e.g. clip: openai, clip-fsar, video-features; videomaev2: thumos14, fineaction.",
    ),
    "grid": typer.Option(
        "--grid",
        help="Transformers: also store the last block's patch-token grid as field `grid` (STRM / TA2N read it).",
    ),
    "dataset": DATASET,
    "manifest": MANIFEST,
    "root": typer.Option("--root", help="Data root of the manifest's paths."),
    "store": typer.Option("--store", help="Store folder (default: the dataset's store for this spec)."),
    "streams": typer.Option("--streams", help="i3d: rgb, flow or rgb,flow (concatenated rgb then flow)."),
    "weights": typer.Option(
        "--weights",
        help="Checkpoint file or transformers model folder of the (RGB) model, or 'random' (recorded in the spec). Default: the weights cache.",
    ),
    "flow_weights": typer.Option(
        "--flow-weights",
        help="Checkpoint of the I3D flow model, or 'random'. Default: as --weights random, else the cache.",
    ),
    "layer": typer.Option("--layer", help="c3d: fc6 (default), fc7 or pool5."),
    "sampling": typer.Option("--sampling", help="resnet50: tsn (default) or frames (every frame)."),
    "segments": typer.Option("--segments", help="TSN segments (default 8)."),
    "tsn_mode": typer.Option("--tsn-mode", help="TSN frame in each segment: center (default) or random."),
    "fps": typer.Option("--fps", help="Snippets: resample to this frame rate first (default 25)."),
    "snippet": typer.Option("--snippet", help="Snippet length in frames (default 16)."),
    "stride": typer.Option("--stride", help="Frames between snippet starts (default 16)."),
    "ten_crop": typer.Option("--ten-crop", help="Average features over ten crops (centre, corners, flipped)."),
    "flow": typer.Option(
        "--flow",
        help="Optical flow for the flow stream: tvl1 (OpenCV), tvl1-torch (the same TV-L1 in PyTorch, on --device: fast on a GPU), dis, or raft (needs torchvision).",
    ),
    "flow_quantize": typer.Option(
        "--flow-quantize", help="Round flow through uint8 as the classic pipelines stored it."
    ),
    "device": DEVICE,
    "workers": typer.Option("--workers", help="Decoding (and flow) worker processes; 0 decodes in the main process."),
    "batch_size": typer.Option("--batch-size", help="Frames (resnet50) or snippets (i3d, c3d) per forward pass."),
    "window": typer.Option("--window", help="Frames decoded at a time per video (bounds memory on long videos)."),
    "decoder": typer.Option("--decoder", help="auto (decord, then torchcodec, then PyAV), decord, pyav or torchcodec."),
    "precision": typer.Option(
        "--precision", help="fp32 (exact), bf16 (CPU/CUDA autocast) or fp16 (CUDA autocast); recorded in the spec."
    ),
    "threads": typer.Option(
        "--threads",
        help="torch threads of the model (default: all cores); features are bit-identical for equal threads and batch size.",
    ),
    "retry_failed": typer.Option("--retry-failed", help="Retry videos recorded as failed."),
    "allow_manifest_change": typer.Option(
        "--allow-manifest-change",
        help="Extract into a store made under another manifest: committed videos are kept as they are, and the change is recorded in the new part.",
    ),
    "redo_corrupt": typer.Option(
        "--redo-corrupt",
        help="Repair: extract again the videos `fsv store verify` finds damaged, into a new part that supersedes them.",
    ),
    "commit_every": typer.Option(
        "--commit-every", help="Seconds between commits of finished videos: the most a killed or requeued job loses."
    ),
    "shard_by": typer.Option(
        "--shard-by",
        help="How videos are split over shards: cost (balanced by expected frames, default) or stride (every N-th).",
    ),
}

# the scheduler options of every `fsv submit` verb, declared once: name -> (option, type, default);
# all but executor and wait are ClusterOptions fields (--time's default is the verb's)
SCHEDULER_OPTIONS = {
    "executor": (
        typer.Option("--executor", help="slurm (submitit job array), local (submitit processes) or dask."),
        str,
        "slurm",
    ),
    "folder": (
        typer.Option("--folder", help="Folder for job scripts and logs (one subfolder per job)."),
        Path,
        Path("fsv-jobs"),
    ),
    "partition": (
        typer.Option("--partition", help="SLURM partition (PBS / SGE queue with --dask-cluster)."),
        Optional[str],
        None,
    ),
    "time_min": (
        typer.Option("--time", help="Time limit per job, minutes; a job that reaches it is requeued and resumes."),
        int,
        None,
    ),
    "cpus_per_task": (typer.Option("--cpus", help="CPUs per job."), int, 4),
    "mem_gb": (typer.Option("--mem", help="Memory per job, GB."), int, 16),
    "gpus_per_node": (typer.Option("--gpus", help="GPUs per job (per node)."), int, 0),
    "array_parallelism": (typer.Option("--parallel", help="At most this many array tasks at once (SLURM)."), int, 64),
    "requeues": (
        typer.Option("--requeues", help="How often a job at its time limit is requeued to resume (SLURM)."),
        int,
        10,
    ),
    "dask_cluster": (
        typer.Option("--dask-cluster", help="dask executor: local (LocalCluster), slurm, pbs or sge (dask-jobqueue)."),
        str,
        "local",
    ),
    "dask_workers": (typer.Option("--dask-workers", help="dask workers (processes, or scheduler jobs)."), int, 2),
    "wait": (
        typer.Option(
            "--wait/--no-wait", help="Wait for the jobs and print their summary (--no-wait prints the SLURM job ids)."
        ),
        bool,
        True,
    ),
}


def with_options(
    options: dict[str, tuple[Any, Any, Any]],
    receives: tuple[str, ...],
    make: Callable[[dict[str, Any]], dict[str, Any]],
    passed: tuple[str, ...] = (),
):
    """Add ``options`` (name -> (typer option, type, default)) to a command, which receives
    ``make(values)`` (its parameters named in ``receives``) instead of them: shared options are
    declared once, for every command that takes them. The command's own parameters named in
    ``passed`` go to ``make`` too, and stay the command's."""

    def decorate(fn):
        sig = inspect.signature(fn, eval_str=True)
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in sig.parameters.values() if p.name not in receives
        ]
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, opt], default=default)
            for name, (opt, kind, default) in options.items()
        ]

        @functools.wraps(fn)
        def command(**kw):
            values = {name: kw.pop(name) for name in options} | {name: kw[name] for name in passed}
            return fn(**kw, **make(values))

        command.__signature__ = sig.replace(parameters=own + extra)
        command.__annotations__ = {p.name: p.annotation for p in command.__signature__.parameters.values()}
        return command

    return decorate


def extract_options(fn):
    """The command receives ``request: ExtractRequest`` built from :data:`EXTRACT_OPTIONS`."""
    types = typing.get_type_hints(ExtractRequest)
    defaults = {
        f.name: inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        for f in dataclasses.fields(ExtractRequest)
    }
    table = {name: (opt, types[name], defaults[name]) for name, opt in EXTRACT_OPTIONS.items()}
    return with_options(table, ("request",), lambda v: {"request": ExtractRequest(**v)})(fn)


def scheduler_options(*, time_min: int):
    """The command receives ``executor``, ``cluster: ClusterOptions`` and ``wait`` built from
    :data:`SCHEDULER_OPTIONS`, with ``--time`` defaulting to ``time_min`` minutes."""
    table = {**SCHEDULER_OPTIONS, "time_min": (*SCHEDULER_OPTIONS["time_min"][:2], time_min)}

    def make(v: dict[str, Any]) -> dict[str, Any]:
        from fsv.jobs.options import ClusterOptions

        executor, wait = v.pop("executor"), v.pop("wait")
        return {"executor": executor, "cluster": ClusterOptions(**v), "wait": wait}

    return with_options(table, ("executor", "cluster", "wait"), make)


BenchmarkOpt = Annotated[
    Optional[str],
    typer.Option(
        "--benchmark",
        help="cdcca and protomatch runs: score the imported fixed episodes (yang2020, or a file) instead of the run's test episodes.",
    ),
]

# the options of `fsv train-head` and `fsv submit train-head`, declared once: name -> (option, type
# as typed on the command line); all default to None ("not given") and become RunRequest fields
HEAD = typer.Argument(help="protonet | trx | strm | ta2n (recognition); cdcca | protomatch | vqknet (localization)")
TRAIN_OPTIONS = {
    "dataset": (DATASET, Optional[str]),
    "stores": (
        typer.Option("--store", help="Store folder(s), comma-separated to concatenate features."),
        Optional[str],
    ),
    "manifest": (MANIFEST, Optional[Path]),
    "way": (typer.Option("--way", help="Classes per episode (default 5)."), Optional[int]),
    "shot": (typer.Option("--shot", help="Support videos per class (default 5)."), Optional[int]),
    "episodes": (
        typer.Option("--episodes", help="Recognition heads: training episodes (default: the paper's)."),
        Optional[int],
    ),
    "steps": (
        typer.Option("--steps", help="Localization heads: optimiser steps (default: the paper's)."),
        Optional[int],
    ),
    "config": (typer.Option("--config", help="JSON file of preset overrides."), Optional[Path]),
    "sets": (
        typer.Option(
            "--set", help="Override a preset value: KEY=VALUE (JSON values), repeatable; head_args.NAME for the head."
        ),
        Optional[list[str]],
    ),
}


def train_options(fn):
    """The command receives ``request: RunRequest`` built from :data:`TRAIN_OPTIONS`, its ``head``
    argument and its ``--out`` folder."""
    table = {
        "head": (HEAD, str, inspect.Parameter.empty),
        **{name: (opt, kind, None) for name, (opt, kind) in TRAIN_OPTIONS.items()},
    }

    def make(v: dict[str, Any]) -> dict[str, Any]:
        from fsv.heads.setup import RunRequest, parse_stores  # imports torch: only when a command runs

        return {
            "request": RunRequest(
                run=v.pop("out_dir"), stores=parse_stores(v.pop("stores")), sets=tuple(v.pop("sets") or ()), **v
            )
        }

    return with_options(table, ("request",), make, passed=("out_dir",))(fn)
