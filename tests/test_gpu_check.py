"""bench/gpu_check.sh, the prepared GPU check, runs its steps on the CPU at reduced sizes (no GPU here):
the flow equality table, the two-stream extraction table, the transformer backbones' extraction and forward
comparison, and the summary built from their figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    not hasattr(pytest.importorskip("cv2"), "optflow"), reason="needs OpenCV contrib (the TV-L1 reference)"
)
def test_gpu_check_runs_on_the_cpu_and_summarises(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    proc = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    flow = json.loads((tmp_path / "flow.json").read_text())
    assert flow["equality"] and all(
        r["mean"] <= 0.15 and r["p95"] <= 0.5 and min(r["cosines"]) >= 0.995 for r in flow["equality"]
    )
    rows = json.loads((tmp_path / "extract.json").read_text())["throughput"]
    assert {r["workers"] for r in rows} == {0, 1} and all(
        r["streams"].startswith("rgb+flow") and r["end_to_end_per_s"] > 0 for r in rows
    )
    # end to end runs the same batches as model-only plus decoding and flow: it cannot be much faster
    assert all(0.05 < r["ratio"] < 1.5 for r in rows), rows
    summary = (tmp_path / "summary.txt").read_text()
    for measure in ("flow EPE mean", "I3D flow feature cosine", "snippets/s end-to-end", "end-to-end / model-only"):
        assert measure in summary, summary


def test_gpu_check_transformers_part_runs_on_the_cpu(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="the forward comparison needs the hf extra")
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    proc = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--cpu", "transformers"],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    vit = json.loads((tmp_path / "extract_vit.json").read_text())["throughput"]
    assert {r["backbone"] for r in vit} == {"clip-vit-b32"} and all(
        r["end_to_end_per_s"] > 0 and 0.05 < r["ratio"] < 1.5 for r in vit
    )
    forward = json.loads((tmp_path / "vit_forward.json").read_text())["forward"]
    assert [r["backbone"] for r in forward] == ["clip-vit-b32"] and forward[0]["max_rel_diff"] < 1e-5
    summary = (tmp_path / "summary_transformers.txt").read_text()
    for measure in ("frames/s end-to-end, clip-vit-b32", "transformers / fsv forward, clip-vit-b32"):
        assert measure in summary, summary
