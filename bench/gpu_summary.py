"""One table from the GPU check's figures (``bench/gpu_check.sh``): flow pairs/s, equality,
I3D RGB + flow snippets/s, end-to-end / model-only, GPU memory.

    python bench/gpu_summary.py flow.json extract.json [extract_vit.json] [vit_forward.json]

The transformer files are optional (a missing one is left out).
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
        out.append(("flow EPE mean, worst video (px)", f"{max(r['mean'] for r in equal):.4f}", f"{len(equal)} videos, target <= 0.15"))
        out.append(("flow EPE p95, worst video (px)", f"{max(r['p95'] for r in equal):.4f}", "target <= 0.5"))
        out.append(("I3D flow feature cosine, worst snippet", f"{min(min(r['cosines']) for r in equal):.5f}", "target >= 0.995"))
    for r in extract.get("throughput", []):
        where = f"{r['backbone']} {r['streams']}, {r['workers']} decoding worker(s)"
        out.append((f"{r['kind']}/s end-to-end, {where}", f"{r['end_to_end_per_s']:.2f}", f"model-only {r['model_only_per_s']:.2f}"))
        out.append((f"end-to-end / model-only, {where}", f"{r['ratio']:.2f}",
                    "flow computed inside end-to-end" if "flow" in r["streams"] else "decoding inside end-to-end, target >= 0.85"))
        if r.get("peak_gpu_gib") is not None and r["workers"] == 1:
            out.append((f"peak GPU memory, {r['backbone']} {r['streams']}", f"{r['peak_gpu_gib']:.1f} GiB", "torch.cuda.max_memory_allocated"))
    for r in (forward or {}).get("forward", []):
        out.append((f"transformers / fsv forward, {r['backbone']} ({r['precision']})", f"{r['ratio']:.2f}",
                    f"fsv {r['fsv_ms']:.1f} ms, transformers {r['reference_ms']:.1f} ms per batch of {r['batch']}; target >= 1.0"))
    return out


def _optional(path: str | None) -> dict:
    return json.loads(Path(path).read_text()) if path and Path(path).is_file() else {}


def main() -> None:
    flow, extract = (json.loads(Path(p).read_text()) for p in sys.argv[1:3])
    vit, forward = (_optional(p) for p in (sys.argv[3:4] or [None]) + (sys.argv[4:5] or [None]))
    extract = {"throughput": extract.get("throughput", []) + vit.get("throughput", [])}
    table = Table(title="GPU check: flow and two-stream extraction")
    for col in ("measure", "value", "note"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for row in rows(flow, extract, forward):
        table.add_row(*row)
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
