"""Generic fixtures shared by fsv's tests: the reference data folder and tiny real videos."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: The longest test files, longest first (measured in a 2-worker run on a quiet 2-core machine:
#: SLURM ~330 s, extraction ~240 s, faults ~200 s, the rest 30-130 s each). They are collected first,
#: and ``make test`` keeps that order (``--no-loadscope-reorder``), so that a parallel run (one file
#: per worker at a time) starts them at once instead of leaving one of them for the end.
LONGEST_FIRST = (
    "test_slurm.py",
    "test_extract_pipeline.py",
    "test_faults.py",
    "test_heads_cli.py",
    "test_clip_heads_cli.py",
    "test_demo_extract.py",
    "test_synthetic_benchmark.py",
    "test_localization_cli.py",
    "test_localization_synthetic.py",
    "test_report.py",
    "test_run_defaults.py",
    "test_tvl1_torch.py",
    "test_gpu_check.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker (and every ``fsv`` process a test starts) gets its share of
    the cores as torch/OpenMP threads: two workers each running two threads on two cores spend their
    time waiting on each other (the TA2N order-benchmark test took 378 s that way, in a run that
    shared the machine with a benchmark, against 125 s serially)."""
    import os

    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(workers))))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Collect the files of :data:`LONGEST_FIRST` first, in that order (stable otherwise)."""
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` next to the project; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data {SHARED_DATA} is absent")
    return SHARED_DATA


def write_video(
    path: str | Path,
    n_frames: int = 16,
    fps: float = 25,
    size: tuple[int, int] = (64, 48),
    codec: str = "mpeg4",
    seed: int = 0,
) -> Path:
    """Encode ``n_frames`` coloured, noisy RGB frames of ``size`` (width, height) at ``fps`` into ``path``."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = fps if isinstance(fps, int) else Fraction(str(fps)).limit_denominator(100000)
    width, height = size
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n_frames):
            img = np.empty((height, width, 3), dtype=np.uint8)
            img[...] = ((i * 37) % 256, (i * 91 + 64) % 256, (255 - i * 13) % 256)
            img ^= rng.integers(0, 32, img.shape, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def make_video():
    """``make_video(path, n_frames=16, fps=25, size=(64, 48), codec="mpeg4")`` writes a small real video."""
    pytest.importorskip("av")
    return write_video


SLURM_SH = Path(__file__).resolve().parent / "cluster" / "slurm.sh"


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """A real single-node SLURM cluster for the whole run (``tests/cluster/slurm.sh``): used when
    one answers, else started (installing Debian's packages as root) and stopped at the end.
    Skipped when it cannot be started here, unless ``FSV_REQUIRE_SLURM=1`` (set by ``.ci/run``)
    makes that a failure. Returns the ``SLURM_CONF`` path, also exported to the environment."""
    import os
    import subprocess

    conf = (
        subprocess.run(["bash", str(SLURM_SH), "env"], capture_output=True, text=True, check=True)
        .stdout.strip()
        .split("=", 1)[1]
    )
    started = False
    if subprocess.run(["bash", str(SLURM_SH), "status"], capture_output=True).returncode != 0:
        up = subprocess.run(["bash", str(SLURM_SH), "up"], capture_output=True, text=True, timeout=900)
        if up.returncode != 0:
            message = f"no SLURM cluster could be started: {up.stderr[-3000:]}"
            if os.environ.get("FSV_REQUIRE_SLURM") == "1":
                pytest.fail(message)
            pytest.skip(message)
        started = True
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous
    if started:
        subprocess.run(["bash", str(SLURM_SH), "down"], capture_output=True, timeout=300)
