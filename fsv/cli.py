"""The ``fsv`` command line: thin Typer commands that parse options and delegate.

Exit codes: 0 success, 1 a job that failed, 2 bad usage or bad input (the message names it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from fsv import __version__, tables
from fsv.errors import FsvError, FsvInputError, storage_error
from fsv.cli_options import BenchmarkOpt, DeviceOpt, StrictOpt, extract_options, scheduler_options, train_options
from fsv.pipeline.extract_setup import ExtractRequest

app = typer.Typer(
    help="fsv: few-shot and weakly-supervised video action understanding.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
manifest_app = typer.Typer(help="Build, check and show dataset manifests.", no_args_is_help=True)
store_app = typer.Typer(help="Inspect, verify, import into and export from feature stores.", no_args_is_help=True)
score_app = typer.Typer(help="Score results files.", no_args_is_help=True)
submit_app = typer.Typer(
    help="Run jobs as cluster job arrays (submitit: slurm, local) or on dask.", no_args_is_help=True
)
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
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            metavar="",
            help="More logging, repeatable (-v info, -vv debug).",
            show_default=False,
        ),
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # progress lines (stderr not a terminal) are shown without -v
    logging.getLogger("fsv.progress").setLevel(min(level, logging.INFO))


def _load_manifest(spec: str, root: Path | None = None):
    """A manifest file, or a dataset name (configured manifest, else built from shipped files)."""
    from fsv.pipeline.manifests import load_manifest

    return load_manifest(spec, root)


def _run_folder(text: str) -> Path:
    """A run folder, or a head's name for its most recent run (said on stderr)."""
    from fsv.heads.setup import resolve_run

    run, line = resolve_run(text)
    if line:
        err.print(line, markup=False, highlight=False)
    return run


