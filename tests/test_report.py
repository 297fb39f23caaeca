"""``fsv report`` and ``fsv store info --html`` pages, loaded in a real headless browser (Debian's
chromium, driven by Playwright; the fixture installs chromium when it is absent and this is root):
each page loads without errors or requests beyond the file, every image renders (its screenshot
region is not blank), and the numbers on the page equal ``fsv eval --json``."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fsv.heads.data.synthetic import SyntheticConfig, write_synthetic
from fsv.heads.data.synthetic_loc import write_synthetic_localization

FSV = [sys.executable, "-m", "fsv"]
CPU = ["--device", "cpu"]
REQUIRED = os.environ.get("FSV_REQUIRE_BROWSER") == "1"  # .ci/run: a browser that cannot start fails the run


def fsv(*args: str | Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([*FSV, *map(str, args)], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _missing(why: str) -> None:
    if REQUIRED:
        pytest.fail(why)
    pytest.skip(why)


def chromium() -> str:
    """Debian's chromium, installed with apt-get when absent (as root)."""
    path = shutil.which("chromium")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], capture_output=True, timeout=900
        )
        path = shutil.which("chromium")
    if path is None:
        _missing("no chromium (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    executable = chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser, path: Path) -> dict:
    """Load ``path``; assert no console error, page error or request beyond the file and its data
    URIs, and that every image decoded and renders non-blank; return the page's ``data-key`` numbers
    and embedded payload."""
    from PIL import Image

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"failed {r.url}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.resolve().as_uri(), wait_until="load")
    assert errors == [], errors
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    images = page.query_selector_all("img")
    assert images, "the page has no figure"
    for img in images:
        assert page.evaluate("i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0", img), img.get_attribute(
            "alt"
        )
        shot = np.asarray(Image.open(io.BytesIO(img.screenshot())).convert("L"), dtype=np.float64)
        assert shot.std() > 5 and (shot < 200).mean() > 0.005, f"blank figure: {img.get_attribute('alt')}"
    numbers = {
        c.get_attribute("data-key"): float(c.get_attribute("data-value"))
        for c in page.query_selector_all("td[data-key][data-value]")
    }
    payload = json.loads(page.evaluate("document.getElementById('fsv-data').textContent"))
    page.close()
    return {"numbers": numbers, "data": payload, "figures": len(images)}


@pytest.fixture(scope="module")
def recognition(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    out = tmp_path_factory.mktemp("report-rec")
    write_synthetic(out, SyntheticConfig(dim=32, videos_per_class=12))
    env = {**os.environ, "FSV_EPISODES": str(out / "episodes")}
    return out, env


def test_recognition_report_shows_what_fsv_eval_prints(
    browser, recognition: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    data, env = recognition
    run = tmp_path / "run"
    fsv(
        "train-head",
        "protonet",
        "--store",
        data / "store.zarr",
        "--manifest",
        data / "manifest.jsonl",
        "--out",
        run,
        "--shot",
        "1",
        "--set",
        "train_episodes=40",
        "--set",
        "val_every=20",
        "--set",
        "val_episodes=10",
        "--set",
        "test_episodes=60",
        "--set",
        "head_args.projection_dim=8",
        *CPU,
        env=env,
    )
    fsv("report", run, "--out", tmp_path / "run.html", *CPU, env=env)
    page = open_page(browser, tmp_path / "run.html")
    table = json.loads(fsv("eval", run, "--json", *CPU, env=env))
    assert page["numbers"]["accuracy"] == pytest.approx(table["accuracy"]) and page["numbers"]["ci95"] == pytest.approx(
        table["ci95"]
    )
    assert page["numbers"]["episodes"] == table["episodes"] == 60
    assert page["numbers"]["chance"] == pytest.approx(1 / table["way"])
    confusion = np.array(page["data"]["confusion"])
    query = json.loads((run / "config.json").read_text())["config"]["query"]
    assert confusion.sum() == 60 * table["way"] * query  # every query of every test episode
    assert np.trace(confusion) / confusion.sum() == pytest.approx(table["accuracy"])  # equal query counts per episode
    assert page["figures"] == 3  # per-class bars, confusion matrix, training curves
    assert page["data"]["provenance"]["overrides"]["train_episodes"] == 40


def test_sweep_report_shows_each_seed_and_their_mean(
    browser, recognition: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    data, env = recognition
    sweep = tmp_path / "sweep"
    fsv(
        "submit",
        "train-head",
        "protonet",
        "--store",
        data / "store.zarr",
        "--manifest",
        data / "manifest.jsonl",
        "--out",
        sweep,
        "--seeds",
        "2",
        "--executor",
        "local",
        "--folder",
        tmp_path / "jobs",
        "--shot",
        "1",
        "--set",
        "train_episodes=20",
        "--set",
        "val_every=10",
        "--set",
        "val_episodes=10",
        "--set",
        "test_episodes=30",
        "--set",
        "head_args.projection_dim=8",
        *CPU,
        env=env,
    )
    fsv("report", sweep, "--out", tmp_path / "sweep.html", *CPU, env=env)
    page = open_page(browser, tmp_path / "sweep.html")
    table = json.loads(fsv("eval", sweep, "--json", *CPU, env=env))
    assert page["numbers"]["accuracy"] == pytest.approx(table["accuracy"])
    for k, r in enumerate(table["runs"]):
        assert page["numbers"][f"seed{k}:accuracy"] == pytest.approx(r["accuracy"])
    assert page["figures"] == 2  # each seed's curves


LOC_RUNS = {
    "vqknet": ["--set", "train_steps=150", "--set", "val_every=75", "--set", "num_segments=64", "--set", "lr=5e-4"],
    "cdcca": [
        "--shot",
        "1",
        "--set",
        "train_steps=4",
        "--set",
        "val_every=4",
        "--set",
        "val_episodes=2",
        "--set",
        "test_episodes=6",
        "--set",
        "frame_fps=2",
        "--set",
        "num_pseudo_classes=2",
        "--set",
        "head_args.d=32",
        "--set",
        "head_args.proposal_hidden=32",
    ],
}


@pytest.mark.parametrize("head", sorted(LOC_RUNS))
def test_localization_report_has_per_class_ap_and_timelines(browser, tmp_path: Path, head: str) -> None:
    write_synthetic_localization(tmp_path)
    run = tmp_path / "run"
    fsv(
        "train-head",
        head,
        "--store",
        tmp_path / "store.zarr",
        "--manifest",
        tmp_path / "manifest.jsonl",
        "--out",
        run,
        *LOC_RUNS[head],
        *CPU,
    )
    fsv("report", run, "--out", tmp_path / "loc.html", "--videos", "3", *CPU)
    page = open_page(browser, tmp_path / "loc.html")
    table = json.loads(fsv("eval", run, "--json", *CPU))
    for k, v in table["map"].items():
        assert page["numbers"][f"map:{k}"] == pytest.approx(v)
        assert page["numbers"][f"random:map:{k}"] == pytest.approx(table["random_proposals"]["map"][k])
    assert page["numbers"]["average_map"] == pytest.approx(table["average_map"])
    per_class = page["data"]["per_class_ap"]
    if head == "vqknet":  # mAP is the mean of the classes' APs
        assert np.mean([aps for aps in per_class.values()], axis=0) == pytest.approx(
            [table["map"][k] for k in table["map"]]
        )
    else:  # CDC-CA's mAP pools its episodes as one class; the page scores each episode class on its own
        from fsv.pipeline.manifests import Manifest

        assert len(per_class) > 1 and set(per_class) <= set(Manifest.read(tmp_path / "manifest.jsonl").classes)
    assert len(page["data"]["videos"]) == 3 and page["figures"] == 1 + 3 + 1  # per-class AP, 3 timelines, curves
    assert all(page["data"]["detections_shown"][v] > 0 for v in page["data"]["videos"]), page["data"][
        "detections_shown"
    ]
    assert page["data"][
        "actionness_shown"
    ]  # VQK-Net's foreground attention, CDC-CA's proposal actionness, under the detections


def test_store_page_lists_videos_steps_and_failures(browser, tmp_path: Path) -> None:
    from fsv.pipeline.manifests import Manifest, VideoRecord

    src = tmp_path / "src"
    src.mkdir()
    for k, steps in enumerate((3, 7, 12)):
        np.save(src / f"v{k}.npy", np.random.default_rng(k).standard_normal((steps, 4096)).astype(np.float32))
    (src / "v3.npy").write_bytes(b"not an array")
    Manifest("mine", [VideoRecord(f"v{k}", f"v{k}.mp4", "a", "test") for k in range(4)], ["a"], "classification").write(
        tmp_path / "m.csv"
    )
    store = tmp_path / "store.zarr"
    proc = subprocess.run(
        [
            *FSV,
            "store",
            "import",
            str(src),
            "--store",
            str(store),
            "--manifest",
            str(tmp_path / "m.csv"),
            "--spec",
            "c3d-sports1m-fc6-16",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2 and "failed v3" in proc.stderr, proc.stdout + proc.stderr  # the others are imported
    fsv("store", "info", store, "--html", tmp_path / "store.html")
    page = open_page(browser, tmp_path / "store.html")
    info = json.loads(fsv("store", "info", store, "--json"))
    assert page["numbers"]["videos"] == info["videos"] == 3 and page["numbers"]["steps"] == info["steps"] == 22
    assert page["numbers"]["steps:max"] == 12 and page["numbers"]["failed"] == 1
    assert page["data"]["failures"] == info["failures"] and "v3.npy" in info["failures"]["v3"]
