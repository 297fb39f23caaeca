"""Check ``fsv score detections`` against the official ActivityNet detection evaluation on the same files.

The reference is ``ANETdetection`` from github.com/activitynet/ActivityNet, ``Evaluation/eval_detection.py``
and ``Evaluation/utils.py`` (pass the folder holding both as ``--official``). That code is Python 2; it is
run here unmodified in substance, through a mechanical Python 3 port done at load time and listed in
:data:`PY3_PORT` (``print x`` -> ``print(x)``, ``iteritems`` -> ``items``, ``xrange`` -> ``range``,
``np.float`` -> ``np.float64``, ``urllib2`` not imported). ``check_status=False`` (no blocked-video list),
``get_blocked_videos`` is replaced by a function that fails if called (no network) and joblib's
``Parallel`` by a sequential loop (same results, no worker processes). ``--python2 PY`` also runs the
untouched files under a Python 2 interpreter (with numpy/pandas/joblib on ``--python2-path``); there the
order of videos is Python 2's dict hash order, so tied scores of different videos may rank differently.

Seeded random cases cover several classes, tied scores (within and across videos, small and large
classes), videos without ground truth, predictions on videos outside the subset or absent from the
database, classes without predictions, overlapping duplicates and duplicated ground truth, segments on an
integer grid (tIoU exactly on a threshold), zero-length segments and integer scores. For each case the
table shows max |Δ| over mAP per threshold, the average mAP and every per-class AP between fsv's
:func:`fsv.detections.score_files` (and, with ``--cli PY``, the ``fsv score detections --json`` command run
by that interpreter) and the official code. Exit status 1 when any |Δ| exceeds 1e-6.

pandas and joblib are not fsv dependencies; run this from a separate environment, e.g.::

    python3 -m venv /tmp/anetvenv && /tmp/anetvenv/bin/pip install numpy pandas joblib
    /tmp/anetvenv/bin/python bench/verify_anet_eval.py --official DIR [--cli .venv/bin/python]

``--write-golden tests/data/anet_eval_golden.json`` writes the small cases of ``tests/test_anet_parity.py``
with the official results (and the argsort orders of tied values, see that test).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fsv.detections import parse_tiou, score_files  # noqa: E402 (after the path insertion above)

TOLERANCE = 1e-6

# (pattern, replacement, what) applied to each official file, line by line; nothing else is changed
PY3_PORT: list[tuple[str, str, str]] = [
    (r"^(\s*)print (.*)$", r"\1print(\2)", "print statement -> print()"),
    (r"\.iteritems\(\)", ".items()", "dict.iteritems -> items"),
    (r"\bxrange\(", "range(", "xrange -> range"),
    (r"\bnp\.float\b(?!\d)", "np.float64", "np.float (removed in numpy 1.24) -> np.float64"),
    (r"^import urllib2\s*$", "urllib2 = None  # py3 port: no network", "urllib2 not imported"),
    (r"^from utils import", "from _anet_official_utils import", "sibling import"),
]


def _port(path: Path) -> tuple[str, dict[str, int]]:
    counts: dict[str, int] = {}
    lines = []
    for line in path.read_text().splitlines():
        for pattern, repl, what in PY3_PORT:
            line, n = re.subn(pattern, repl, line)
            if n:
                counts[what] = counts.get(what, 0) + n
        lines.append(line)
    return "\n".join(lines) + "\n", counts


def _no_network(*args: object, **kwargs: object) -> list:
    raise RuntimeError("get_blocked_videos called: the check runs with check_status=False and no network")


class _Sequential:
    """Stand-in for ``joblib.Parallel``: runs ``delayed`` calls in order, in this process."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __call__(self, jobs: object) -> list:
        return [f(*a, **k) for f, a, k in jobs]


