"""What fsv prints: rich tables of the payloads that the library returns (``fsv eval --json``
prints the same payloads as JSON). Each function takes plain results and returns a table; none
computes anything a payload does not hold.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table


def key_value_table(title: str, rows: dict[str, Any]) -> Table:
    """Two columns, no header: ``key | value``."""
    table = Table(show_header=False, title=title)
    for key, value in rows.items():
        table.add_row(key, str(value))
    return table


def columns_table(
    title: str, columns: list[str], rows: list[list[Any]], *, align: str = "right", first_left: bool = False
) -> Table:
    """A table with these column names, aligned ``align`` (the first column left when asked)."""
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if first_left and i == 0 else align)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    return table


def manifest_table(summary: dict[str, Any]) -> Table:
    """``Manifest.summary()``: videos, classes, segments and metadata per split."""
    title = f"{summary['dataset']} ({summary['task']}), {summary['videos']} videos, {summary['classes']} classes, sha256 {summary['sha256'][:12]}"
    rows = [[s, *d.values()] for s, d in summary["splits"].items()]
    return columns_table(title, ["split", "videos", "classes", "segments", "with duration", "with fps"], rows)


def extract_table(title: str, summary: Any) -> Table:
    """An :class:`~fsv.pipeline.extract.ExtractSummary`: counts and rates."""
    secs = summary.seconds or float("nan")
    row = [
        summary.written,
        summary.skipped,
        len(summary.failed),
        summary.steps,
        summary.frames,
        f"{summary.written / secs:.2f}" if summary.seconds else "-",
        f"{summary.frames / secs:.1f}" if summary.seconds else "-",
    ]
    return columns_table(
        title,
        ["written", "skipped (done before)", "failed", "feature steps", "frames decoded", "videos/s", "frames/s"],
        [row],
    )


def map_table(run: Any, payload: dict[str, Any], what: str) -> Table:
    """A localization payload of :func:`fsv.heads.evaluation.evaluate_folder`: mAP % per tIoU and the
    averages, beside the without-query-supports control and the random-proposal baseline; ``what``
    says what was scored (``60 videos``)."""
    seeds = payload.get("seeds")
    title = f"fsv eval {run}: {payload['head']} on {payload['dataset']} {payload['split']} ({what}), mAP %" + (
        f", mean of {seeds} seeds" if seeds else ""
    )
    columns = [(payload["head"], payload)]
    if "without_query_supports" in payload:
        columns.append(
            (
                f"without query-video supports ({payload['without_query_supports']['episodes']})",
                payload["without_query_supports"],
            )
        )
    if not seeds:
        columns.append(("random proposals", payload["random_proposals"]))
    rows = [[t, *(f"{c['map'][t] * 100:.2f}" for _, c in columns)] for t in payload["map"]]
    rows += [
        [f"average {name}", *(f"{c['averages'][name] * 100:.2f}" for _, c in columns)]
        for name in payload["averages"]
        if name != next(iter(payload["map"]))
    ]
    return columns_table(title, ["tIoU", *(name for name, _ in columns)], rows, first_left=True)


def accuracy_table(run: Any, split: str, payload: dict[str, Any]) -> Table:
    """A recognition payload of :func:`fsv.heads.evaluation.evaluate_folder`: accuracy ± 95% CI (one run)
    or ± std over seeds (a sweep)."""
    seeds = payload.get("seeds")
    spread = (
        f"{payload['std'] * 100:.2f} (std over {seeds} seeds)" if seeds else f"{payload['ci95'] * 100:.2f} (95% CI)"
    )
    row = [
        payload["head"],
        payload["dataset"],
        payload["way"],
        payload["shot"],
        payload["episodes"],
        f"{payload['accuracy'] * 100:.2f} ± {spread}",
    ]
    return columns_table(
        f"fsv eval {run} ({split})", ["head", "dataset", "way", "shot", "episodes", "accuracy"], [row], align="left"
    )


def detections_table(title: str, result: dict[str, Any]) -> Table:
    """:func:`fsv.detections.score_files`: mAP % at each tIoU and their average."""
    return columns_table(
        title,
        [*(f"@{t}" for t in result["map"]), "average"],
        [[*(f"{v * 100:.2f}" for v in result["map"].values()), f"{result['average_map'] * 100:.2f}"]],
    )


def demo_tables(out_dir: Any, r: Any, episodes: int) -> list[Table]:
    """A :class:`~fsv.demo.DemoResult`: what each step did, then the heads' test accuracy
    (TRX trained for ``episodes`` demo episodes)."""
    info = r.store.info()
    _, fspec = next(iter(r.store.spec.fields.items()))
    steps = {
        "manifest": f"{out_dir}/manifest.csv: {len(r.manifest)} videos, {len(r.manifest.classes)} classes, splits {r.manifest.splits}",
        "weights": r.store.spec.weights,
        "extract": f"{r.extract.written} written, {r.extract.skipped} already done, {len(r.extract.failed)} failed, {r.extract.frames} frames",
        "store": f"{info['path']}: {info['videos']} videos x 8 x {fspec.shape} {fspec.dtype}, {info['files']} files, {info['bytes_on_disk'] / 1e6:.1f} MB, spec key {info['spec_key']}",
        "verify": f"{r.verify.checked} videos checked, {'all intact' if r.verify.ok else r.verify.problems}",
    }
    first = r.results[0]
    rows = [
        [
            e.head,
            "none (no parameters)" if e.head == "protonet" else f"{episodes} episodes (demo settings)",
            f"{e.accuracy * 100:.1f} ± {e.ci95 * 100:.1f} %",
        ]
        for e in r.results
    ]
    return [
        columns_table(
            f"fsv demo ({r.seconds:.0f} s) -> {out_dir}",
            ["step", "result"],
            [[k, v] for k, v in steps.items()],
            align="left",
        ),
        columns_table(
            f"few-shot results: {first.way}-way {first.shot}-shot, {first.episodes} fixed test episodes",
            ["head", "training", "test accuracy (95% CI)"],
            rows,
            align="left",
        ),
    ]


def store_table(title: str, info: dict[str, Any], spec: Any) -> Table:
    """``fsv store info``: the store's summary (``FeatureStore.info``) and its fields' shapes."""
    from fsv.pipeline.store import FeatureStore

    fields = {f"field {name}": f"{tuple(f.shape)} {f.dtype}" for name, f in spec.fields.items()}
    return key_value_table(title, {**{k: info[k] for k in FeatureStore.SUMMARY_KEYS}, **fields})


def plugins_table(plugins: list[Any]) -> Table:
    """:func:`fsv.plugins.all_plugins`: group, name, module, distribution and status of each."""
    rows = [
        [p.group, p.name, p.value, p.distribution, "loaded" if p.error is None else f"not loaded: {p.error}"]
        for p in plugins
    ]
    return columns_table("fsv plugins", ["group", "name", "module", "distribution", "status"], rows, align="left")
