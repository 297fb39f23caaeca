"""The ``fsv`` command line: thin Typer commands that parse options and delegate.

Exit codes: 0 success, 1 a job that failed, 2 bad usage or bad input (the message names it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from fsv import __version__
from fsv.errors import FsvError, FsvInputError, storage_error

app = typer.Typer(help="fsv: few-shot and weakly-supervised video action understanding.", no_args_is_help=True, pretty_exceptions_enable=False)
manifest_app = typer.Typer(help="Build, check and show dataset manifests.", no_args_is_help=True)
store_app = typer.Typer(help="Inspect, verify, import into and export from feature stores.", no_args_is_help=True)
score_app = typer.Typer(help="Score results files.", no_args_is_help=True)
submit_app = typer.Typer(help="Run jobs as cluster job arrays (submitit: slurm, local) or on dask.", no_args_is_help=True)
datasets_app = typer.Typer(help="Datasets by name: data roots, manifests and store folders.", no_args_is_help=True)
app.add_typer(manifest_app, name="manifest")
app.add_typer(store_app, name="store")
app.add_typer(datasets_app, name="datasets")
app.add_typer(submit_app, name="submit")
app.add_typer(score_app, name="score")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("fsv")


def _print_version(value: bool) -> None:
    if value:
        out.print(f"fsv {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, metavar="", help="More logging, repeatable (-v info, -vv debug).", show_default=False)] = 0,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)] = False,
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # progress lines (stderr not a terminal) are shown without -v
    logging.getLogger("fsv.progress").setLevel(min(level, logging.INFO))


def _load_manifest(spec: str, root: Path | None = None):
    """A manifest file, or a dataset name (configured manifest, else built from shipped files)."""
    from fsv.pipeline.manifests import load_manifest

    return load_manifest(spec, root)


# ------------------------------------------------------------------------------------ manifest
@manifest_app.command("build")
def manifest_build(
    dataset: Annotated[str, typer.Argument(help="thumos14 | activitynet12 | activitynet13 | ucf101_arn | hmdb51_arn | ssv2_otam | ssv2_cmn | kinetics100 | folder | csv")],
    out_file: Annotated[Path, typer.Option("--out", help="Manifest file to write (.csv or .jsonl).")],
    root: Annotated[Optional[Path], typer.Option("--root", help="Data root; paths are resolved against the files found there.")] = None,
    annotations: Annotated[Optional[Path], typer.Option("--annotations", help="Annotation file or folder (THUMOS14, ActivityNet, CSV).")] = None,
    splits: Annotated[Optional[Path], typer.Option("--splits", help="Folder of split lists replacing the shipped ones.")] = None,
    task: Annotated[Optional[str], typer.Option("--task", help="fewshot | localization | classification (generic builders).")] = None,
    probe: Annotated[bool, typer.Option("--probe", help="Fill fps/num_frames/duration from the files (needs --root).")] = False,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Probe threads.")] = None,
) -> None:
    """Build a dataset's manifest; every problem in the sources is reported at once."""
    from fsv.pipeline.manifests import build_manifest, probe_manifest

    manifest = build_manifest(dataset, root=root, annotations=annotations, splits=splits, task=task)
    problems = None
    if probe:
        if root is None:
            raise FsvInputError("--probe needs --root DIR")
        manifest, problems = probe_manifest(manifest, root, workers=workers)
    manifest.write(out_file)
    out.print(f"wrote {out_file}: {len(manifest)} videos, {len(manifest.classes)} classes, splits {manifest.splits}, sha256 {manifest.sha256[:12]}")
    if problems:
        err.print(f"[yellow]{len(problems)} file(s) could not be probed:[/]")
        err.print(problems.format(limit=50), markup=False, highlight=False)


@manifest_app.command("check")
def manifest_check(
    manifest: Annotated[str, typer.Argument(help="Manifest file or dataset name.")],
    root: Annotated[Optional[Path], typer.Option("--root", help="Data root: also check every file exists and is readable.")] = None,
    probe: Annotated[bool, typer.Option("--probe", help="Also open every file as a video.")] = False,
) -> None:
    """Report every problem of a manifest with its line; exit 2 when there is any."""
    from fsv.pipeline.manifests import Manifest, ProblemList, check_manifest

    problems = ProblemList()  # rows that do not parse are reported with the problems of the rows that do
    if Path(manifest).is_file():
        m = Manifest.read(manifest, problems)
    else:
        m = _load_manifest(manifest, root)
        if root is None:
            from fsv.config import locate

            root = locate(m.dataset).root
    problems.extend(check_manifest(m, root, probe=probe))
    if problems:
        err.print(problems.format(), markup=False, highlight=False)
        err.print(f"{len(problems)} problem(s) in {m.path or m.dataset}", style="red", markup=False)
        raise typer.Exit(2)
    out.print(f"{m.path or m.dataset}: {len(m)} videos, no problems")