# ------------------------------------------------------------------------------------ manifest
@manifest_app.command("build")
def manifest_build(
    dataset: Annotated[
        str,
        typer.Argument(
            help="thumos14 | activitynet12 | activitynet13 | ucf101_arn | hmdb51_arn | ssv2_otam | ssv2_cmn | kinetics100 | folder | csv, or a feature format with annotations: wtalc | actionformer"
        ),
    ],
    out_file: Annotated[Path, typer.Option("--out", help="Manifest file to write (.csv or .jsonl).")],
    root: Annotated[
        Optional[Path], typer.Option("--root", help="Data root; paths are resolved against the files found there.")
    ] = None,
    annotations: Annotated[
        Optional[Path], typer.Option("--annotations", help="Annotation file or folder (THUMOS14, ActivityNet, CSV).")
    ] = None,
    splits: Annotated[
        Optional[Path], typer.Option("--splits", help="Folder of split lists replacing the shipped ones.")
    ] = None,
    task: Annotated[
        Optional[str], typer.Option("--task", help="fewshot | localization | classification (generic builders).")
    ] = None,
    probe: Annotated[
        bool, typer.Option("--probe", help="Fill fps/num_frames/duration from the files (needs --root).")
    ] = False,
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
    out.print(
        f"wrote {out_file}: {len(manifest)} videos, {len(manifest.classes)} classes, splits {manifest.splits}, sha256 {manifest.sha256[:12]}"
    )
    if problems:
        err.print(f"[yellow]{len(problems)} file(s) could not be probed:[/]")
        err.print(problems.format(limit=50), markup=False, highlight=False)


@manifest_app.command("check")
def manifest_check(
    manifest: Annotated[str, typer.Argument(help="Manifest file or dataset name.")],
    root: Annotated[
        Optional[Path], typer.Option("--root", help="Data root: also check every file exists and is readable.")
    ] = None,
    probe: Annotated[bool, typer.Option("--probe", help="Also open every file as a video.")] = False,
) -> None:
    """Report every problem of a manifest with its line; exit 2 when there is any."""
    from fsv.pipeline.manifests import check_source

    m, problems = check_source(manifest, root, probe=probe)
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
    summary = _load_manifest(manifest).summary()
    if as_json:
        out.print_json(json.dumps(summary))
        return
    out.print(tables.manifest_table(summary))


# --------------------------------------------------------------------------------------- store
@store_app.command("info")
def store_info(
    store: Annotated[Path, typer.Argument(help="Store folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    failed: Annotated[bool, typer.Option("--failed", help="List failed videos with their reasons.")] = False,
    html_page: Annotated[
        Optional[Path], typer.Option("--html", help="Also write a self-contained HTML page of the store.")
    ] = None,
) -> None:
    """Spec, key, manifest hash, counts, parts, files and size of a store."""
    from fsv.pipeline.store import FeatureStore
    from fsv.report.stores import store_page

    if html_page is not None:
        err.print(f"wrote {store_page(store).write(html_page)}", markup=False, highlight=False)
    s = FeatureStore.open(store)
    info = {**s.info(), **({"failures": {v: e.error for v, e in s.failures.items()}} if failed or as_json else {})}
    if as_json:
        out.print_json(json.dumps(info))
        return
    out.print(tables.store_table(str(store), info, s.spec))
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
        err.print(
            f"{len(report.problems)} problem(s) in {store} ({report.checked} videos checked)", style="red", markup=False
        )
        raise typer.Exit(1)
    dup = f" ({report.commits - report.checked} duplicate commit(s))" if report.commits > report.checked else ""
    out.print(f"{store}: {report.checked} videos checked{dup}, all intact")


@store_app.command("import")
def store_import(
    source: Annotated[
        Path,
        typer.Argument(help="Features: a folder of .npy/.npz files, an .h5 file, or a published layout (--format)."),
    ],
    store: Annotated[Path, typer.Option("--store", help="Store folder (created when absent).")],
    manifest: Annotated[str, typer.Option("--manifest", help="Manifest file or dataset name.")],
    fmt: Annotated[
        Optional[str],
        typer.Option(
            "--format",
            help="Published layout: wtalc | actionformer | anet-c3d | video-features | videomaev2-tad | tsp-h5.",
        ),
    ] = None,
    spec: Annotated[
        Optional[str], typer.Option("--spec", help="Feature spec preset or .json file (default: the format's preset).")
    ] = None,
    annotations: Annotated[
        Optional[Path],
        typer.Option("--annotations", help="The format's annotations, where it needs them to name the videos."),
    ] = None,
    concat: Annotated[
        Optional[str], typer.Option("--concat", help="Join these arrays on the last axis, e.g. rgb,flow.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Re-import videos already in the store.")] = False,
) -> None:
    """Bring existing per-video features into a store under a given spec; exit 2 if any video failed."""
    from fsv.pipeline.store.transfer import import_into

    report = import_into(
        source,
        store,
        _load_manifest(manifest),
        fmt=fmt,
        spec=spec,
        annotations=annotations,
        concat=concat.split(",") if concat else None,
        overwrite=overwrite,
    )
    out.print(
        f"imported {report.imported} videos into {store} (skipped {report.skipped_existing} already there, "
        f"{len(report.failed)} failed, {len(report.not_in_manifest)} not in the manifest); "
        f"{len(report.missing)} manifest videos have no features"
    )
    for vid, why in report.failed.items():
        err.print(f"failed {vid}: {why}", markup=False, highlight=False)
    if report.failed:
        raise typer.Exit(2)


@store_app.command("export")
def store_export(
    store: Annotated[Path, typer.Argument(help="Store folder.")],
    h5: Annotated[Optional[Path], typer.Option("--h5", help="HDF5 file to write (fsv's own layout).")] = None,
    fmt: Annotated[
        Optional[str],
        typer.Option(
            "--format",
            help="Published layout to write instead: wtalc | actionformer | anet-c3d | video-features | videomaev2-tad | tsp-h5.",
        ),
    ] = None,
    out_path: Annotated[
        Optional[Path],
        typer.Option("--out", help="Where --format writes (a new folder, or a file for anet-c3d and tsp-h5)."),
    ] = None,
    manifest: Annotated[
        Optional[str], typer.Option("--manifest", help="The store's manifest (annotations for wtalc / actionformer).")
    ] = None,
) -> None:
    """Write a store to HDF5 (--h5), or in a published layout (--format, --out) that the papers' code reads."""
    from fsv.pipeline.store.transfer import export_store

    for line in export_store(
        store, h5=h5, fmt=fmt, out=out_path, manifest=_load_manifest(manifest) if manifest else None
    ):
        out.print(line, markup=False, highlight=False)


# ------------------------------------------------------------------------------------- extract
def _print_extract(title: str, summary, strict: bool) -> None:
    out.print(tables.extract_table(title, summary))
    for vid, why in summary.failed.items():
        err.print(f"failed {vid}: {why}", markup=False, highlight=False)
    if summary.failed:
        err.print(f"{len(summary.failed)} video(s) failed; fix them and re-run with --retry-failed", markup=False)
    if strict and summary.failed:
        raise typer.Exit(1)


@app.command("extract")
@extract_options
def extract_cmd(
    shard: Annotated[
        Optional[str],
        typer.Option("--shard", help="Process part I of N of the manifest (I/N, 0-based) into its own store part."),
    ] = None,
    strict: StrictOpt = False,
    *,
    request: ExtractRequest,
) -> None:
    """Extract features of a dataset's videos into its feature store (resumable, shardable)."""
    from fsv.pipeline.cluster import run_job
    from fsv.pipeline.extract_setup import extract_job

    job = extract_job(dataclasses.replace(request, shard=shard))
    _print_extract(
        f"extract {job.recipe.spec().name} -> {job.store}" + (f" (shard {shard})" if shard else ""),
        run_job(job),
        strict,
    )


@submit_app.command("extract")
@scheduler_options(time_min=240)
@extract_options
def submit_extract_cmd(
    shards: Annotated[int, typer.Option("--shards", help="Number of shards (array tasks).")],
    strict: StrictOpt = False,
    *,
    request: ExtractRequest,
    executor: str,
    cluster,
    wait: bool,
) -> None:
    """Submit an extraction as N shards (SLURM job array, local processes or dask); all land in one store."""
    from fsv.pipeline.cluster import submit_extract
    from fsv.pipeline.extract_setup import extract_job

    job = extract_job(request)
    result = submit_extract(job, shards, executor, cluster, wait=wait)
    if not wait:
        out.print(f"submitted {len(result)} shard(s): {', '.join(map(str, result))}; logs in {cluster.folder}")
        return
    _print_extract(f"extract {job.recipe.spec().name} -> {job.store} ({shards} shards on {executor})", result, strict)


# ----------------------------------------------------------------------------------- stage two
@app.command("train-head")
@train_options
def train_head_cmd(
    out_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--out", help="Run folder (resumed when it exists); default: <runs root>/<head>-<dataset>-<shot>shot."
        ),
    ] = None,
    new: Annotated[
        bool, typer.Option("--new", help="Start a fresh default run folder beside an existing one (never overwrites).")
    ] = False,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of training episodes and initialisation.")] = None,
    device: DeviceOpt = "auto",
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config",
            help="Print the resolved configuration as JSON, with where each value came from, and exit.",
        ),
    ] = False,
    *,
    request,
) -> None:
    """Train a head on cached features (the paper's preset; resumable; val-only model selection).

    Presets resolve as: the head's paper preset, its preset for the manifest's dataset, --config,
    then --set and the named options. Recognition heads (protonet, trx, strm, ta2n) train on
    episodes and select on validation accuracy; localization heads (cdcca, protomatch, vqknet) select on
    validation mAP."""
    from fsv.heads.engine.config import explain
    from fsv.heads.setup import plan_run, with_defaults
    from fsv.heads.tasks import task_of

    request, chosen = with_defaults(dataclasses.replace(request, seed=seed, new=new))
    for line in chosen:
        err.print(line, markup=False, highlight=False)
    cfg, resolved, source = plan_run(request, data=not print_config)
    if print_config:
        out.print_json(json.dumps(explain(cfg, resolved)))
        return
    out.print(task_of(request.head).train(cfg, source, request.run, device=device).summary(request.head))


