"""Does a trained CDC-CA follow its supports? The support-control benchmark, through the CLI.

Synthetic untrimmed videos (``fsv.data.synthetic_loc``) in which every video holds instances of two
classes; a group of classes appears only in the test videos. Each variant is trained with
``fsv train-head cdcca`` (multi-instance queries, the group as test classes) and scored with
``fsv eval RUN --benchmark FILE`` on three episode files that differ only in their supports
(:func:`fsv.data.synthetic_loc.write_support_control`): the episode class's own supports, the
supports of the *other* class in the query (the distractor) and those of a test class absent from
the query. The ground truth is always the episode class's instances: a head that only finds "an
action" scores the same on all three; one that follows its supports scores far higher with its own.

    .venv/bin/python bench/cdcca_support_control.py [--out DIR] [--shots 1 5] [--variants full c0 ...] [--set KEY=VALUE ...]

Variants are the paper's ablations (Tables 2 and 3) as ``--set`` values; prints a table of mAP@0.5
(%) per variant and shot, with the random-proposal baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fsv.data.synthetic_loc import CONTROLS, SUPPORT_CONTROL, write_support_control, write_synthetic_localization

#: Training settings (the synthetic scale: snippets of 0.5 s, a few minutes of CPU per run).
TRAIN = ["--set", "mode=multi", "--set", "frame_fps=2", "--set", "lr=1e-3", "--set", "train_steps=1500", "--set", "val_every=500",
         "--set", "val_episodes=40", "--set", "num_pseudo_classes=16", "--set", "head_args.d=128", "--set", "head_args.proposal_hidden=128"]
#: The paper's ablations (Table 2: C-0 has neither QtoS nor Dynamics; Table 3: R-0 neither the ranking
#: loss nor the auxiliary relational module, R-1 / R-2 one of them), plus StoQ, without which the
#: classifier never sees the supports.
VARIANTS: dict[str, list[str]] = {
    "full": [],
    "c0": ["--set", "head_args.qtos=false", "--set", "head_args.dynamics=false"],
    "no-qtos": ["--set", "head_args.qtos=false"],
    "no-dynamics": ["--set", "head_args.dynamics=false"],
    "no-stoq": ["--set", "head_args.stoq=false"],
    "no-rank": ["--set", "head_args.rank_weight=0"],
    "no-aux": ["--set", "head_args.aux=false"],
    "r0": ["--set", "head_args.rank_weight=0", "--set", "head_args.aux=false"],
}
FSV = [sys.executable, "-m", "fsv"]


def fsv(*args: str) -> str:
    proc = subprocess.run([*FSV, *args], capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"fsv {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench-out/cdcca-support-control"))
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="extra training settings for every run")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    manifest, _ = write_synthetic_localization(args.out / "data", SUPPORT_CONTROL)
    files = write_support_control(args.out / "episodes", manifest)
    store, manifest_file = args.out / "data" / "store.zarr", args.out / "data" / "manifest.jsonl"
    extra = [a for s in args.sets for a in ("--set", s)]
    rows = []
    for variant in args.variants:
        for shot in args.shots:
            run = args.out / "runs" / f"{variant}-{shot}shot"
            t0 = time.perf_counter()
            fsv("train-head", "cdcca", "--store", str(store), "--manifest", str(manifest_file), "--out", str(run), "--shot", str(shot),
                "--device", args.device, "--set", f"class_split={files['own']}", *TRAIN, *VARIANTS[variant], *extra)
            train_s = time.perf_counter() - t0
            scores = {c: json.loads(fsv("eval", str(run), "--benchmark", str(files[c]), "--json", "--device", args.device)) for c in CONTROLS}
            row = {"variant": variant, "shot": shot, "train_s": round(train_s, 1), "random": scores["own"]["random_proposals"]["map"]["0.5"],
                   **{c: scores[c]["map"]["0.5"] for c in CONTROLS}, "episodes": scores["own"].get("episodes")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nmAP@0.5 (%) on {rows[0]['episodes']} fixed multi-instance test episodes of unseen classes, per support set")
    print("| variant | shot | own | distractor | absent | own - distractor | own - absent | random | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        own, dis, ab = (100 * r[c] for c in CONTROLS)
        print(f"| {r['variant']} | {r['shot']} | {own:.1f} | {dis:.1f} | {ab:.1f} | {own - dis:+.1f} | {own - ab:+.1f} | {100 * r['random']:.1f} | {r['train_s']:.0f} |")


if __name__ == "__main__":
    main()