def load_official(folder: Path, verbose: bool = False) -> types.ModuleType:
    """The official ``eval_detection`` module, ported to Python 3 as :data:`PY3_PORT` says."""
    modules = {}
    for name, filename in (
        ("_anet_official_utils", "utils.py"),
        ("_anet_official_eval_detection", "eval_detection.py"),
    ):
        source, counts = _port(folder / filename)
        if verbose:
            print(f"# {filename}: " + (", ".join(f"{what} x{n}" for what, n in counts.items()) or "unchanged"))
        module = types.ModuleType(name)
        module.__file__ = str(folder / filename)
        sys.modules[name] = module
        exec(compile(source, str(folder / filename), "exec"), module.__dict__)  # noqa: S102 -- the reference code under test, from --official
        modules[name] = module
    ed = modules["_anet_official_eval_detection"]
    ed.get_blocked_videos = _no_network
    modules["_anet_official_utils"].get_blocked_videos = _no_network
    ed.Parallel = _Sequential
    return ed


# ---------------------------------------------------------------------------------------------------
# cases


def _segment(rng: np.random.Generator, duration: float, grid: bool) -> list[float]:
    if grid:
        s = int(rng.integers(0, int(duration) - 1))
        return [float(s), float(min(int(duration), s + int(rng.integers(1, 8))))]
    s = float(rng.uniform(0, duration - 1))
    return [round(s, 3), round(min(duration, s + float(rng.uniform(0.5, duration / 3))), 3)]


def _jitter(rng: np.random.Generator, seg: list[float], scale: float, grid: bool) -> list[float]:
    if grid:
        d = rng.integers(-2, 3, 2)
        s, e = seg[0] + float(d[0]), seg[1] + float(d[1])
        return [s, e] if e > s else [s, s + 1.0]
    s, e = seg[0] + float(rng.normal(0, scale)), seg[1] + float(rng.normal(0, scale))
    return [round(s, 3), round(e, 3)] if e > s else [round(s, 3), round(s + 0.5, 3)]


