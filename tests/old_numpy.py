"""Load exported files in an old NumPy's own environment, as the anchors' pinned code does.

``make setup`` makes ``.venv/old-numpy``: a venv with NumPy 1.23.5 and h5py 3.8 (the last NumPy that
the W-TALC lineage's and ActionFormer's pins admit and that installs on this Python).
:func:`old_numpy_reads` runs ``old_numpy_reader.py`` there on the files and compares what it loads
with the arrays the store holds.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
OLD_PYTHON = ROOT / ".venv" / "old-numpy" / "bin" / "python"
READER = Path(__file__).parent / "old_numpy_reader.py"


def old_numpy_reads(tmp: Path, checks: list[tuple[str, Path, str | None, np.ndarray | list[np.ndarray]]]) -> None:
    """Each check is ``(kind, file, key, expected)``: ``npy`` (``np.load``), ``npy-pickle`` (an
    object array, loaded with ``allow_pickle`` both with ``encoding="bytes"`` and the default; its
    expected value is the list of its arrays) or ``h5`` (dataset ``key`` of an HDF5 file)."""
    if not OLD_PYTHON.is_file():
        if os.environ.get("FSV_REQUIRE_REFERENCES"):
            pytest.fail(f"{OLD_PYTHON} is missing: make setup makes it")
        pytest.skip(f"{OLD_PYTHON} is missing (make setup makes it)")
    tmp.mkdir(parents=True, exist_ok=True)
    arrays, spec = {}, []
    for i, (kind, path, key, expected) in enumerate(checks):
        items = expected if kind == "npy-pickle" else [expected]
        for j, x in enumerate(items):
            arrays[f"c{i}_{j}"] = np.asarray(x)
        spec.append({"kind": kind, "path": str(path), "key": key, "expected": [f"c{i}_{j}" for j in range(len(items))]})
    np.savez(tmp / "expected.npz", **arrays)
    (tmp / "checks.json").write_text(json.dumps({"expected": str(tmp / "expected.npz"), "checks": spec}))
    proc = subprocess.run(
        [str(OLD_PYTHON), str(READER), str(tmp / "checks.json")], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"numpy 1.23.5: {len(checks)} files read" in proc.stdout, proc.stdout
