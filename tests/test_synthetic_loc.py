"""The synthetic localization generator's family (fsv.heads.data.synthetic_loc): the original data draw for
draw, phased class patterns, a drifting background, the ReLU rendering, and the support-control grid."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from fsv.heads.data.synthetic_loc import (
    HELD_OUT,
    SUPPORT_CONTROL,
    SUPPORT_GRID,
    LocSyntheticConfig,
    _background,
    _pattern,
    grid_cell,
    write_synthetic_localization,
)
from fsv.errors import FsvInputError


def test_default_generator_is_the_original_one_draw_for_draw(tmp_path: Path) -> None:
    """The digest of the features the generator wrote before phases, drift and rendering existed."""
    manifest, store = write_synthetic_localization(tmp_path, LocSyntheticConfig(videos=(4, 2, 2)))
    digest = hashlib.sha256()
    for r in manifest:
        digest.update(np.ascontiguousarray(store.get(r.video_id)).tobytes())
    assert digest.hexdigest() == "920c8497a9318c5af378a21310b9129d124e2499ee48be0a67fdeaf0219fafe2"


def test_phased_patterns_move_from_the_first_direction_to_the_last() -> None:
    rng = np.random.default_rng(0)
    phases = rng.normal(size=(3, 64)).astype(np.float32)
    phases *= 8 / np.linalg.norm(phases, axis=1, keepdims=True)
    x = _pattern(phases, 12)
    assert x.shape == (12, 64)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 8.0, rtol=1e-5)
    cos = x @ phases.T / 64  # [12, 3]
    assert cos[0].argmax() == 0 and cos[6].argmax() == 1 and cos[-1].argmax() == 2
    assert cos[0, 0] > 0.99 and cos[-1, 2] > 0.99
    assert 0.3 < cos[3, 0] < 0.95 and 0.3 < cos[3, 1] < 0.95  # blended between two phases
    np.testing.assert_array_equal(_pattern(phases[:1], 5), np.broadcast_to(phases[0], (5, 64)))  # one phase: constant


def test_drifting_background_keeps_its_variance_and_is_slow() -> None:
    def lag1(x: np.ndarray) -> float:
        return float((x[1:] * x[:-1]).mean() / (x * x).mean())

    white = _background(np.random.default_rng(0), LocSyntheticConfig(dim=256), 4000)
    drift = _background(np.random.default_rng(0), LocSyntheticConfig(dim=256, drift=0.5, drift_steps=8.0), 4000)
    assert abs(white.var() - 1) < 0.02 and abs(drift.var() - 1) < 0.1
    assert abs(lag1(white)) < 0.01
    assert abs(lag1(drift) - 0.5 * np.exp(-1 / 8)) < 0.03  # the drifting half's correlation at lag 1


def test_relu_rendering_is_non_negative_and_keeps_the_instances(tmp_path: Path) -> None:
    cfg = LocSyntheticConfig(videos=(6, 2, 2), render="relu", phases=3, drift=0.5)
    manifest, store = write_synthetic_localization(tmp_path, cfg)
    x = np.concatenate([store.get(r.video_id).astype(np.float32) for r in manifest])
    assert (x >= 0).all() and (x > 0).mean() > 0.3
    linear, _ = write_synthetic_localization(
        tmp_path / "linear", LocSyntheticConfig(videos=(6, 2, 2), phases=3, drift=0.5)
    )
    assert [r.segments for r in manifest] == [r.segments for r in linear]  # the same instances, rendered differently


def test_the_grid_and_its_held_out_cells() -> None:
    assert len(SUPPORT_GRID) == 24 and SUPPORT_GRID["a1.5-const-white-large"] == SUPPORT_CONTROL
    assert {c.amplitude for c in SUPPORT_GRID.values()} == {0.5, 1.0, 1.5} and {
        c.phases for c in SUPPORT_GRID.values()
    } == {1, 3}
    assert {c.drift for c in SUPPORT_GRID.values()} == {0.0, 0.5} and {c.videos[0] for c in SUPPORT_GRID.values()} == {
        80,
        240,
    }
    assert not set(HELD_OUT) & set(SUPPORT_GRID) and {c.render for c in HELD_OUT.values()} == {"relu"}
    assert {c.seed for c in HELD_OUT.values()} != {0}
    name, cfg = grid_cell(0.5, True, True, "small")
    assert name == "a0.5-phased-drift-small" and (cfg.amplitude, cfg.phases, cfg.drift, cfg.videos) == (
        0.5,
        3,
        0.5,
        (80, 20, 60),
    )


@pytest.mark.parametrize("bad", [{"phases": 0}, {"drift": 1.5}, {"drift_steps": 0.0}, {"render": "tanh"}])
def test_bad_settings_are_refused(bad: dict) -> None:
    with pytest.raises(FsvInputError):
        LocSyntheticConfig(**bad)
