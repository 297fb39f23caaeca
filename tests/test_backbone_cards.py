"""Contract tests over every registered backbone card: presets derive from cards, one definition each."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from fsv.errors import FsvInputError
from fsv.pipeline.backbones import NETWORKS, backbone_cards, backbone_card, create_backbone, resolve_weights
from fsv.pipeline.plan import make_recipe
from fsv.pipeline.spec_presets import get_spec, presets
from fsv.pipeline.weights import WeightsRef

RANDOM = WeightsRef("random", None, None, seed=0)


@pytest.mark.parametrize("name", sorted(backbone_cards()))
def test_card_is_complete_and_consistent(name):
    card = backbone_cards()[name]
    assert card.name == name
    assert card.sampling["kind"] in card.sampling_kinds
    assert set(card.networks) <= {"rgb", "flow"} and "rgb" in card.networks
    for network in card.networks.values():
        assert NETWORKS[network].known_files, network
    assert set(card.published.streams) <= set(card.networks)


@pytest.mark.parametrize("name", sorted(backbone_cards()))
def test_preset_is_what_extraction_computes(name):
    """The published preset and a default extraction differ in the weights only (no drifted copies)."""
    card = backbone_cards()[name]
    preset = get_spec(card.published.preset)
    config = make_recipe(name, streams=card.published.streams, weights={s: RANDOM for s in card.published.streams})
    extracted = config.spec()
    assert preset.preprocess == extracted.preprocess == card.preprocess
    assert preset.sampling == extracted.sampling
    assert preset.fields == extracted.fields
    assert preset.flow == extracted.flow
    assert preset.backbone == extracted.backbone == name
    assert {k: v for k, v in preset.extra.items() if k in extracted.extra} == extracted.extra
    from fsv.pipeline.formats import feature_formats

    recipes = {r.preset for c in backbone_cards().values() for r in c.recipes.values()}
    assert set(presets()) == {c.published.preset for c in backbone_cards().values()} | recipes | {
        s.name for f in feature_formats().values() for s in f.specs
    }
    assert preset.streams == card.published.streams or (len(card.published.streams) == 1 and preset.streams == ())


@pytest.mark.parametrize("name", sorted(backbone_cards()))
def test_every_recipe_is_its_preset(name):
    """Each published recipe of a card is a registered preset equal to what `--recipe` extracts,
    and the first is the card's default (the wiring; test_vit_backbones checks the values)."""
    card = backbone_cards()[name]
    if card.recipes:
        assert next(iter(card.recipes.values())).preset == card.published.preset
    for recipe, r in card.recipes.items():
        extracted = make_recipe(name, weights={"rgb": RANDOM}, recipe=recipe).spec()
        preset = get_spec(r.preset)
        assert (preset.sampling, preset.preprocess, preset.fields) == (
            extracted.sampling,
            extracted.preprocess,
            extracted.fields,
        )


@pytest.mark.parametrize("network", sorted(set(NETWORKS) - {"hf"}))
def test_every_network_builds_with_random_weights(network):
    if NETWORKS[network].load is not None:
        pytest.importorskip("transformers", reason="transformers models need the hf extra")
    with torch.device("meta"):  # the construction, without spending seconds filling a billion random weights
        model = create_backbone(network, RANDOM)
    assert isinstance(model, torch.nn.Module) and not model.training and sum(p.numel() for p in model.parameters()) > 0


def test_hf_needs_a_model_folder():
    with pytest.raises(FsvInputError, match="pass --weights FOLDER"):
        create_backbone("hf", RANDOM)
    with pytest.raises(FsvInputError, match="--backbone hf reads a transformers model folder: pass --weights FOLDER"):
        make_recipe("hf", weights={"rgb": RANDOM})


def test_field_shape_follows_layers_and_streams():
    assert backbone_card("i3d").field_shape(("rgb", "flow"), None) == (2048,)
    assert backbone_card("c3d").field_shape(("rgb",), "pool5") == (8192,)
    assert make_recipe("c3d", weights={"rgb": RANDOM}, layer="fc7").spec().fields["features"].shape == (4096,)
    with pytest.raises(FsvInputError, match="--layer applies to c3d only"):
        make_recipe("resnet50", weights={"rgb": RANDOM}, layer="fc7")
    with pytest.raises(FsvInputError, match="unknown backbone 'vit'; choose one of resnet50, i3d, c3d, clip-vit-b32"):
        backbone_card("vit")


def test_weights_search_uses_the_cards_file_names(tmp_path, monkeypatch):
    monkeypatch.setenv("FSV_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(
        FsvInputError,
        match=r"no c3d weights found .* for c3d.pickle, c3d_sports1m.pickle, c3d.pth\); pass --weights PATH",
    ):
        resolve_weights("c3d", None)
    torch.save(create_backbone("c3d", RANDOM).state_dict(), tmp_path / "c3d_sports1m.pickle")
    ref = resolve_weights("c3d", None)
    assert ref.path == tmp_path / "c3d_sports1m.pickle" and len(ref.sha256) == 64
    create_backbone("c3d", ref)  # loads strictly


def test_weights_module_knows_no_backbone():
    """weights.py is generic: it imports nothing of the backbones package (no import circle)."""
    tree = ast.parse((Path(__file__).parents[1] / "fsv" / "pipeline" / "weights.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not any(m and m.startswith("fsv.pipeline.backbones") for m in imported), imported