@submit_app.command("train-head")
@scheduler_options(time_min=720)
@train_options
def submit_train_head_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Sweep folder; seed k trains into OUT/seed<k>.")],
    seeds: Annotated[int, typer.Option("--seeds", help="Number of seeds (0..N-1).")] = 3,
    device: DeviceOpt = "auto",
    *,
    request,
    executor: str,
    cluster,
    wait: bool,
) -> None:
    """Train a head with several seeds as a job array; then `fsv eval OUT` reports mean ± std."""
    from fsv.heads.sweep import seed_jobs, submit_train

    results = submit_train(seed_jobs(request, seeds, device), executor, cluster, wait=wait)
    if not wait:
        out.print(
            f"submitted {len(results)} seed(s): {', '.join(map(str, results))}; logs in {cluster.folder}; then: fsv eval {out_dir}"
        )
        return
    for r in results:
        out.print(f"{r.run}: best validation score {r.best_val:.4f} at step {r.best_step}")


@app.command("predict")
def predict_cmd(
    run: Annotated[
        str,
        typer.Argument(
            help="Localization run folder (cdcca, protomatch or vqknet), or a head's name for its most recent run."
        ),
    ],
    out_file: Annotated[Path, typer.Option("--out", help="Results file to write (ActivityNet results JSON).")],
    split: Annotated[str, typer.Option("--split", help="test or val.")] = "test",
    benchmark: BenchmarkOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Write the detections of a localization run's best model in the ActivityNet results format.

    Common-localization runs key detections by episode and also write the episodes' ground truth
    beside them (OUT with .gt.json), so any ActivityNet-style tool can score the pair."""
    from fsv.heads.tasks import load_run

    folder = _run_folder(run)
    out.print(
        load_run(folder)[0].write_predictions(folder, out_file, split=split, benchmark=benchmark, device=device),
        markup=False,
        highlight=False,
    )


@app.command("eval")
def eval_cmd(
    run: Annotated[
        str, typer.Argument(help="Run folder (or a seed sweep folder), or a head's name for its most recent run.")
    ],
    split: Annotated[str, typer.Option("--split", help="test or val.")] = "test",
    episodes: Annotated[
        Optional[int], typer.Option("--episodes", help="Fixed episodes to score (default 10000).")
    ] = None,
    benchmark: BenchmarkOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Score a run on its test split: recognition runs give mean accuracy ± 95% CI over the fixed test
    episodes, localization runs their mAP table (seed sweeps: mean ± std over seeds)."""
    from fsv.heads.evaluation import eval_table, evaluate_folder

    folder = _run_folder(run)
    payload = evaluate_folder(folder, split=split, episodes=episodes, benchmark=benchmark, device=device)
    if as_json:
        typer.echo(json.dumps(payload))
    else:
        out.print(eval_table(folder, split, payload))


@app.command("report")
def report_cmd(
    run: Annotated[
        str, typer.Argument(help="Run folder (or a seed sweep folder), or a head's name for its most recent run.")
    ],
    out_file: Annotated[Path, typer.Option("--out", help="HTML page to write (self-contained: images embedded).")],
    episodes: Annotated[
        Optional[int],
        typer.Option(
            "--episodes", help="Fixed test episodes to score (recognition; default: the run's test_episodes)."
        ),
    ] = None,
    videos: Annotated[
        int, typer.Option("--videos", help="Test videos (or episodes) drawn as detection timelines (localization).")
    ] = 4,
    device: DeviceOpt = "auto",
) -> None:
    """A page for a run: curves, the evaluation with its random baseline, per-class results, detections, provenance."""
    from fsv.report.runs import report

    out.print(f"wrote {report(_run_folder(run), out_file, episodes=episodes, device=device, videos=videos)}")


@score_app.command("detections")
def score_detections_cmd(
    gt: Annotated[Path, typer.Option("--gt", help='Ground truth, ActivityNet format ({"database": ...}).')],
    pred: Annotated[Path, typer.Option("--pred", help='Results, ActivityNet format ({"results": ...}).')],
    subset: Annotated[
        Optional[str],
        typer.Option("--subset", help="Score only ground-truth videos of this subset (e.g. validation, test)."),
    ] = None,
    tiou: Annotated[str, typer.Option("--tiou", help="tIoU thresholds: START:STOP:STEP or a list.")] = "0.5:0.95:0.05",
    ambiguous: Annotated[
        bool,
        typer.Option(
            "--ambiguous/--no-ambiguous",
            help="Ignore the detections THUMOS14's protocol ignores on the ground truth's per-video \"ambiguous\" segments (when the file lists them).",
        ),
    ] = True,
    ambiguous_rule: Annotated[
        str,
        typer.Option(
            "--ambiguous-rule",
            help="thumos14: false positives overlapping an ambiguous segment are ignored (official TH14evalDet); wtalc: every overlapping detection is dropped before matching (W-TALC / CO2-Net).",
        ),
    ] = "thumos14",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """mAP at tIoU thresholds of any ActivityNet-format results file, computed as the official
    ActivityNet detection evaluation does (interpolated AP, greedy matching by score)."""
    from fsv.detections import parse_tiou, score_files

    result = score_files(gt, pred, parse_tiou(tiou), subset, ambiguous=ambiguous, ambiguous_rule=ambiguous_rule)
    if as_json:
        typer.echo(json.dumps({"map": result["map"], "average_map": result["average_map"]}))
        return
    out.print(tables.detections_table(f"mAP of {pred} against {gt}", result))


@app.command("demo")
def demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the demo's videos, manifest and store.")] = Path(
        "fsv-demo"
    ),
    per_class: Annotated[int, typer.Option("--per-class", help="Videos per class (at least 3).")] = 4,
    weights: Annotated[
        Optional[str], typer.Option("--weights", help="ResNet-50 checkpoint (default: cache, else random).")
    ] = None,
) -> None:
    """Generate a few-shot video set, extract ResNet-50 features, train and score ProtoNet and TRX."""
    from fsv.demo import DEMO_EPISODES, run_demo

    r = run_demo(out_dir, per_class=per_class, weights=weights)
    for table in tables.demo_tables(out_dir, r, DEMO_EPISODES):
        out.print(table)
    if not r.verify.ok or r.extract.failed:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------ datasets
