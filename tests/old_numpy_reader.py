"""Run by an old NumPy's Python (tests/old_numpy.py): load each file of a checks file as the
anchors' code loads it and compare with the expected arrays; NumPy and h5py only."""

import json
import sys

import numpy as np


def main(path):
    spec = json.load(open(path))
    expected = np.load(spec["expected"])
    bad = []
    for check in spec["checks"]:
        want = [expected[k] for k in check["expected"]]
        if check["kind"] == "npy":
            got = [np.load(check["path"])]
        elif check["kind"] == "npy-pickle":
            got = list(np.load(check["path"], allow_pickle=True, encoding="bytes"))
            default = list(np.load(check["path"], allow_pickle=True))
            if len(default) != len(got) or not all(np.array_equal(a, b) for a, b in zip(default, got)):
                bad.append(check["path"] + ": differs between encodings")
        else:
            import h5py

            with h5py.File(check["path"], "r") as f:
                got = [f[check["key"]][()]]
        same = len(got) == len(want) and all(
            np.asarray(a).dtype == b.dtype and np.array_equal(np.asarray(a), b) for a, b in zip(got, want)
        )
        if not same:
            bad.append(f"{check['path']} {check['key'] or ''}: not the expected arrays")
    if bad:
        sys.exit("\n".join(bad))
    print(f"numpy {np.__version__}: {len(spec['checks'])} files read")


if __name__ == "__main__":
    main(sys.argv[1])
