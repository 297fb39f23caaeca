"""``fsv store info STORE --html PAGE``: a store's page: its spec, counts, steps per video, failures."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from fsv.report import figures
from fsv.report.page import Cell, Page


def store_page(path: Path) -> Page:
    """The page of the store at ``path``: what ``fsv store info --json`` holds, the histogram of
    feature steps per video, every failed video with its reason, and the spec."""
    from fsv.pipeline.store import FeatureStore

    store = FeatureStore.open(path)
    info = store.info()
    failures = {v: e.error for v, e in store.failures.items()}
    lengths = np.array([e.length for e in store.index.values()], dtype=np.int64)
    page = Page(
        f"fsv store: {Path(path).name}",
        f"{info['spec_name']} store of {info.get('dataset') or 'no named dataset'} at {path}",
        kind="store",
    )
    page.section("Store", "store")
    page.table(
        ["", ""],
        [
            [k, Cell(str(info[k]), k, float(info[k])) if isinstance(info[k], int | float) else str(info[k])]
            for k in FeatureStore.SUMMARY_KEYS
        ],
        name="store",
    )
    page.section("Steps per video", "steps")
    if len(lengths):
        page.figure(
            figures.histogram(lengths, f"feature steps per video ({len(lengths)} videos)", "steps"),
            "Feature steps per video",
            name="steps",
        )
        page.table(
            ["", "steps"],
            [
                [k, Cell(f"{v:g}", f"steps:{k}", float(v))]
                for k, v in (("min", lengths.min()), ("median", float(np.median(lengths))), ("max", lengths.max()))
            ],
            name="steps",
        )
    else:
        page.text("No committed video yet.")
    page.section(f"Failed videos ({len(failures)})", "failures")
    page.table(["video", "reason"], [[v, why] for v, why in failures.items()] or [["(none)", ""]], name="failures")
    page.section("Spec", "spec")
    page.parts.append(f"<pre>{html.escape(json.dumps(store.spec.to_dict(), indent=2))}</pre>")
    page.data = {"kind": "store", "info": info, "failures": failures}
    return page
