"""One table from the GPU check's figures (``bench/gpu_check.sh``): flow pairs/s, equality,
I3D RGB + flow snippets/s, end-to-end / model-only, GPU memory.

    python bench/gpu_summary.py flow.json extract.json
    python bench/gpu_summary.py extract_vit.json vit_forward.json

Each file is read for what it holds (flow's ``speed`` / ``equality``, extraction ``throughput``,
``forward`` comparisons); a missing file is left out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table


def rows(flow: dict, extract: dict, forward: dict | None = None) -> list[tuple[str, str, str]]:
    """``(measure, value, note)`` rows of the summary."""
    out: list[tuple[str, str, str]] = []
    for label, speed in flow.get("speed", {}).items():
        for method, where, rate, note in speed:
            out.append((f"flow pairs/s, {label}", f"{rate:.2f}", f"{method} on {where}; {note}"))
    equal = flow.get("equality", [])
    if equal:
        out.append(
            (
                "flow EPE mean, worst video (px)",
                f"{max(r['mean'] for r in equal):.4f}",
                f"{len(equal)} videos, target <= 0.15",
            )
        )
        out.append(("flow EPE p95, worst video (px)", f"{max(r['p95'] for r in equal):.4f}", "target <= 0.5"))
        out.append(
            (
                "I3D flow feature cosine, worst snippet",
                f"{min(min(r['cosines']) for r in equal):.5f}",
                "target >= 0.995",
            )
        )
    for r in extract.get("throughput", []):
        where = f"{r['backbone']} {r['streams']}, {r['workers']} decoding worker(s)"
        out.append(
            (
                f"{r['kind']}/s end-to-end, {where}",
                f"{r['end_to_end_per_s']:.2f}",
                f"model-only {r['model_only_per_s']:.2f}",
            )
        )
        out.append(
            (
                f"end-to-end / model-only, {where}",
                f"{r['ratio']:.2f}",
                "flow computed inside end-to-end"
                if "flow" in r["streams"]
                else "decoding inside end-to-end, target >= 0.85",
            )
        )
        if r.get("peak_gpu_gib") is not None and r["workers"] == 1:
            out.append(
                (
                    f"peak GPU memory, {r['backbone']} {r['streams']}",
                    f"{r['peak_gpu_gib']:.1f} GiB",
                    "torch.cuda.max_memory_allocated",
                )
            )
    for r in (forward or {}).get("forward", []):
        out.append(
            (
                f"transformers / fsv forward, {r['backbone']} ({r['precision']})",
                f"{r['ratio']:.2f}",
                f"fsv {r['fsv_ms']:.1f} ms, transformers {r['reference_ms']:.1f} ms per batch of {r['batch']}; target >= 1.0",
            )
        )
    return out


def main() -> None:
    merged: dict = {}
    for path in map(Path, sys.argv[1:]):
        if path.is_file():
            for key, value in json.loads(path.read_text()).items():
                merged[key] = (
                    {**merged.get(key, {}), **value} if isinstance(value, dict) else merged.get(key, []) + value
                )
    flow = {k: merged[k] for k in ("speed", "equality") if k in merged}
    extract = {"throughput": merged.get("throughput", [])}
    forward = {"forward": merged.get("forward", [])}
    table = Table(title="GPU check: " + ", ".join(Path(p).stem for p in sys.argv[1:]))
    for col in ("measure", "value", "note"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for row in rows(flow, extract, forward):
        table.add_row(*row)
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