def make_case(kind: str, seed: int, small: bool = False) -> dict:
    """One seeded case: ``{"name", "subset", "tiou", "gt": database, "pred": results}``."""
    rng = np.random.default_rng([seed, sum(map(ord, kind))])
    opts = {
        "basic": {"videos": 14, "classes": 5, "tiou": "0.5:0.95:0.05"},
        "ties": {"videos": 14, "classes": 4, "levels": 6, "tiou": "0.1:0.7:0.1"},
        "ties-large": {"videos": 80, "classes": 3, "levels": 5, "per_gt": 6, "fp": 25, "tiou": "0.5:0.95:0.05"},
        "no-gt-videos": {"videos": 10, "classes": 4, "empty_videos": 5, "absent_videos": 4, "tiou": "0.3,0.5,0.7"},
        "outside-subset": {"videos": 10, "classes": 4, "other_subset": 8, "tiou": "0.5:0.95:0.05"},
        "empty-class": {"videos": 12, "classes": 6, "silent_classes": 2, "tiou": "0.1:0.7:0.1"},
        "duplicates": {"videos": 10, "classes": 3, "per_gt": 6, "dup_gt": True, "levels": 8, "tiou": "0.5:0.95:0.05"},
        "grid": {"videos": 14, "classes": 3, "grid": True, "duration": 20.0, "tiou": "0.1:0.9:0.1"},
        "degenerate": {
            "videos": 10,
            "classes": 3,
            "grid": True,
            "duration": 12.0,
            "zero_length": True,
            "tiou": "0.1:0.7:0.1",
        },
        "int-scores": {"videos": 14, "classes": 4, "int_scores": True, "tiou": "0.5:0.95:0.05"},
    }[kind]
    if small:
        opts = {**opts, "videos": min(opts["videos"], 6), "fp": 3, "per_gt": min(opts.get("per_gt", 3), 3)}
        for key in ("empty_videos", "absent_videos", "other_subset"):
            if key in opts:
                opts[key] = 2
    grid, duration = opts.get("grid", False), opts.get("duration", 120.0)
    labels = [f"class{c}" for c in range(opts["classes"])]
    silent = set(labels[: opts.get("silent_classes", 0)])
    subset = "validation"
    database: dict[str, dict] = {}
    names = [f"v_{seed:02d}_{i:03d}" for i in range(opts["videos"])]
    for name in names:
        anns = []
        for _ in range(int(rng.integers(1, 5))):
            seg = _segment(rng, duration, grid)
            if opts.get("zero_length") and rng.random() < 0.4:
                seg = [seg[0], seg[0]]
            anns.append({"segment": seg, "label": str(rng.choice(labels))})
            if opts.get("dup_gt") and rng.random() < 0.3:
                anns.append(dict(anns[-1]))
        database[name] = {"subset": subset, "duration": duration, "annotations": anns}
    for i in range(opts.get("empty_videos", 0)):
        database[f"v_{seed:02d}_empty{i}"] = {"subset": subset, "duration": duration, "annotations": []}
    for i in range(opts.get("other_subset", 0)):
        database[f"v_{seed:02d}_train{i}"] = {
            "subset": "training",
            "duration": duration,
            "annotations": [{"segment": _segment(rng, duration, grid), "label": str(rng.choice(labels))}],
        }
    present = sorted({a["label"] for v in database.values() if v["subset"] == subset for a in v["annotations"]})
    predictable = [
        lab for lab in present if lab not in silent
    ] or present  # the official code raises on a label outside the subset's ground truth

    def score() -> float | int:
        if opts.get("int_scores"):
            return int(rng.integers(0, 4))
        if "levels" in opts:
            return round(float(rng.integers(1, opts["levels"] + 1)) / opts["levels"], 4)
        return round(float(rng.random()), 6)

    results: dict[str, list[dict]] = {}
    targets = list(database) + [f"v_{seed:02d}_absent{i}" for i in range(opts.get("absent_videos", 0))]
    order = rng.permutation(len(targets))  # results in another order than the database
    for k in order:
        video = targets[k]
        anns = database.get(video, {"annotations": []})["annotations"]
        dets = []
        for a in anns:
            for _ in range(int(rng.integers(1, opts.get("per_gt", 3) + 1))):
                label = a["label"] if a["label"] in predictable and rng.random() < 0.8 else str(rng.choice(predictable))
                seg = list(a["segment"]) if rng.random() < 0.2 else _jitter(rng, a["segment"], 2.0, grid)
                if opts.get("zero_length") and a["segment"][0] == a["segment"][1] and rng.random() < 0.8:  # 0/0 tIoU
                    seg = list(a["segment"])
                dets.append({"segment": seg, "score": score(), "label": label})
        for _ in range(int(rng.integers(0, opts.get("fp", 6) + 1))):
            seg = _segment(rng, duration, grid)
            if opts.get("zero_length") and rng.random() < 0.2:
                seg = [seg[0], seg[0]]
            dets.append({"segment": seg, "score": score(), "label": str(rng.choice(predictable))})
        if dets and rng.random() < 0.5:  # an exact duplicate of one detection
            dets.append(dict(dets[int(rng.integers(len(dets)))]))
        rng.shuffle(dets)
        results[video] = dets
    return {"name": f"{kind}/{seed}", "subset": subset, "tiou": opts["tiou"], "gt": database, "pred": results}


KINDS = [
    "basic",
    "ties",
    "ties-large",
    "no-gt-videos",
    "outside-subset",
    "empty-class",
    "duplicates",
    "grid",
    "degenerate",
    "int-scores",
]
GOLDEN_KINDS = ["basic", "ties", "no-gt-videos", "outside-subset", "empty-class", "duplicates", "grid", "degenerate"]


def write_files(case: dict, folder: Path) -> tuple[Path, Path]:
    gt, pred = folder / "gt.json", folder / "pred.json"
    gt.write_text(json.dumps({"version": "fsv-check", "taxonomy": [], "database": case["gt"]}))
    pred.write_text(json.dumps({"version": "fsv-check", "external_data": {}, "results": case["pred"]}))
    return gt, pred


# ---------------------------------------------------------------------------------------------------
# runs


