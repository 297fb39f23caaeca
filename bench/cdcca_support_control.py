"""Does a trained CDC-CA follow its supports? The support-control benchmark over a family of
distributions, through the CLI, beside a baseline that uses the supports trivially.

Synthetic untrimmed videos (``fsv.heads.data.synthetic_loc``) in which every video holds instances of two
classes; a group of classes appears only in the test videos. Each cell of the family
(:data:`~fsv.heads.data.synthetic_loc.SUPPORT_GRID`: class amplitude against the shared actionness,
constant or phased class patterns, white or drifting background, large or small datasets; and the
held-out cells of a second generator, :data:`~fsv.heads.data.synthetic_loc.HELD_OUT`) gets its own data
and three fixed episode files that differ only in their supports
(:func:`fsv.heads.data.synthetic_loc.write_support_control`): the episode class's own supports, the
supports of the *other* class in the query (the distractor) and those of a test class absent from
the query. The ground truth is always the episode class's instances: a head that only finds "an
action" scores the same on all three; one that follows its supports scores far higher with its own.

Every run is trained with ``fsv train-head HEAD`` (multi-instance queries, the cell's group as test
classes) and scored with ``fsv eval RUN --benchmark FILE``. Heads: ``cdcca`` and ``protomatch``
(the same proposals scored by the cosine to the supports' mean feature), so each cell says how much
the supports can decide; beside them a linear probe's cross-validated accuracy on the test classes'
instances (chance 1/6), how much class information the features hold.

    .venv/bin/python bench/cdcca_support_control.py [--out DIR] [--cells all|hard|held-out|NAME ...]
        [--heads cdcca protomatch] [--shots 1 5] [--variants full c0 ...] [--set KEY=VALUE ...]
        [--jobs 2 --threads 1] [--diagnose]

Variants are the paper's ablations (Tables 2 and 3) as ``--set`` values (CDC-CA only). Rows are
appended to ``OUT/results.jsonl`` as they finish and a rerun skips the rows already there (a row is
keyed by cell, head, variant, shot and the extra settings), so the grid can be extended piece by
piece. Prints a table of mAP@0.5 (%) per cell, head, variant and shot, with the margins and the
random-proposal baseline. ``--diagnose`` adds to each full CDC-CA row how the run reads its own
supports (:func:`diagnose`). Two runs at a time on one thread each keep a 2-core machine busy; two
threads each on top of that would oversubscribe it (each run took several times as long).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from fsv.heads.data.synthetic_loc import (
    CONTROLS,
    HELD_OUT,
    SUPPORT_GRID,
    LocSyntheticConfig,
    write_support_control,
    write_synthetic_localization,
)
from fsv.pipeline.manifests import Manifest
from fsv.pipeline.store import FeatureStore

#: Training settings (the synthetic scale: snippets of 0.5 s, a few minutes of CPU per run).
TRAIN = [
    "--set",
    "mode=multi",
    "--set",
    "frame_fps=2",
    "--set",
    "lr=1e-3",
    "--set",
    "train_steps=1500",
    "--set",
    "val_every=500",
    "--set",
    "val_episodes=40",
    "--set",
    "num_pseudo_classes=16",
    "--set",
    "head_args.d=128",
    "--set",
    "head_args.proposal_hidden=128",
]
#: What each head reads of TRAIN (protomatch has no CDC-CA layers and no auxiliary module).
HEAD_KEYS = {
    "cdcca": None,
    "protomatch": ("mode", "frame_fps", "lr", "train_steps", "val_every", "val_episodes", "head_args.proposal_hidden"),
}
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
#: The hard cells: class amplitude at most the shared actionness, phased class patterns.
HARD = [name for name, cfg in SUPPORT_GRID.items() if cfg.amplitude <= 1.0 and cfg.phases > 1]
FSV = [sys.executable, "-m", "fsv"]


def cells_named(names: list[str]) -> dict[str, LocSyntheticConfig]:
    family = {**SUPPORT_GRID, **HELD_OUT}
    out: dict[str, LocSyntheticConfig] = {}
    for name in names:
        group = {"all": list(SUPPORT_GRID), "hard": HARD, "held-out": list(HELD_OUT)}.get(name, [name])
        for cell in group:
            if cell not in family:
                raise SystemExit(f"unknown cell {cell!r}; cells: {', '.join(family)} (or all, hard, held-out)")
            out[cell] = family[cell]
    return out


def training_args(head: str) -> list[str]:
    keys = HEAD_KEYS[head]
    pairs = [TRAIN[k + 1] for k in range(0, len(TRAIN), 2)]
    return [a for p in pairs if keys is None or p.split("=")[0] in keys for a in ("--set", p)]


def fsv(*args: str, threads: int) -> str:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([*FSV, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"fsv {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def probe_accuracy(manifest: Manifest, store: FeatureStore, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a linear probe (multinomial logistic regression, L2 1e-3, L-BFGS)
    on the mean features of the test videos' instances, labelled by class (chance: one over the
    number of test classes): how much class information there is for supports to match."""
    feats, labels = [], []
    for r in manifest:
        if r.split != "test":
            continue
        x = store.get(r.video_id).astype(np.float32)
        step = r.duration / len(x)
        for s in r.segments:
            feats.append(x[int(s.start / step) : max(int(round(s.end / step)), int(s.start / step) + 1)].mean(0))
            labels.append(s.label)
    classes = sorted(set(labels))
    x = torch.from_numpy(np.stack(feats))
    y = torch.tensor([classes.index(label) for label in labels])
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    correct = 0
    for k in range(folds):
        test = order[k::folds]
        train = order[torch.isin(order, test, invert=True)]
        mean, std = x[train].mean(0), x[train].std(0) + 1e-6
        w = torch.zeros(x.shape[1], len(classes), requires_grad=True)
        b = torch.zeros(len(classes), requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy((x[train] - mean) / std @ w + b, y[train]) + 1e-3 * w.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            correct += int((((x[test] - mean) / std @ w + b).argmax(1) == y[test]).sum())
    return correct / len(y)


def prepare(out: Path, cell: str, cfg: LocSyntheticConfig) -> dict[str, object]:
    """The cell's data, episode files and probe accuracy (written once, then read)."""
    folder = out / "cells" / cell
    meta = folder / "cell.json"
    if meta.is_file():
        return json.loads(meta.read_text())
    manifest, store = write_synthetic_localization(folder / "data", cfg)
    files = write_support_control(folder / "episodes", manifest)
    info = {
        "cell": cell,
        "store": str(folder / "data" / "store.zarr"),
        "manifest": str(folder / "data" / "manifest.jsonl"),
        "files": {c: str(f) for c, f in files.items()},
        "probe": probe_accuracy(manifest, store),
    }
    meta.write_text(json.dumps(info))
    return info


def run_one(
    out: Path,
    info: dict,
    head: str,
    variant: str,
    shot: int,
    extra: list[str],
    device: str,
    threads: int,
    diagnosed: bool,
) -> dict:
    tag = "-".join(s.replace("head_args.", "").replace("=", "") for s in extra[1::2])
    run = out / "runs" / info["cell"] / (f"{head}-{variant}-{shot}shot" + (f"-{tag}" if tag else ""))
    t0 = time.perf_counter()
    fsv(
        "train-head",
        head,
        "--store",
        info["store"],
        "--manifest",
        info["manifest"],
        "--out",
        str(run),
        "--shot",
        str(shot),
        "--device",
        device,
        "--set",
        f"class_split={info['files']['own']}",
        *training_args(head),
        *VARIANTS[variant],
        *extra,
        threads=threads,
    )
    train_s = time.perf_counter() - t0
    scores = {
        c: json.loads(
            fsv("eval", str(run), "--benchmark", info["files"][c], "--json", "--device", device, threads=threads)
        )
        for c in CONTROLS
    }
    row = {
        "cell": info["cell"],
        "head": head,
        "variant": variant,
        "shot": shot,
        "sets": extra[1::2],
        "train_s": round(train_s, 1),
        "random": scores["own"]["random_proposals"]["map"]["0.5"],
        **{c: scores[c]["map"]["0.5"] for c in CONTROLS},
        "episodes": scores["own"].get("episodes"),
        "probe": info["probe"],
    }
    if diagnosed and head == "cdcca" and variant == "full":
        torch.set_num_threads(threads)
        row["diagnosis"] = diagnose(run, info["files"]["own"])
    return row


@torch.no_grad()
def diagnose(run: Path, episodes: str, count: int = 60) -> dict[str, dict[str, float]]:
    """How a trained CDC-CA run reads its own supports, on the first ``count`` episodes of a
    benchmark file: per group of test proposals (tIoU >= 0.5 with the episode class's instances,
    >= 0.5 with the other class's and < 0.5 with the episode's, < 0.3 with both: ``own``,
    ``distractor``, ``background``), the mean attention mass it receives from the supports in
    StoQ (Eq. 7; 1 on average over the query's proposals) and the mean probability of "common
    action". A head that follows its supports gives ``own`` more of both than ``distractor``."""
    from fsv.heads.models.cdcca import cross_correlation, temporal_roi_pool
    from fsv.heads.models.proposals import segment_iou
    from fsv.heads.data.common_episodes import episode_tensors
    from fsv.heads.engine.runner import load_best
    from fsv.heads.tasks.common import COMMON

    cfg, source = COMMON.load(run)
    manifest, stores = source.open()
    objective = COMMON.objective(cfg, manifest, stores, run / "cache")
    head = load_best(run, objective.build_head(), torch.device("cpu"))
    head.eval()
    sums: dict[str, dict[str, list[float]]] = {g: {"mass": [], "p": []} for g in ("own", "distractor", "background")}
    for ep in objective.fixed_episodes("test", episodes)[:count]:
        others = [(i.start, i.end) for i in objective.by_video.get(ep.video, []) if i.label != ep.label]
        t = episode_tensors(objective.bank, ep, head.num_snippets, others=others, standardize=objective.standardize)
        proposals = head.proposal_subnet.windowed(t.query, head.post_nms_top)
        x_q, x_s = head.cdc.encode(temporal_roi_pool(t.query, proposals, head.roi_pool), t.supports)
        y_s = head.cdc.dynamics(head.cdc.qtos(x_q, x_s)).reshape(-1, x_q.shape[1])
        mass = cross_correlation(y_s, x_q, head.cdc.w_sq).softmax(dim=-1).sum(dim=0) * len(x_q) / len(y_s)
        p = head.classifier["cls"](head.cdc.stoq(y_s.reshape(t.supports.shape[0], -1, x_q.shape[1]), x_q)).softmax(
            dim=-1
        )[:, 1]
        own = segment_iou(proposals, t.gt).max(dim=1).values
        dis = (
            segment_iou(proposals, t.distractors).max(dim=1).values
            if len(t.distractors)
            else torch.zeros(len(proposals))
        )
        for group, mask in (
            ("own", own >= 0.5),
            ("distractor", (dis >= 0.5) & (own < 0.5)),
            ("background", (own < 0.3) & (dis < 0.3)),
        ):
            if bool(mask.any()):
                sums[group]["mass"].append(float(mass[mask].mean()))
                sums[group]["p"].append(float(p[mask].mean()))
    return {
        g: {k: round(float(np.mean(v)), 3) for k, v in d.items()} for g, d in sums.items() if d["mass"]
    }  # groups with proposals


def key(row: dict) -> tuple:
    return row["cell"], row["head"], row["variant"], row["shot"], tuple(row["sets"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench-out/cdcca-support-control"))
    ap.add_argument(
        "--cells", nargs="+", default=["a1.5-const-white-large"], help="cell names, or all / hard / held-out"
    )
    ap.add_argument("--heads", nargs="+", default=["cdcca", "protomatch"], choices=list(HEAD_KEYS))
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--variants", nargs="+", default=["full"], choices=list(VARIANTS))
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra training settings for every CDC-CA run",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time")
    ap.add_argument("--threads", type=int, default=None, help="threads of each run (default: cores / jobs)")
    ap.add_argument(
        "--diagnose",
        action="store_true",
        help="also measure how each full CDC-CA run reads its supports (attention mass and "
        "probability per proposal group, on the own-support episodes)",
    )
    args = ap.parse_args()
    cells = cells_named(args.cells)
    results = args.out / "results.jsonl"
    args.out.mkdir(parents=True, exist_ok=True)
    done = {key(r): r for r in map(json.loads, results.read_text().splitlines())} if results.is_file() else {}
    infos = {cell: prepare(args.out, cell, cfg) for cell, cfg in cells.items()}
    extra = [a for s in args.sets for a in ("--set", s)]
    todo = []
    for cell in cells:
        for head in args.heads:
            for variant in args.variants if head == "cdcca" else ["full"]:
                for shot in args.shots:
                    sets = extra if head == "cdcca" else []
                    if (cell, head, variant, shot, tuple(sets[1::2])) not in done:
                        todo.append((cell, head, variant, shot, sets))
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)

    def work(item: tuple) -> dict:
        cell, head, variant, shot, sets = item
        row = run_one(args.out, infos[cell], head, variant, shot, sets, args.device, threads, args.diagnose)
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        return row

    with ThreadPoolExecutor(args.jobs) as pool:
        for row in pool.map(work, todo):
            done[key(row)] = row
    wanted = [
        r
        for r in done.values()
        if r["cell"] in cells
        and r["head"] in args.heads
        and (r["head"] != "cdcca" or (r["variant"] in args.variants and r["sets"] == extra[1::2]))
        and r["shot"] in args.shots
    ]
    print_table(
        sorted(
            wanted, key=lambda r: (list(cells).index(r["cell"]), args.heads.index(r["head"]), r["variant"], r["shot"])
        )
    )


def print_table(rows: list[dict]) -> None:
    if not rows:
        return
    print(
        f"\nmAP@0.5 (%) on {rows[0]['episodes']} fixed multi-instance test episodes of unseen classes per cell, per support set"
    )
    print(
        "| cell | probe | head | variant | shot | own | distractor | absent | own - distractor | own - absent | random | train s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        own, dis, ab = (100 * r[c] for c in CONTROLS)
        print(
            f"| {r['cell']} | {100 * r['probe']:.0f} | {r['head']} | {r['variant']}{''.join(' ' + s for s in r['sets'])} | {r['shot']} | {own:.1f} | "
            f"{dis:.1f} | {ab:.1f} | {own - dis:+.1f} | {own - ab:+.1f} | {100 * r['random']:.1f} | {r['train_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
