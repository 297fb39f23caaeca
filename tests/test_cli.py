"""The command line itself: fast to start, shared options identical wherever they appear."""

from __future__ import annotations

import subprocess
import sys

import click
import typer.main

from fsv.cli import app
from fsv.cli_options import EXTRACT_OPTIONS, SCHEDULER_OPTIONS, TRAIN_OPTIONS


def test_the_cli_starts_without_torch() -> None:
    """`fsv --help` and usage errors must not pay for importing torch (seconds on a cold cache)."""
    code = "import sys, fsv.cli; print(sorted(m for m in ('torch', 'numpy', 'zarr') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def _params(*path: str) -> dict[str, click.Parameter]:
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return {p.name: p for p in cmd.params}


def test_shared_options_are_the_same_on_every_command() -> None:
    extract, submit = _params("extract"), _params("submit", "extract")
    train, submit_train = _params("train-head"), _params("submit", "train-head")
    for name in EXTRACT_OPTIONS:
        a, b = extract[name], submit[name]
        assert (a.opts, a.default, a.required, a.help) == (b.opts, b.default, b.required, b.help), name
    for name in TRAIN_OPTIONS:
        a, b = train[name], submit_train[name]
        assert (a.opts, a.default, a.help) == (b.opts, b.default, b.help), name
    assert set(SCHEDULER_OPTIONS) <= set(submit) & set(submit_train)
    assert submit["time_min"].default == 240 and submit_train["time_min"].default == 720
    assert extract["backbone"].required and extract["workers"].default == 1 and extract["flow"].default == "tvl1"
