"""``fsv report RUN``: the page of a run folder or a seed sweep (what the papers' figures show, for
the user's own run).

Every run page has the evaluation table (the dict ``fsv eval --json`` prints, computed by the same
code, with the random baseline beside it), the training curves of ``metrics.csv`` and the run's
provenance (head, preset values and the overrides, store specs and keys, manifest hash, fsv
versions). Recognition runs add per-class accuracy and the confusion matrix over the fixed test
episodes; localization runs per-class AP and, for a few test videos, ground truth against the
top detections with the head's actionness under them (VQK-Net's foreground attention, CDC-CA's
support-agnostic proposal actionness). A sweep page shows each seed's result, the mean ± std and
each seed's curves. The sections that depend on the kind of run are its :meth:`fsv.heads.tasks.base.Task.report`.
"""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fsv import __version__
from fsv.errors import FsvInputError
from fsv.report import figures
from fsv.report.page import Cell, Page, num
from fsv.heads.engine.run_folder import read_run_record
from fsv.heads.evaluation import evaluate_folder, seed_runs
from fsv.heads.tasks import load_run, task_of
from fsv.pipeline.manifests import Manifest
from fsv.pipeline.store import FeatureStore


def read_metrics(run: Path) -> tuple[str, dict[str, np.ndarray]] | None:
    """``metrics.csv`` as columns (the first is the x axis: episodes or steps), or None before the
    first validation."""
    path = run / "metrics.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    names = list(rows[0])

    def value(text: str | None) -> float:
        try:
            return float(text) if text not in (None, "") else np.nan
        except ValueError:
            return np.nan

    return names[0], {k: np.array([value(r.get(k)) for r in rows]) for k in names}


def _curves(page: Page, run: Path, title: str = "Training") -> None:
    page.section(title, "training")
    metrics = read_metrics(run)
    if metrics is None:
        page.text(
            "No metrics.csv: the run has not reached its first validation, or its head has nothing to train (ProtoNet without a projection)."
        )
        return
    x, columns = metrics
    page.figure(
        figures.training_curves(columns, x),
        f"metrics.csv of {run.name}: each column against {x}",
        name="training-curves",
    )


def _provenance(page: Page, run: Path) -> dict[str, Any]:
    """Head, the preset values and the overrides, stores (spec, key, fsv version) and manifest hash."""
    record = read_run_record(run)
    task, cfg, source = load_run(run)
    manifest = Manifest.read(source.manifest)
    preset, resolved = task.resolve(cfg.head, manifest.dataset, [])
    ran, base = asdict(cfg), asdict(preset)
    overrides = [(k, base.get(k), v) for k, v in ran.items() if k != "head_args" and base.get(k) != v]
    overrides += [
        (f"head_args.{k}", base["head_args"].get(k), v)
        for k, v in ran["head_args"].items()
        if base["head_args"].get(k) != v
    ]
    page.section("Provenance", "provenance")
    page.table(
        ["", ""],
        [
            ["head", cfg.head],
            ["dataset", manifest.dataset],
            [
                "preset",
                f"{cfg.head} paper preset"
                + (f" + {resolved.dataset_preset} preset" if resolved.dataset_preset else ""),
            ],
            ["manifest", f"{source.manifest} (sha256 {manifest.sha256[:16]}, {len(manifest)} videos)"],
            ["report by", f"fsv {__version__}"],
        ],
        name="provenance",
    )
    page.table(
        ["setting", "preset", "this run"],
        [[k, str(b), str(v)] for k, b, v in overrides] or [["(none)", "", ""]],
        name="overrides",
    )
    stores = []
    for path in source.stores:
        info = FeatureStore.open(path).info()
        stores.append(
            {
                "path": str(path),
                **{k: info.get(k) for k in ("spec_name", "spec_key", "fsv_version", "videos", "manifest_sha256")},
            }
        )
    page.table(
        ["store", "spec", "key", "videos", "written by"],
        [[s["path"], s["spec_name"], s["spec_key"], str(s["videos"]), f"fsv {s['fsv_version']}"] for s in stores],
        name="stores",
    )
    return {
        "config": ran,
        "overrides": {k: v for k, _, v in overrides},
        "stores": stores,
        "manifest_sha256": manifest.sha256,
        "data": record["data"],
    }


def run_page(run: Path, *, episodes: int | None = None, device: str = "auto", videos: int = 4) -> Page:
    """The page of run folder ``run``."""
    head = read_run_record(run)["config"]["head"]
    page = Page(f"fsv report: {run.name}", f"{head} run in {run}", kind="run")
    sections = task_of(head).report(page, run, episodes=episodes, device=device, videos=videos)
    _curves(page, run)
    page.data = {"kind": "run", "head": head, **sections, "provenance": _provenance(page, run)}
    return page


def sweep_page(folder: Path, seeds: list[Path], *, episodes: int | None = None, device: str = "auto") -> Page:
    """The page of a seed sweep: each seed's evaluation, their mean ± std, and each seed's curves."""
    result = evaluate_folder(folder, episodes=episodes, device=device)
    page = Page(
        f"fsv report: {folder.name}", f"seed sweep of {result['head']}: {len(seeds)} seeds in {folder}", kind="sweep"
    )
    page.section("Evaluation", "evaluation")
    metric, spread = task_of(result["head"]).headline
    rows = [[seed.name, num(r[metric], f"{seed.name}:{metric}")] for seed, r in zip(seeds, result["runs"], strict=True)]
    rows.append(
        [
            f"mean ± std over {len(seeds)} seeds",
            Cell(f"{100 * result[metric]:.2f} ± {100 * result['std']:.2f}", metric, float(result[metric])),
        ]
    )
    page.table(["run", spread], rows, name="evaluation")
    for seed in seeds:
        _curves(page, seed, title=f"Training: {seed.name}")
    page.data = {"kind": "sweep", "evaluation": result}
    return page


def report(folder: Path, out: Path, *, episodes: int | None = None, device: str = "auto", videos: int = 4) -> Path:
    """Write the page of run or sweep ``folder`` to ``out``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FsvInputError(f"{folder}: no such run folder")
    seeds = seed_runs(folder)
    page = (
        sweep_page(folder, seeds, episodes=episodes, device=device)
        if seeds
        else run_page(folder, episodes=episodes, device=device, videos=videos)
    )
    return page.write(out)