@manifest_app.command("show")
def manifest_show(
    manifest: Annotated[str, typer.Argument(help="Manifest file or dataset name.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Summarise a manifest: videos and classes per split, known metadata, content hash."""
    m = _load_manifest(manifest)
    splits = {}
    for s in m.splits:
        rows = m.select(s)
        splits[s] = {
            "videos": len(rows),
            "classes": len({lab for r in rows for lab in r.labels}),
            "segments": sum(len(r.segments) for r in rows),
            "with_duration": sum(r.duration is not None for r in rows),
            "with_fps": sum(r.fps is not None for r in rows),
        }
    summary = {"dataset": m.dataset, "task": m.task, "path": str(m.path) if m.path else None, "videos": len(m), "classes": len(m.classes), "sha256": m.sha256, "splits": splits}
    if as_json:
        out.print_json(json.dumps(summary))
        return
    table = Table(title=f"{m.dataset} ({m.task}), {len(m)} videos, {len(m.classes)} classes, sha256 {m.sha256[:12]}")
    for col in ("split", "videos", "classes", "segments", "with duration", "with fps"):
        table.add_column(col, justify="right")
    for s, d in splits.items():
        table.add_row(s, *(str(v) for v in d.values()))
    out.print(table)


# --------------------------------------------------------------------------------------- store
@store_app.command("info")
def store_info(
    store: Annotated[Path, typer.Argument(help="Store folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    failed: Annotated[bool, typer.Option("--failed", help="List failed videos with their reasons.")] = False,
) -> None:
    """Spec, key, manifest hash, counts, parts, files and size of a store."""
    from fsv.pipeline.store import FeatureStore

    s = FeatureStore.open(store)
    info = s.info()
    if failed or as_json:
        info["failures"] = {v: e.error for v, e in s.failures.items()}
    if as_json:
        out.print_json(json.dumps(info))
        return
    table = Table(show_header=False, title=str(store))
    for key in ("dataset", "spec_name", "spec_key", "manifest_sha256", "fsv_version", "created", "videos", "failed", "steps", "parts", "files", "bytes_on_disk"):
        table.add_row(key, str(info[key]))
    for name, f in s.spec.fields.items():
        table.add_row(f"field {name}", f"{tuple(f.shape)} {f.dtype}")
    out.print(table)
    if failed:
        for vid, why in info["failures"].items():
            out.print(f"{vid}: {why}", markup=False, highlight=False)


@store_app.command("verify")
def store_verify(store: Annotated[Path, typer.Argument(help="Store folder.")]) -> None:
    """Check every committed video's rows against its checksum; exit 1 on corruption."""
    from fsv.pipeline.store import FeatureStore
    from fsv.pipeline.store.verify import verify_store

    report = verify_store(FeatureStore.open(store))
    for note in report.notes:
        err.print(f"note: {note}", style="yellow", markup=False, highlight=False)
    for problem in report.problems:
        err.print(f"corrupt: {problem}", style="red", markup=False, highlight=False)
    if not report.ok:
        err.print(f"{len(report.problems)} problem(s) in {store} ({report.checked} videos checked)", style="red", markup=False)
        raise typer.Exit(1)
    dup = f" ({report.commits - report.checked} duplicate commit(s))" if report.commits > report.checked else ""
    out.print(f"{store}: {report.checked} videos checked{dup}, all intact")


@store_app.command("import")
def store_import(
    source: Annotated[Path, typer.Argument(help="Folder of .npy/.npz files or an .h5 file.")],
    store: Annotated[Path, typer.Option("--store", help="Store folder (created when absent).")],
    manifest: Annotated[str, typer.Option("--manifest", help="Manifest file or dataset name.")],
    spec: Annotated[str, typer.Option("--spec", help="Feature spec preset name or spec .json file.")],
    concat: Annotated[Optional[str], typer.Option("--concat", help="Join these arrays on the last axis, e.g. rgb,flow.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Re-import videos already in the store.")] = False,
) -> None:
    """Bring existing per-video features into a store under a given spec."""
    from fsv.pipeline.spec_presets import get_spec
    from fsv.pipeline.store import FeatureStore
    from fsv.pipeline.store.transfer import import_features

    m = _load_manifest(manifest)
    s = FeatureStore.create(store, get_spec(spec), manifest_sha256=m.sha256, dataset=m.dataset)
    report = import_features(source, s, m, concat=concat.split(",") if concat else None, overwrite=overwrite)
    out.print(
        f"imported {report.imported} videos into {store} (skipped {report.skipped_existing} already there, "
        f"{len(report.failed)} unreadable, {len(report.not_in_manifest)} not in the manifest); "
        f"{len(report.missing)} manifest videos have no features"
    )


@store_app.command("export")
def store_export(
    store: Annotated[Path, typer.Argument(help="Store folder.")],
    h5: Annotated[Path, typer.Option("--h5", help="HDF5 file to write.")],
) -> None:
    """Write a store to HDF5: one dataset per video id, timestamps as attributes."""
    from fsv.pipeline.store import FeatureStore
    from fsv.pipeline.store.transfer import export_h5

    n = export_h5(FeatureStore.open(store), h5)
    out.print(f"wrote {n} videos to {h5}")


# ------------------------------------------------------------------------------------- extract
BackboneOpt = Annotated[str, typer.Option("--backbone", help="resnet50 | i3d | c3d.")]
DatasetOpt = Annotated[Optional[str], typer.Option("--dataset", help="Dataset name (see `fsv datasets list`).")]
ManifestOpt = Annotated[Optional[Path], typer.Option("--manifest", help="Manifest file (with --root and --store).")]
RootOpt = Annotated[Optional[Path], typer.Option("--root", help="Data root of the manifest's paths.")]
StoreOpt = Annotated[Optional[Path], typer.Option("--store", help="Store folder (default: the dataset's store for this spec).")]
StreamsOpt = Annotated[str, typer.Option("--streams", help="i3d: rgb, flow or rgb,flow (concatenated rgb then flow).")]
WeightsOpt = Annotated[Optional[str], typer.Option("--weights", help="Checkpoint of the (RGB) model, or 'random' (recorded in the spec). Default: the weights cache.")]
FlowWeightsOpt = Annotated[Optional[str], typer.Option("--flow-weights", help="Checkpoint of the I3D flow model, or 'random'. Default: as --weights random, else the cache.")]
LayerOpt = Annotated[Optional[str], typer.Option("--layer", help="c3d: fc6 (default), fc7 or pool5.")]
SamplingOpt = Annotated[Optional[str], typer.Option("--sampling", help="resnet50: tsn (default) or frames (every frame).")]
SegmentsOpt = Annotated[Optional[int], typer.Option("--segments", help="TSN segments (default 8).")]
TsnModeOpt = Annotated[Optional[str], typer.Option("--tsn-mode", help="TSN frame in each segment: center (default) or random.")]
FpsOpt = Annotated[Optional[float], typer.Option("--fps", help="Snippets: resample to this frame rate first (default 25).")]
SnippetOpt = Annotated[Optional[int], typer.Option("--snippet", help="Snippet length in frames (default 16).")]
StrideOpt = Annotated[Optional[int], typer.Option("--stride", help="Frames between snippet starts (default 16).")]
TenCropOpt = Annotated[bool, typer.Option("--ten-crop", help="Average features over ten crops (centre, corners, flipped).")]
FlowOpt = Annotated[str, typer.Option("--flow", help="Optical flow for the flow stream: tvl1, dis or raft (needs torchvision).")]
QuantizeOpt = Annotated[bool, typer.Option("--flow-quantize", help="Round flow through uint8 as the classic pipelines stored it.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu, cuda or cuda:N.")]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Decoding (and flow) worker processes; 0 decodes in the main process.")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Frames (resnet50) or snippets (i3d, c3d) per forward pass.")]
WindowOpt = Annotated[int, typer.Option("--window", help="Frames decoded at a time per video (bounds memory on long videos).")]
DecoderOpt = Annotated[str, typer.Option("--decoder", help="auto (decord, then torchcodec, then PyAV), decord, pyav or torchcodec.")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="fp32 (exact), bf16 (CPU/CUDA autocast) or fp16 (CUDA autocast); recorded in the spec.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="torch threads of the model (default: all cores); features are bit-identical for equal threads and batch size.")]
RetryOpt = Annotated[bool, typer.Option("--retry-failed", help="Retry videos recorded as failed.")]
CommitOpt = Annotated[float, typer.Option("--commit-every", help="Seconds between commits of finished videos: the most a killed or requeued job loses.")]
RedoCorruptOpt = Annotated[bool, typer.Option("--redo-corrupt", help="Repair: extract again the videos `fsv store verify` finds damaged, into a new part that supersedes them.")]
AllowChangeOpt = Annotated[bool, typer.Option("--allow-manifest-change", help="Extract into a store made under another manifest: committed videos are kept as they are, and the change is recorded in the new part.")]
ShardByOpt = Annotated[str, typer.Option("--shard-by", help="How videos are split over shards: cost (balanced by expected frames, default) or stride (every N-th).")]


def _scheduler_options(*, time_min: int):
    """Give a ``fsv submit`` verb the scheduler options every verb shares; the command receives
    them as ``cluster: ClusterOptions`` and ``wait: bool`` (declared once here, not per verb)."""
    import functools
    import inspect

    shared = {
        "executor": (Annotated[str, typer.Option("--executor", help="slurm (submitit job array), local (submitit processes) or dask.")], "slurm"),
        "folder": (Annotated[Path, typer.Option("--folder", help="Folder for job scripts and logs (one subfolder per job).")], Path("fsv-jobs")),
        "partition": (Annotated[Optional[str], typer.Option("--partition", help="SLURM partition (PBS / SGE queue with --dask-cluster).")], None),
        "time_min": (Annotated[int, typer.Option("--time", help="Time limit per job, minutes; a job that reaches it is requeued and resumes.")], time_min),
        "cpus": (Annotated[int, typer.Option("--cpus", help="CPUs per job.")], 4),
        "mem_gb": (Annotated[int, typer.Option("--mem", help="Memory per job, GB.")], 16),
        "gpus": (Annotated[int, typer.Option("--gpus", help="GPUs per job (per node).")], 0),
        "parallel": (Annotated[int, typer.Option("--parallel", help="At most this many array tasks at once (SLURM).")], 64),
        "requeues": (Annotated[int, typer.Option("--requeues", help="How often a job at its time limit is requeued to resume (SLURM).")], 10),
        "dask_cluster": (Annotated[str, typer.Option("--dask-cluster", help="dask executor: local (LocalCluster), slurm, pbs or sge (dask-jobqueue).")], "local"),
        "dask_workers": (Annotated[int, typer.Option("--dask-workers", help="dask workers (processes, or scheduler jobs).")], 2),
        "wait": (Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the jobs and print their summary (--no-wait prints the SLURM job ids).")], True),
    }

    def decorate(fn):
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name not in ("cluster", "executor", "wait")]
        extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=ann, default=default) for name, (ann, default) in shared.items()]

        @functools.wraps(fn)
        def command(**kw):
            from fsv.jobs.options import ClusterOptions

            opts = {name: kw.pop(name) for name in shared}
            cluster = ClusterOptions(
                folder=opts["folder"], partition=opts["partition"], time_min=opts["time_min"], cpus_per_task=opts["cpus"], gpus_per_node=opts["gpus"],
                mem_gb=opts["mem_gb"], array_parallelism=opts["parallel"], dask_cluster=opts["dask_cluster"], dask_workers=opts["dask_workers"],
                requeues=opts["requeues"],
            )
            return fn(**kw, executor=opts["executor"], cluster=cluster, wait=opts["wait"])

        command.__signature__ = sig.replace(parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + extra)
        command.__annotations__ = {p.name: p.annotation for p in command.__signature__.parameters.values()}
        return command

    return decorate


def _extract_job(
    *, backbone, dataset, manifest, root, store, streams, weights, flow_weights, layer, sampling, segments, tsn_mode,
    fps, snippet, stride, ten_crop, flow, flow_quantize, device, workers, batch_size, window, decoder, precision, retry_failed, threads=None, shard=None,
    shard_by="cost", commit_every=10.0, allow_manifest_change=False, redo_corrupt=False,
):
    """The extraction job the options describe (weights resolved and hashed, store located)."""
    from fsv.config import locate
    from fsv.pipeline.cluster import ExtractJob
    from fsv.pipeline.extract import RunOptions, parse_shard
    from fsv.pipeline.backbones import backbone_card, resolve_weights
    from fsv.pipeline.plan import make_config

    if dataset is not None:
        root = root or locate(dataset).root
        if root is None:
            raise FsvInputError(f"no data root for {dataset}: run `fsv datasets set {dataset} --root DIR` or pass --root")
        source = dataset
    elif manifest is not None and root is not None and store is not None:
        source = str(manifest)
    else:
        raise FsvInputError("give --dataset NAME, or --manifest FILE --root DIR --store DIR")
    card = backbone_card(backbone)
    stream_list = tuple(s.strip() for s in streams.split(",") if s.strip())
    refs = {}
    for s in stream_list:
        network = card.networks.get(s)
        if network is None:
            continue
        given = weights if s == "rgb" else (flow_weights or ("random" if weights == "random" else None))
        refs[s] = resolve_weights(network, given, option="--weights" if s == "rgb" else "--flow-weights")
    samp = {"kind": "frames" if sampling == "frames" else None, "num_segments": segments, "mode": tsn_mode, "fps": fps, "snippet": snippet, "stride": stride}
    if sampling not in (None, "frames", "tsn", "snippets"):
        raise FsvInputError(f"--sampling must be tsn, frames or snippets, got {sampling!r}")
    config = make_config(
        backbone, streams=stream_list, weights=refs, sampling={k: v for k, v in samp.items() if v is not None} or None,
        ten_crop=ten_crop, flow={"method": flow, "quantize": flow_quantize}, layer=layer, precision=precision,
    )
    if store is None:
        spec = config.spec()
        store = locate(dataset).store_path(spec.name, spec.key)
    options = RunOptions(
        device=device, workers=workers, batch_size=batch_size, window_frames=window, decoder=decoder,
        retry_failed=retry_failed, threads=threads, shard=parse_shard(shard) if shard else None, shard_by=shard_by,
        commit_interval_s=commit_every, allow_manifest_change=allow_manifest_change, redo_corrupt=redo_corrupt,
    )
    return ExtractJob(source, Path(root), Path(store), config, options)


def _print_summary(title: str, summary, strict: bool) -> None:
    table = Table(title=title)
    for col in ("written", "skipped (done before)", "failed", "feature steps", "frames decoded", "videos/s", "frames/s"):
        table.add_column(col, justify="right")
    secs = summary.seconds or float("nan")
    table.add_row(
        str(summary.written), str(summary.skipped), str(len(summary.failed)), str(summary.steps), str(summary.frames),
        f"{summary.written / secs:.2f}" if summary.seconds else "-", f"{summary.frames / secs:.1f}" if summary.seconds else "-",
    )
    out.print(table)
    for vid, why in summary.failed.items():
        err.print(f"failed {vid}: {why}", markup=False, highlight=False)
    if summary.failed:
        err.print(f"{len(summary.failed)} video(s) failed; fix them and re-run with --retry-failed", markup=False)
    if strict and summary.failed:
        raise typer.Exit(1)


@app.command("extract")
def extract_cmd(
    backbone: BackboneOpt,
    dataset: DatasetOpt = None,
    manifest: ManifestOpt = None,
    root: RootOpt = None,
    store: StoreOpt = None,
    streams: StreamsOpt = "rgb",
    weights: WeightsOpt = None,
    flow_weights: FlowWeightsOpt = None,
    layer: LayerOpt = None,
    sampling: SamplingOpt = None,
    segments: SegmentsOpt = None,
    tsn_mode: TsnModeOpt = None,
    fps: FpsOpt = None,
    snippet: SnippetOpt = None,
    stride: StrideOpt = None,
    ten_crop: TenCropOpt = False,
    flow: FlowOpt = "tvl1",
    flow_quantize: QuantizeOpt = False,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 1,
    batch_size: BatchOpt = None,
    window: WindowOpt = 256,
    decoder: DecoderOpt = "auto",
    precision: PrecisionOpt = "fp32",
    threads: ThreadsOpt = None,
    retry_failed: RetryOpt = False,
    allow_manifest_change: AllowChangeOpt = False,
    redo_corrupt: RedoCorruptOpt = False,
    commit_every: CommitOpt = 10.0,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Process part I of N of the manifest (I/N, 0-based) into its own store part.")] = None,
    shard_by: ShardByOpt = "cost",
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any video failed.")] = False,
) -> None:
    """Extract features of a dataset's videos into its feature store (resumable, shardable)."""
    kw = {k: v for k, v in locals().items() if k != "strict"}
    job = _extract_job(**kw)
    from fsv.pipeline.cluster import run_job

    summary = run_job(job)
    _print_summary(f"extract {job.config.spec().name} -> {job.store}" + (f" (shard {shard})" if shard else ""), summary, strict)


@submit_app.command("extract")
@_scheduler_options(time_min=240)
def submit_extract_cmd(
    backbone: BackboneOpt,
    shards: Annotated[int, typer.Option("--shards", help="Number of shards (array tasks).")],
    dataset: DatasetOpt = None,
    manifest: ManifestOpt = None,
    root: RootOpt = None,
    store: StoreOpt = None,
    streams: StreamsOpt = "rgb",
    weights: WeightsOpt = None,
    flow_weights: FlowWeightsOpt = None,
    layer: LayerOpt = None,
    sampling: SamplingOpt = None,
    segments: SegmentsOpt = None,
    tsn_mode: TsnModeOpt = None,
    fps: FpsOpt = None,
    snippet: SnippetOpt = None,
    stride: StrideOpt = None,
    ten_crop: TenCropOpt = False,
    flow: FlowOpt = "tvl1",
    flow_quantize: QuantizeOpt = False,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 1,
    batch_size: BatchOpt = None,
    window: WindowOpt = 256,
    decoder: DecoderOpt = "auto",
    precision: PrecisionOpt = "fp32",
    threads: ThreadsOpt = None,
    retry_failed: RetryOpt = False,
    allow_manifest_change: AllowChangeOpt = False,
    redo_corrupt: RedoCorruptOpt = False,
    commit_every: CommitOpt = 10.0,
    shard_by: ShardByOpt = "cost",
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any video failed.")] = False,
    *,
    executor: str,
    cluster,
    wait: bool,
) -> None:
    """Submit an extraction as N shards (SLURM job array, local processes or dask); all land in one store."""
    job = _extract_job(**{k: v for k, v in locals().items() if k not in ("shards", "strict", "executor", "cluster", "wait")})
    from fsv.pipeline.cluster import submit_extract

    result = submit_extract(job, shards, executor, cluster, wait=wait)
    if not wait:
        out.print(f"submitted {len(result)} shard(s): {', '.join(map(str, result))}; logs in {cluster.folder}")
        return
    _print_summary(f"extract {job.config.spec().name} -> {job.store} ({shards} shards on {executor})", result, strict)


# ----------------------------------------------------------------------------------- stage two
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a preset value: KEY=VALUE (JSON values), repeatable; head_args.NAME for the head.")]


def _run_request(head: str, dataset, store, manifest, run: Path):
    from fsv.run_setup import RunRequest

    return RunRequest(head, run, dataset, manifest, tuple(Path(p) for p in (store or "").split(",") if p))


@app.command("train-head")
def train_head_cmd(
    head: Annotated[str, typer.Argument(help="protonet | trx | strm | ta2n (recognition); cdcca | vqknet (localization)")],
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder (resumed when it exists).")],
    dataset: DatasetOpt = None,
    store: Annotated[Optional[str], typer.Option("--store", help="Store folder(s), comma-separated to concatenate features.")] = None,
    manifest: ManifestOpt = None,
    way: Annotated[Optional[int], typer.Option("--way", help="Classes per episode (default 5).")] = None,
    shot: Annotated[Optional[int], typer.Option("--shot", help="Support videos per class (default 5).")] = None,
    episodes: Annotated[Optional[int], typer.Option("--episodes", help="Training episodes, or steps for localization heads (default: the paper's).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of training episodes and initialisation.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="JSON file of preset overrides.")] = None,
    sets: SetOpt = None,
    device: DeviceOpt = "auto",
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved configuration as JSON, with where each value came from, and exit.")] = False,
) -> None:
    """Train a head on cached features (the paper's preset; resumable; val-only model selection).

    Presets resolve as: the head's paper preset, its preset for the manifest's dataset, --config,
    then --set and the named options. Recognition heads (protonet, trx, strm, ta2n) train on
    episodes and select on validation accuracy; localization heads (cdcca, vqknet) select on
    validation mAP."""
    from fsv.presets import explain
    from fsv.run_setup import option_layers, plan_run

    given = option_layers(head, config, sets, way=way, shot=shot, episodes=episodes, seed=seed)
    cfg, resolved, source = plan_run(_run_request(head, dataset, store, manifest, out_dir), given, data=not print_config)
    if print_config:
        out.print_json(json.dumps(explain(cfg, resolved)))
        return
    out.print(cfg.run_training(source, out_dir, device=device).summary(head))


@submit_app.command("train-head")
@_scheduler_options(time_min=720)
def submit_train_head_cmd(
    head: Annotated[str, typer.Argument(help="protonet | trx | strm | ta2n | cdcca | vqknet")],
    out_dir: Annotated[Path, typer.Option("--out", help="Sweep folder; seed k trains into OUT/seed<k>.")],
    seeds: Annotated[int, typer.Option("--seeds", help="Number of seeds (0..N-1).")] = 3,
    dataset: DatasetOpt = None,
    store: Annotated[Optional[str], typer.Option("--store", help="Store folder(s), comma-separated.")] = None,
    manifest: ManifestOpt = None,
    way: Annotated[Optional[int], typer.Option("--way")] = None,
    shot: Annotated[Optional[int], typer.Option("--shot")] = None,
    episodes: Annotated[Optional[int], typer.Option("--episodes")] = None,
    config: Annotated[Optional[Path], typer.Option("--config")] = None,
    sets: SetOpt = None,
    device: DeviceOpt = "auto",
    *,
    executor: str,
    cluster,
    wait: bool,
) -> None:
    """Train a head with several seeds as a job array; then `fsv eval OUT` reports mean ± std."""
    from fsv.run_setup import option_layers, plan_run
    from fsv.sweep import TrainJob, submit_train

    if seeds < 1:
        raise FsvInputError(f"--seeds must be >= 1, got {seeds}")
    jobs = []
    for k in range(seeds):
        run = out_dir / f"seed{k}"
        given = option_layers(head, config, sets, way=way, shot=shot, episodes=episodes, seed=k)
        cfg, _, source = plan_run(_run_request(head, dataset, store, manifest, run), given)
        jobs.append(TrainJob(cfg, source, run, device))
    results = submit_train(jobs, executor, cluster, wait=wait)
    if not wait:
        out.print(f"submitted {len(results)} seed(s): {', '.join(map(str, results))}; logs in {cluster.folder}; then: fsv eval {out_dir}")
        return
    for r in results:
        out.print(f"{r.run}: best validation score {r.best_val:.4f} at step {r.best_episode}")


BenchmarkOpt = Annotated[Optional[str], typer.Option("--benchmark", help="cdcca runs: score the imported fixed episodes (yang2020, or a file) instead of the run's test episodes.")]


def _print_map_table(run: Path, payload: dict) -> None:
    seeds = payload.get("seeds")
    what = f"{payload['episodes']} episodes, {payload['shots']}-shot {payload['mode']}-instance" if payload["task"] == "common" else f"{payload['videos']} videos"
    table = Table(title=f"fsv eval {run}: {payload['head']} on {payload['dataset']} {payload['split']} ({what}), mAP %" + (f", mean of {seeds} seeds" if seeds else ""))
    columns = [(payload["head"], payload)]
    if "without_query_supports" in payload:
        columns.append((f"without query-video supports ({payload['without_query_supports']['episodes']})", payload["without_query_supports"]))
    if not seeds:
        columns.append(("random proposals", payload["random_proposals"]))
    table.add_column("tIoU")
    for name, _ in columns:
        table.add_column(name, justify="right")
    for t in payload["map"]:
        table.add_row(t, *[f"{c['map'][t] * 100:.2f}" for _, c in columns])
    for name in payload["averages"]:
        if name != next(iter(payload["map"])):
            table.add_row(f"average {name}", *[f"{c['averages'][name] * 100:.2f}" for _, c in columns])
    out.print(table)


@app.command("predict")
def predict_cmd(
    run: Annotated[Path, typer.Argument(help="Localization run folder (cdcca or vqknet).")],
    out_file: Annotated[Path, typer.Option("--out", help="Results file to write (ActivityNet results JSON).")],
    split: Annotated[str, typer.Option("--split", help="test or val.")] = "test",
    benchmark: BenchmarkOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Write the detections of a localization run's best model in the ActivityNet results format.

    Common-localization runs key detections by episode and also write the episodes' ground truth
    beside them (OUT with .gt.json), so any ActivityNet-style tool can score the pair."""
    from fsv.localization.trainer import ground_truth_json, predict_run, results_json

    scored, cfg, _ = predict_run(run, split=split, benchmark=benchmark, device=device)
    _write_json(out_file, results_json(scored, cfg))
    msg = f"{sum(len(v) for v in scored.predictions.values())} detections of {len(scored.predictions)} {'episodes' if cfg.task == 'common' else 'videos'} -> {out_file}"
    if cfg.task == "common":
        gt_file = out_file.with_name(out_file.name.removesuffix(".json") + ".gt.json")
        _write_json(gt_file, ground_truth_json(scored))
        msg += f"; ground truth -> {gt_file}"
    out.print(msg)


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)


@app.command("eval")
def eval_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder (or a seed sweep folder).")],
    split: Annotated[str, typer.Option("--split", help="test or val.")] = "test",
    episodes: Annotated[Optional[int], typer.Option("--episodes", help="Fixed episodes to score (default 10000).")] = None,
    benchmark: BenchmarkOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Score a run on its test split: recognition runs give mean accuracy ± 95% CI over the fixed test
    episodes, localization runs their mAP table (seed sweeps: mean ± std over seeds)."""
    from fsv.evaluation import evaluate_folder

    payload = evaluate_folder(run, split=split, episodes=episodes, benchmark=benchmark, device=device)
    if as_json:
        typer.echo(json.dumps(payload))
    elif "map" in payload:
        _print_map_table(run, payload)
    else:
        table = Table(title=f"fsv eval {run} ({split})")
        for col in ("head", "dataset", "way", "shot", "episodes", "accuracy"):
            table.add_column(col)
        seeds = payload.get("seeds")
        spread = f"{payload['std'] * 100:.2f} (std over {seeds} seeds)" if seeds else f"{payload['ci95'] * 100:.2f} (95% CI)"
        table.add_row(payload["head"], payload["dataset"], str(payload["way"]), str(payload["shot"]), str(payload["episodes"]), f"{payload['accuracy'] * 100:.2f} ± {spread}")
        out.print(table)


@score_app.command("detections")
def score_detections_cmd(
    gt: Annotated[Path, typer.Option("--gt", help="Ground truth, ActivityNet format ({\"database\": ...}).")],
    pred: Annotated[Path, typer.Option("--pred", help="Results, ActivityNet format ({\"results\": ...}).")],
    subset: Annotated[Optional[str], typer.Option("--subset", help="Score only ground-truth videos of this subset (e.g. validation, test).")] = None,
    tiou: Annotated[str, typer.Option("--tiou", help="tIoU thresholds: START:STOP:STEP or a list.")] = "0.5:0.95:0.05",
    ambiguous: Annotated[bool, typer.Option("--ambiguous/--no-ambiguous", help="Ignore the detections THUMOS14's protocol ignores on the ground truth's per-video \"ambiguous\" segments (when the file lists them).")] = True,
    ambiguous_rule: Annotated[str, typer.Option("--ambiguous-rule", help="thumos14: false positives overlapping an ambiguous segment are ignored (official TH14evalDet); wtalc: every overlapping detection is dropped before matching (W-TALC / CO2-Net).")] = "thumos14",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """mAP at tIoU thresholds of any ActivityNet-format results file, computed as the official
    ActivityNet detection evaluation does (interpolated AP, greedy matching by score)."""
    from fsv.detections import parse_tiou, score_files

    result = score_files(gt, pred, parse_tiou(tiou), subset, ambiguous=ambiguous, ambiguous_rule=ambiguous_rule)
    if as_json:
        typer.echo(json.dumps({"map": result["map"], "average_map": result["average_map"]}))
        return
    table = Table(title=f"mAP of {pred} against {gt}")
    for t in result["map"]:
        table.add_column(f"@{t}", justify="right")
    table.add_column("average", justify="right")
    table.add_row(*[f"{v * 100:.2f}" for v in result["map"].values()], f"{result['average_map'] * 100:.2f}")
    out.print(table)


@app.command("demo")
def demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the demo's videos, manifest and store.")] = Path("fsv-demo"),
    per_class: Annotated[int, typer.Option("--per-class", help="Videos per class (at least 3).")] = 4,
    weights: Annotated[Optional[str], typer.Option("--weights", help="ResNet-50 checkpoint (default: cache, else random).")] = None,
) -> None:
    """Generate a few-shot video set, extract ResNet-50 features, train and score ProtoNet and TRX."""
    from fsv.demo import DEMO_EPISODES, run_demo

    r = run_demo(out_dir, per_class=per_class, weights=weights)
    info = r.store.info()
    table = Table(title=f"fsv demo ({r.seconds:.0f} s) -> {out_dir}")
    table.add_column("step")
    table.add_column("result")
    table.add_row("manifest", f"{out_dir / 'manifest.csv'}: {len(r.manifest)} videos, {len(r.manifest.classes)} classes, splits {r.manifest.splits}")
    table.add_row("weights", str(r.store.spec.weights))
    table.add_row("extract", f"{r.extract.written} written, {r.extract.skipped} already done, {len(r.extract.failed)} failed, {r.extract.frames} frames")
    field, fspec = next(iter(r.store.spec.fields.items()))
    table.add_row("store", f"{info['path']}: {info['videos']} videos x 8 x {fspec.shape} {fspec.dtype}, {info['files']} files, {info['bytes_on_disk'] / 1e6:.1f} MB, spec key {info['spec_key']}")
    table.add_row("verify", f"{r.verify.checked} videos checked, {'all intact' if r.verify.ok else r.verify.problems}")
    out.print(table)
    results = Table(title=f"few-shot results: {r.results[0].way}-way {r.results[0].shot}-shot, {r.results[0].episodes} fixed test episodes")
    for col in ("head", "training", "test accuracy (95% CI)"):
        results.add_column(col)
    for e in r.results:
        training = "none (no parameters)" if e.head == "protonet" else f"{DEMO_EPISODES} episodes (demo settings)"
        results.add_row(e.head, training, f"{e.accuracy * 100:.1f} ± {e.ci95 * 100:.1f} %")
    out.print(results)
    if not r.verify.ok or r.extract.failed:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------ datasets
@datasets_app.command("list")
def datasets_list() -> None:
    """Every known dataset with its resolved root, manifest and store folder."""
    from fsv.config import config_path, configured_names, locate
    from fsv.pipeline.manifests import dataset_names

    table = Table(title=f"datasets (config: {config_path()})")
    for col in ("name", "root", "manifest", "stores"):
        table.add_column(col)
    builtin = dataset_names()
    for name in builtin + [n for n in configured_names() if n not in builtin]:
        loc = locate(name)
        default = "(built from shipped files)" if name in builtin else "-"
        table.add_row(name, str(loc.root or "-"), str(loc.manifest or default), str(loc.stores))
    out.print(table)


@datasets_app.command("set")
def datasets_set(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. thumos14.")],
    root: Annotated[Optional[Path], typer.Option("--root", help="Data root.")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Manifest file.")] = None,
    stores: Annotated[Optional[Path], typer.Option("--stores", help="Folder for this dataset's feature stores.")] = None,
) -> None:
    """Record where a dataset lives, so commands accept ``--dataset NAME`` alone (a name of your
    own needs ``--manifest``)."""
    from fsv.config import locate, set_dataset
    from fsv.pipeline.manifests import canonical_name, dataset_names

    if canonical_name(name) not in dataset_names() and manifest is None and locate(name).manifest is None:
        raise FsvInputError(f"{name!r} is not a built-in dataset ({', '.join(dataset_names())}): give its --manifest FILE too")

    path = set_dataset(name, root=str(root) if root else None, manifest=str(manifest) if manifest else None, stores=str(stores) if stores else None)
    out.print(f"updated {path}")


def main() -> None:
    """Console entry point: Typer handles usage errors (exit 2); fsv errors become a one-line
    message and their exit code."""
    try:
        try:
            app()
        except OSError as e:
            if e.filename is None:
                raise
            raise storage_error(e, "fsv") from None  # a file fsv could not read or write: one line naming it
    except FsvError as e:
        err.print("error:", style="bold red", end=" ")
        err.print(str(e), markup=False, highlight=False)
        raise SystemExit(e.exit_code) from None
