"""``fsv report RUN``: the page of a run folder or a seed sweep (what the papers' figures show, for
the user's own run).

Every run page has the evaluation table (the dict ``fsv eval --json`` prints, computed by the same
code, with the random baseline beside it), the training curves of ``metrics.csv`` and the run's
provenance (head, preset values and the overrides, store specs and keys, manifest hash, fsv
versions). Recognition runs add per-class accuracy and the confusion matrix over the fixed test
episodes; localization runs per-class AP and, for a few test videos, ground truth against the
top detections with the head's actionness under them (VQK-Net's foreground attention, CDC-CA's
support-agnostic proposal actionness). A sweep page shows each seed's result, the mean ± std and
each seed's curves. The sections of a run are chosen by its head card's task (:data:`TASK_SECTIONS`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fsv import __version__
from fsv.errors import FsvInputError
from fsv.report import figures
from fsv.report.page import Cell, Page, num
from fsv.runs import load_run, read_run_record


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
    from fsv.pipeline.manifests import Manifest
    from fsv.pipeline.store import FeatureStore
    from fsv.presets import run_config

    record = read_run_record(run)
    cfg, source = load_run(run)
    manifest = Manifest.read(source.manifest)
    preset, resolved = run_config(cfg.head, manifest.dataset, [])
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


# ------------------------------------------------------------------------------------ recognition
def _recognition(page: Page, run: Path, *, episodes: int | None, device: str, videos: int) -> dict[str, Any]:
    from fsv.train import evaluate_outcomes

    result, outcomes = evaluate_outcomes(run, split="test", episodes=episodes, device=device)
    evaluation = result.to_dict()
    chance = 1.0 / result.way
    page.section("Evaluation", "evaluation")
    page.table(
        ["", "accuracy (%)", "± 95% CI", "episodes"],
        [
            [
                f"{result.head}, {result.way}-way {result.shot}-shot, {result.split}",
                num(result.accuracy, "accuracy"),
                num(result.ci95, "ci95"),
                Cell(str(result.episodes), "episodes", result.episodes),
            ],
            ["random guess (1 / way)", num(chance, "chance"), Cell("–"), Cell("")],
        ],
        name="evaluation",
    )
    classes = sorted(set(outcomes.true))
    index = {c: k for k, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(outcomes.true, outcomes.predicted, strict=True):
        matrix[index[t], index[p]] += 1
    per_class = {c: float(matrix[k, k] / max(matrix[k].sum(), 1)) for c, k in index.items()}
    page.section("Per class", "classes")
    page.figure(
        figures.class_bars(
            per_class,
            f"query accuracy per class over {result.episodes} test episodes",
            "accuracy",
            reference=chance,
            reference_label="chance",
        ),
        "Per-class query accuracy (dashed: chance)",
        name="per-class",
    )
    page.figure(
        figures.confusion_matrix(matrix, classes),
        "Confusion matrix over the fixed test episodes (row-normalised; a class is only "
        "confused with the classes it met in an episode)",
        name="confusion",
    )
    page.table(
        ["class", "queries", "accuracy (%)"],
        [[c, Cell(str(int(matrix[k].sum()))), num(per_class[c], f"class:{c}")] for c, k in index.items()],
        name="per-class",
    )
    return {"evaluation": evaluation, "per_class": per_class, "classes": classes, "confusion": matrix.tolist()}


# ----------------------------------------------------------------------------------- localization
def _localization(page: Page, run: Path, *, episodes: int | None, device: str, videos: int) -> dict[str, Any]:
    from fsv.localization.config import protocol_for
    from fsv.localization.trainer import evaluation_of, predict_run
    from fsv.metrics import detection_map

    scored, cfg, dataset = predict_run(run, split="test", device=device)
    evaluation = evaluation_of(scored, cfg, dataset, "test")
    chance = evaluation["random_proposals"]
    page.section("Evaluation", "evaluation")
    keys = list(evaluation["map"])
    page.table(
        ["", *[f"mAP@{k}" for k in keys], "average", *evaluation["averages"]],
        [
            [
                f"{cfg.head} on {dataset} {evaluation['split']}",
                *[num(evaluation["map"][k], f"map:{k}") for k in keys],
                num(evaluation["average_map"], "average_map"),
                *[num(v, f"averages:{k}") for k, v in evaluation["averages"].items()],
            ],
            [
                "random proposals",
                *[num(chance["map"][k], f"random:map:{k}") for k in keys],
                num(chance["average_map"], "random:average_map"),
                *[num(v, f"random:averages:{k}") for k, v in chance["averages"].items()],
            ],
        ],
        name="evaluation",
    )
    protocol = protocol_for(cfg.task, dataset)
    truth, found, note = scored.ground_truth, scored.predictions, ""
    classes = {ep["key"]: ep["label"] for ep in scored.extra.get("episodes", [])}
    if classes:  # common localization pools every episode as one class "common": per class, its episodes alone
        truth = {k: [(s, e, classes[k]) for s, e, _ in v] for k, v in truth.items()}
        found = {k: [(s, e, p, classes[k]) for s, e, p, _ in v] for k, v in found.items()}
        note = "; each class's episodes scored on their own (the mAP above pools all episodes)"
    per_class = detection_map(truth, found, np.asarray(protocol.tious), ambiguous=scored.ambiguous or None)["ap"]
    mean_ap = {label: float(np.mean(aps)) for label, aps in per_class.items()}
    page.section("Per class", "classes")
    over = f"at tIoU {keys[0]}" if len(keys) == 1 else f"mean over tIoU {keys[0]}-{keys[-1]}"
    page.figure(
        figures.class_bars(mean_ap, f"AP per class, {over}", "AP"), f"Per-class AP ({over}{note})", name="per-class"
    )
    page.table(
        ["class", *[f"AP@{k}" for k in keys]],
        [[c, *[num(a, f"ap:{c}:{k}") for a, k in zip(aps, keys, strict=True)]] for c, aps in per_class.items()],
        name="per-class",
    )
    shown = sorted(scored.ground_truth, key=lambda v: (-len(scored.ground_truth[v]), v))[:videos]
    actionness = scored.extra.get("actionness", {})
    page.section("Detections", "detections")
    drawn: dict[str, int] = {}
    for v in shown:
        truth = scored.ground_truth[v]
        dets = sorted(scored.predictions.get(v, []), key=lambda d: -d[2])[:8]
        window = scored.windows.get(v) or (min(s for s, _, _ in truth), max(e for _, e, _ in truth))
        curve = actionness.get(v)
        drawn[v] = len(dets)
        page.figure(
            figures.detection_timeline(v, window, truth, dets, curve, "actionness"),
            f"{v}: ground truth (green) against the top {len(dets)} detections"
            + (" and the head's actionness under them" if curve is not None else ""),
            name=f"timeline:{v}",
        )
    return {
        "evaluation": evaluation,
        "per_class_ap": per_class,
        "videos": shown,
        "detections_shown": drawn,
        "actionness_shown": bool(shown) and all(v in actionness for v in shown),
    }


#: the sections of a run, by its head card's task
TASK_SECTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "recognition": _recognition,
    "wtal": _localization,
    "common": _localization,
}


def run_page(run: Path, *, episodes: int | None = None, device: str = "auto", videos: int = 4) -> Page:
    """The page of run folder ``run``."""
    from fsv.heads.base import head_card

    record = read_run_record(run)
    head = record["config"]["head"]
    page = Page(f"fsv report: {run.name}", f"{head} run in {run}", kind="run")
    sections = TASK_SECTIONS[head_card(head).task](page, run, episodes=episodes, device=device, videos=videos)
    _curves(page, run)
    page.data = {"kind": "run", "head": head, **sections, "provenance": _provenance(page, run)}
    return page


def sweep_page(folder: Path, seeds: list[Path], *, episodes: int | None = None, device: str = "auto") -> Page:
    """The page of a seed sweep: each seed's evaluation, their mean ± std, and each seed's curves."""
    from fsv.evaluation import evaluate_folder

    result = evaluate_folder(folder, episodes=episodes, device=device)
    page = Page(
        f"fsv report: {folder.name}", f"seed sweep of {result['head']}: {len(seeds)} seeds in {folder}", kind="sweep"
    )
    page.section("Evaluation", "evaluation")
    metric, spread = ("accuracy", "accuracy (%)") if "accuracy" in result else ("average_map", "average mAP (%)")
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
    from fsv.evaluation import seed_runs

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