def run_official(ed: types.ModuleType, gt: Path, pred: Path, tious: np.ndarray, subset: str) -> dict:
    # silence "Warning: No predictions of label ..." and numpy's 0/0 warning on zero-length segments
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        det = ed.ANETdetection(
            str(gt), str(pred), tiou_thresholds=tious, subset=subset, verbose=False, check_status=False
        )
        det.evaluate()
    return {
        "map": det.mAP.tolist(),
        "average_map": float(det.average_mAP),
        "ap": {label: det.ap[:, cidx].tolist() for label, cidx in det.activity_index.items()},
    }


PY2_DRIVER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import eval_detection as ed
def _no_network(*a, **k):
    raise RuntimeError('get_blocked_videos called')
class _Sequential(object):
    def __init__(self, *a, **k):
        pass
    def __call__(self, jobs):
        return [f(*a, **k) for f, a, k in jobs]
ed.get_blocked_videos = _no_network
ed.Parallel = _Sequential
if sys.argv[4] == 'file-order':  # read the JSON objects in file order (Python 3's order) instead of hash order
    import collections
    class _Json(object):
        @staticmethod
        def load(f):
            return json.load(f, object_pairs_hook=collections.OrderedDict)
    ed.json = _Json
out = []
for job in json.load(open(sys.argv[2])):
    det = ed.ANETdetection(job['gt'], job['pred'], tiou_thresholds=np.array(job['tious']), subset=job['subset'], verbose=False, check_status=False)
    det.evaluate()
    out.append({'map': det.mAP.tolist(), 'average_map': float(det.average_mAP),
                'ap': dict((label, det.ap[:, cidx].tolist()) for label, cidx in det.activity_index.items())})