@datasets_app.command("list")
def datasets_list() -> None:
    """Every known dataset with its resolved root, manifest and store folder."""
    from fsv.locations import datasets_file, datasets_overview

    rows = [list(d.values()) for d in datasets_overview()]
    out.print(
        tables.columns_table(
            f"datasets (file: {datasets_file()})", ["name", "root", "manifest", "stores"], rows, align="left"
        )
    )


@datasets_app.command("set")
def datasets_set(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. thumos14.")],
    root: Annotated[Optional[Path], typer.Option("--root", help="Data root.")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Manifest file.")] = None,
    stores: Annotated[
        Optional[Path], typer.Option("--stores", help="Folder for this dataset's feature stores.")
    ] = None,
    default: Annotated[
        bool, typer.Option("--default", help="Heads read this dataset when a command names none.")
    ] = False,
) -> None:
    """Record where a dataset lives, so commands accept ``--dataset NAME`` alone (a name of your
    own needs ``--manifest``)."""
    from fsv.locations import set_dataset

    out.print(f"updated {set_dataset(name, root=root, manifest=manifest, stores=stores, default=default)}")


# ------------------------------------------------------------------------------------- plugins
@app.command("plugins")
def plugins_cmd() -> None:
    """Installed plugins (entry point groups fsv.heads, fsv.backbones, fsv.formats, fsv.datasets):
    what each adds, from which distribution, and why one did not load."""
    from fsv.plugins import all_plugins

    found = all_plugins()
    if not found:
        out.print("no plugins installed (entry point groups fsv.heads, fsv.backbones, fsv.formats, fsv.datasets)")
        return
    out.print(tables.plugins_table(found))


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
