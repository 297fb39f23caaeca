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
from fsv.errors import FsvError, FsvInputError

app = typer.Typer(help="fsv: few-shot and weakly-supervised video action understanding.", no_args_is_help=True, pretty_exceptions_enable=False)
manifest_app = typer.Typer(help="Build, check and show dataset manifests.", no_args_is_help=True)
store_app = typer.Typer(help="Inspect, verify, import into and export from feature stores.", no_args_is_help=True)
datasets_app = typer.Typer(help="Datasets by name: data roots, manifests and store folders.", no_args_is_help=True)
app.add_typer(manifest_app, name="manifest")
app.add_typer(store_app, name="store")
app.add_typer(datasets_app, name="datasets")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("fsv")


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")] = 0,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        out.print(f"fsv {__version__}")
        raise typer.Exit()
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _load_manifest(spec: str, root: Path | None = None):
    """A manifest file, or a dataset name (configured manifest, else built from shipped files)."""
    from fsv.config import locate
    from fsv.pipeline.manifests import Manifest, build_manifest, canonical_name, dataset_names

    path = Path(spec)
    if path.is_file():
        return Manifest.read(path)
    name = canonical_name(spec)
    if name in dataset_names():
        loc = locate(name)
        if loc.manifest is not None:
            return Manifest.read(loc.manifest)
        return build_manifest(name, root=root or loc.root)
    raise FsvInputError(f"{spec}: neither a manifest file nor a dataset name ({', '.join(dataset_names())})")


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
    from fsv.pipeline.manifests import ProblemList, check_manifest

    m = _load_manifest(manifest, root)
    if root is None and not Path(manifest).is_file():
        from fsv.config import locate

        root = locate(m.dataset).root
    problems = ProblemList()
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
    out.print(f"{store}: {report.checked} videos checked, all intact")


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
    from fsv.pipeline.spec import get_spec
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
@app.command("extract")
def extract_cmd(
    backbone: Annotated[str, typer.Option("--backbone", help="Backbone: resnet50.")],
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Dataset name (see `fsv datasets list`).")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Manifest file (with --root and --store).")] = None,
    root: Annotated[Optional[Path], typer.Option("--root", help="Data root of the manifest's paths.")] = None,
    store: Annotated[Optional[Path], typer.Option("--store", help="Store folder.")] = None,
    weights: Annotated[Optional[str], typer.Option("--weights", help="Checkpoint path, or 'random' (recorded in the spec).")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Retry videos recorded as failed.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any video failed.")] = False,
) -> None:
    """Extract features of a dataset's videos into its feature store (resumable)."""
    from fsv.config import locate
    from fsv.pipeline.extract import extract, feature_spec
    from fsv.pipeline.weights import resolve_weights

    if dataset is not None:
        loc = locate(dataset)
        m = _load_manifest(dataset)
        root = root or loc.root
        if root is None:
            raise FsvInputError(f"no data root for {dataset}: run `fsv datasets set {dataset} --root DIR` or pass --root")
    elif manifest is not None and root is not None and store is not None:
        m = _load_manifest(str(manifest))
    else:
        raise FsvInputError("give --dataset NAME, or --manifest FILE --root DIR --store DIR")
    ref = resolve_weights(backbone, weights)
    if store is None:
        spec = feature_spec(backbone, ref)
        store = locate(dataset).store_path(spec.name, spec.key)
    summary = extract(m, root, store, backbone=backbone, weights=ref, device=device, retry_failed=retry_failed)
    table = Table(title=f"extract {backbone} -> {store}")
    for col in ("written", "skipped (done before)", "failed", "frames", "videos/s"):
        table.add_column(col, justify="right")
    rate = summary.written / summary.seconds if summary.seconds else 0.0
    table.add_row(str(summary.written), str(summary.skipped), str(len(summary.failed)), str(summary.frames), f"{rate:.2f}")
    out.print(table)
    for vid, why in summary.failed.items():
        err.print(f"failed {vid}: {why}", markup=False, highlight=False)
    if strict and summary.failed:
        raise typer.Exit(1)


@app.command("demo")
def demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the demo's videos, manifest and store.")] = Path("fsv-demo"),
    per_class: Annotated[int, typer.Option("--per-class", help="Videos per class.")] = 3,
    weights: Annotated[Optional[str], typer.Option("--weights", help="ResNet-50 checkpoint (default: cache, else random).")] = None,
) -> None:
    """Generate a small few-shot video set, build its manifest, extract ResNet-50 features, verify."""
    from fsv.demo import run_demo

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
    if not r.verify.ok or r.extract.failed:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------ datasets
@datasets_app.command("list")
def datasets_list() -> None:
    """Every known dataset with its resolved root, manifest and store folder."""
    from fsv.config import config_path, locate
    from fsv.pipeline.manifests import dataset_names

    table = Table(title=f"datasets (config: {config_path()})")
    for col in ("name", "root", "manifest", "stores"):
        table.add_column(col)
    for name in dataset_names():
        loc = locate(name)
        table.add_row(name, str(loc.root or "-"), str(loc.manifest or "(built from shipped files)"), str(loc.stores))
    out.print(table)


@datasets_app.command("set")
def datasets_set(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. thumos14.")],
    root: Annotated[Optional[Path], typer.Option("--root", help="Data root.")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Manifest file.")] = None,
    stores: Annotated[Optional[Path], typer.Option("--stores", help="Folder for this dataset's feature stores.")] = None,
) -> None:
    """Record where a dataset lives, so commands accept ``--dataset NAME`` alone."""
    from fsv.config import set_dataset

    path = set_dataset(name, root=str(root) if root else None, manifest=str(manifest) if manifest else None, stores=str(stores) if stores else None)
    out.print(f"updated {path}")


def main() -> None:
    """Console entry point: Typer handles usage errors (exit 2); fsv errors become a one-line
    message and their exit code."""
    try:
        app()
    except FsvError as e:
        err.print("error:", style="bold red", end=" ")
        err.print(str(e), markup=False, highlight=False)
        raise SystemExit(e.exit_code) from None