json.dump(out, open(sys.argv[3], 'w'))
"""


def run_official_py2(
    python2: str, path: str | None, official: Path, jobs: list[dict], workdir: Path, file_order: bool = False
) -> list[dict]:
    (workdir / "driver.py").write_text(PY2_DRIVER)
    (workdir / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "PYTHONPATH": path or ""}
    subprocess.run(
        [
            python2,
            str(workdir / "driver.py"),
            str(official),
            str(workdir / "jobs.json"),
            str(workdir / "py2.json"),
            "file-order" if file_order else "hash-order",
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # numpy's 0/0 warnings
    return json.loads((workdir / "py2.json").read_text())


def run_cli(python: str, gt: Path, pred: Path, tiou: str, subset: str) -> dict:
    proc = subprocess.run(
        [
            python,
            "-m",
            "fsv",
            "score",
            "detections",
            "--gt",
            str(gt),
            "--pred",
            str(pred),
            "--subset",
            subset,
            "--tiou",
            tiou,
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return json.loads(proc.stdout)


def max_delta(ours: dict, ref: dict, with_ap: bool = True) -> float:
    """max |Δ| over mAP per threshold, the average mAP and (``with_ap``) every class's APs; inf when
    the shapes or the class sets disagree."""
    ours_map = list(ours["map"].values()) if isinstance(ours["map"], dict) else ours["map"]
    if len(ours_map) != len(ref["map"]):
        return float("inf")
    deltas = [abs(a - b) for a, b in zip(ours_map, ref["map"], strict=True)] + [
        abs(ours["average_map"] - ref["average_map"])
    ]
    if with_ap:
        if set(ours["ap"]) != set(ref["ap"]):
            return float("inf")
        deltas += [abs(a - b) for label in ref["ap"] for a, b in zip(ours["ap"][label], ref["ap"][label], strict=True)]
    return float(max(deltas))


def _tied(values: np.ndarray, items: list, relevant: np.ndarray) -> bool:
    """Whether two different ``items`` share a value (NaNs count as equal) among the ``relevant`` ones."""
    groups: dict[object, set] = {}
    for value, item, keep in zip(values.tolist(), items, relevant.tolist(), strict=True):
        if keep:
            groups.setdefault("nan" if math.isnan(value) else value, set()).add(item)
    return any(len(g) > 1 for g in groups.values())


def tie_probes(case: dict, tious: np.ndarray, segment_iou: Callable) -> list[dict]:
    """The arrays whose ``argsort()[::-1]`` order the official code depends on and whose ties can
    change a result: a class's scores (file order) when two different detections (video, segment) tie,
    and a prediction's tIoU against its video's ground truth when two different segments tie at or
    above the lowest threshold (or at NaN). Ties of identical entries cannot change anything."""
    gt_by_label: dict[str, dict[str, list]] = {}
    for video, entry in case["gt"].items():
        if entry["subset"] != case["subset"]:
            continue
        for a in entry["annotations"]:
            gt_by_label.setdefault(a["label"], {}).setdefault(video, []).append(
                (float(a["segment"][0]), float(a["segment"][1]))
            )
    probes = []
    for label, gt in gt_by_label.items():
        preds = [
            (v, (float(d["segment"][0]), float(d["segment"][1])), float(d["score"]))
            for v, dets in case["pred"].items()
            for d in dets
            if d["label"] == label
        ]
        scores = np.array([sc for *_, sc in preds], dtype=np.float64)
        if _tied(scores, [(v, seg) for v, seg, _ in preds], np.ones(len(scores), dtype=bool)):
            probes.append({"values": scores.tolist(), "order": np.argsort(scores)[::-1].tolist()})
        for video, seg, _ in preds:
            if len(gt.get(video, ())) < 2:
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                ious = segment_iou(np.array(seg), np.array(gt[video]))
            if _tied(ious, gt[video], np.isnan(ious) | (ious >= tious.min())):
                probes.append({"values": ious.tolist(), "order": np.argsort(ious)[::-1].tolist()})
    return probes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--official", type=Path, required=True, help="folder with the official eval_detection.py and utils.py"
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per kind of case")
    p.add_argument("--cli", metavar="PYTHON", help="also run `PYTHON -m fsv score detections --json` on every case")
    p.add_argument(
        "--python2", metavar="PY", help="also run the unported official files under this Python 2 interpreter"
    )
    p.add_argument("--python2-path", metavar="DIR", help="PYTHONPATH for --python2 (its numpy, pandas, joblib)")
    p.add_argument(
        "--python2-file-order",
        action="store_true",
        help="with --python2, also run it reading the JSON files in file order (json.load's object_pairs_hook=OrderedDict), "
        "which leaves only numpy's sort as a source of differences",
    )
    p.add_argument(
        "--write-golden",
        type=Path,
        metavar="PATH",
        help="write the small golden cases with the official results and exit",
    )
    args = p.parse_args()
    ed = load_official(args.official, verbose=True)
    import numpy
    import pandas

    print(
        f"# official ANETdetection under Python {sys.version.split()[0]}, numpy {numpy.__version__}, pandas {pandas.__version__}"
    )
    default = next(d for d in ed.ANETdetection.__init__.__defaults__ if isinstance(d, np.ndarray))
    same_default = np.array_equal(parse_tiou("0.5:0.95:0.05"), default)
    print(
        f"# fsv's --tiou 0.5:0.95:0.05 is bit for bit the official default {np.array2string(default, separator=',')}: {same_default}"
    )

    if args.write_golden:
        cases = []
        with tempfile.TemporaryDirectory() as tmp:
            for kind in GOLDEN_KINDS:
                case = make_case(kind, 0, small=True)
                tious = parse_tiou(case["tiou"])
                gt, pred = write_files(case, Path(tmp))
                ref = run_official(ed, gt, pred, tious, case["subset"])
                ours = score_files(gt, pred, tious, case["subset"])
                delta = max_delta(ours, ref)
                print(f"{case['name']:<22} max|Δ| {delta:.3g}")
                if delta > TOLERANCE:
                    print("fsv disagrees with the official code; golden file not written")
                    return 1
                cases.append(
                    {
                        **case,
                        "expected": ref,
                        "tie_probes": tie_probes(case, tious, sys.modules["_anet_official_utils"].segment_iou),
                    }
                )
        args.write_golden.parent.mkdir(parents=True, exist_ok=True)
        args.write_golden.write_text(
            json.dumps(
                {
                    "about": "Small cases of bench/verify_anet_eval.py with the results of the official ActivityNet evaluation "
                    "(github.com/activitynet/ActivityNet, Evaluation/eval_detection.py, ANETdetection, check_status=False). "
                    "Regenerate: python bench/verify_anet_eval.py --official DIR --write-golden tests/data/anet_eval_golden.json",
                    "reference": f"Python {sys.version.split()[0]}, numpy {numpy.__version__}, pandas {pandas.__version__}",
                    "cases": cases,
                },
                separators=(",", ":"),
            )
        )
        print(f"wrote {args.write_golden} ({args.write_golden.stat().st_size / 1024:.0f} KiB, {len(cases)} cases)")
        return 0

    rows, worst = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for kind in KINDS:
            for seed in range(args.seeds):
                case = make_case(kind, seed)
                folder = Path(tmp) / f"{kind}-{seed}"
                folder.mkdir()
                gt, pred = write_files(case, folder)
                tious = parse_tiou(case["tiou"])
                ref = run_official(ed, gt, pred, tious, case["subset"])
                ours = score_files(gt, pred, tious, case["subset"])
                row = {
                    "case": case["name"],
                    "tiou": case["tiou"],
                    "preds": sum(len(d) for d in case["pred"].values()),
                    "classes": len(ref["ap"]),
                    "ties": len(tie_probes(case, tious, sys.modules["_anet_official_utils"].segment_iou)),
                    "map": ref["average_map"],
                    "fsv": max_delta(ours, ref),
                }
                if args.cli:
                    row["cli"] = max_delta(
                        run_cli(args.cli, gt, pred, case["tiou"], case["subset"]), ref, with_ap=False
                    )
                rows.append(row)
                jobs.append(
                    {
                        "gt": str(gt),
                        "pred": str(pred),
                        "tious": tious.tolist(),
                        "subset": case["subset"],
                        "ref": ref,
                        "ours": ours,
                    }
                )
        if args.python2:
            for row, job, res in zip(
                rows,
                jobs,
                run_official_py2(args.python2, args.python2_path, args.official, jobs, Path(tmp)),
                strict=True,
            ):
                row["py2"] = max_delta(job["ours"], res)
        if args.python2 and args.python2_file_order:
            for row, job, res in zip(
                rows,
                jobs,
                run_official_py2(args.python2, args.python2_path, args.official, jobs, Path(tmp), True),
                strict=True,
            ):
                row["py2 ord"] = max_delta(job["ours"], res)
    cols = (
        ["fsv"]
        + (["cli"] if args.cli else [])
        + (["py2"] if args.python2 else [])
        + (["py2 ord"] if args.python2 and args.python2_file_order else [])
    )
    print(
        f"{'case':<20} {'tiou':<15} {'preds':>6} {'classes':>7} {'tie sets':>8} {'avg mAP':>8} "
        + " ".join(f"{'max|Δ| ' + c:>12}" for c in cols)
    )
    for row in rows:
        print(
            f"{row['case']:<20} {row['tiou']:<15} {row['preds']:>6} {row['classes']:>7} {row['ties']:>8} {row['map']:>8.4f} "
            + " ".join(f"{row[c]:>12.3g}" for c in cols)
        )
        worst = max(worst, row["fsv"], row.get("cli", 0.0))
    print(f"# max |Δ| fsv vs official (Python 3 port, same numpy): {worst:.3g} (tolerance {TOLERANCE:g})")
    if args.python2:
        no_ties = [row for row in rows if not row["ties"]]
        print(
            "# vs the unported Python 2 run (informative; there videos come in hash order and numpy's sort breaks ties its own way): "
            + ", ".join(
                f"{c} max |Δ| {max(row[c] for row in rows):.3g}, on cases without ties {max((row[c] for row in no_ties), default=0.0):.3g}"
                for c in cols
                if c.startswith("py2")
            )
        )
    return 0 if worst <= TOLERANCE and same_default else 1


if __name__ == "__main__":
    sys.exit(main())
