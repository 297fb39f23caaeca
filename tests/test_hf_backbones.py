"""transformers image models as backbones (``--backbone hf``, ``dinov2-b14``, ``siglip-b16``): the
frames against transformers' own (PIL) image processors, the features against the models' own
outputs on two-tower and single-tower folders, the CLI end to end, and what is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fsv.errors import FsvInputError
from fsv.pipeline.backbones import BACKBONES, backbone_card, create_backbone, resolve_weights
from fsv.pipeline.backbones.hf import processor_preprocess
from fsv.pipeline.plan import make_recipe
from fsv.pipeline.transforms import crop_views, resize_frames

try:
    import transformers
except ImportError:
    if os.environ.get("FSV_REQUIRE_REFERENCES"):
        raise
    pytest.skip("the hf extra (transformers), the reference, is not installed", allow_module_level=True)

FSV = [sys.executable, "-m", "fsv"]
# the published processors' settings (facebook/dinov2-base, google/siglip-base-patch16-224, openai/clip-vit-base-patch32)
DINOV2_PROCESSOR = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "BitImageProcessor",
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 256},
}
SIGLIP_PROCESSOR = {
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_processor_type": "SiglipImageProcessor",
    "image_std": [0.5, 0.5, 0.5],
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"height": 224, "width": 224},
}
CLIP_PROCESSOR = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_processor_type": "CLIPImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}


def tiny(kind: str) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    if kind == "dinov2":
        return transformers.Dinov2Model(
            transformers.Dinov2Config(**small, mlp_ratio=2, patch_size=14, image_size=518)
        ).eval(), DINOV2_PROCESSOR
    if kind == "siglip":
        vision = dict(**small, intermediate_size=64, patch_size=16, image_size=224)
        text = dict(**small, intermediate_size=64, vocab_size=50)
        return transformers.SiglipModel(
            transformers.SiglipConfig(vision_config=vision, text_config=text)
        ).eval(), SIGLIP_PROCESSOR
    vision = dict(**small, intermediate_size=64, patch_size=32, image_size=224, hidden_act="quick_gelu")
    text = dict(**small, intermediate_size=64, vocab_size=50)
    return transformers.CLIPModel(
        transformers.CLIPConfig(vision_config=vision, text_config=text, projection_dim=16)
    ).eval(), CLIP_PROCESSOR


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, tuple[Path, torch.nn.Module]]:
    out = {}
    for kind in ("dinov2", "siglip", "clip"):
        model, processor = tiny(kind)
        folder = tmp_path_factory.mktemp("hf") / kind
        model.save_pretrained(folder)
        (folder / "preprocessor_config.json").write_text(json.dumps(processor))
        out[kind] = (folder, model)
    return out


def reference_pooled(kind: str, model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' own pooled output and patch tokens of the model (two-tower models: the image side)."""
    if kind == "clip":
        out = model.vision_model(pixel_values=x)
        return model.visual_projection(out.pooler_output), out.last_hidden_state[:, 1:]
    if kind == "siglip":
        out = model.vision_model(pixel_values=x)
        return out.pooler_output, out.last_hidden_state
    out = model(pixel_values=x)
    return out.pooler_output, out.last_hidden_state[:, 1:]


@pytest.mark.parametrize("kind", ["dinov2", "siglip", "clip"])
def test_hf_folder_features_equal_the_models_own(folders, kind):
    folder, model = folders[kind]
    weights = resolve_weights("hf", str(folder))
    ours = create_backbone("hf", weights, grid=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        pooled, tokens = reference_pooled(kind, model, x)
        got = ours(x)
    torch.testing.assert_close(got["features"], pooled, rtol=1e-5, atol=1e-6)
    side = int(tokens.shape[1] ** 0.5)
    torch.testing.assert_close(got["grid"], tokens.transpose(1, 2).reshape(2, 32, side, side), rtol=1e-5, atol=1e-6)
    card = backbone_card("hf", weights)
    spec = make_recipe("hf", weights={"rgb": weights}, grid=True).spec()
    assert spec.fields["features"].shape == tuple(pooled.shape[1:]) and spec.fields["grid"].shape == (32, side, side)
    assert spec.extra["model_type"] == model.config.model_type and card.preprocess == processor_preprocess(folder)


@pytest.mark.parametrize("kind", ["dinov2", "siglip", "clip"])
@pytest.mark.parametrize("hw", [(240, 320), (361, 203), (120, 160)])
def test_hf_frames_equal_transformers_processors(folders, kind, hw):
    """fsv's frames, normalised, against transformers' PIL image processor of the same folder."""
    folder, _ = folders[kind]
    processor = transformers.AutoImageProcessor.from_pretrained(
        folder, backend="pil"
    )  # the PIL processor, whether or not torchvision imports
    rng = np.random.default_rng(hw[0])
    frame = (rng.random((*hw, 3)) * 80 + np.linspace(0, 170, hw[1])[None, :, None]).astype(np.uint8)
    want = processor(images=frame, return_tensors="np")["pixel_values"][0]
    pre = processor_preprocess(folder)
    views = crop_views(
        torch.from_numpy(resize_frames(frame[None], pre)).permute(0, 3, 1, 2),
        int(pre["crop"]),
        geometry=pre.get("geometry"),
    )
    x = views[0, 0].float() / 255
    ours = ((x - torch.tensor(pre["mean"])[:, None, None]) / torch.tensor(pre["std"])[:, None, None]).numpy()
    assert ours.shape == want.shape
    one_level = 1 / 255 / min(pre["std"])
    assert np.abs(ours - want).max() <= one_level + 1e-5


def test_named_cards_match_the_published_processors(folders):
    for kind, name in (("dinov2", "dinov2-b14"), ("siglip", "siglip-b16")):
        folder, _ = folders[kind]
        assert BACKBONES[name].preprocess == processor_preprocess(folder)
    # a card reads only its own family
    with pytest.raises(FsvInputError, match="model_type 'siglip' is not this backbone's"):
        create_backbone("dinov2-b14", resolve_weights("dinov2-b14", str(folders["siglip"][0])))
    with pytest.raises(FsvInputError, match="reads a transformers model folder .* not a file"):
        create_backbone("siglip-b16", resolve_weights("siglip-b16", str(folders["siglip"][0] / "config.json")))
    # and only its own size: this tiny DINOv2 is not ViT-B/14
    with pytest.raises(FsvInputError, match="hidden_size is 32, this backbone's is 768; read it with --backbone hf"):
        create_backbone("dinov2-b14", resolve_weights("dinov2-b14", str(folders["dinov2"][0])))


def test_a_folder_missing_a_weight_is_refused_and_a_bin_folder_reads(folders, tmp_path):
    from safetensors.torch import load_file, save_file

    folder, model = folders["dinov2"]
    state = load_file(folder / "model.safetensors")
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "config.json").write_bytes((folder / "config.json").read_bytes())
    (cut / "preprocessor_config.json").write_bytes((folder / "preprocessor_config.json").read_bytes())
    save_file({k: v for k, v in state.items() if "layer.1." not in k}, cut / "model.safetensors")
    with pytest.raises(FsvInputError, match="does not fit Dinov2Model .* missing or of another shape"):
        create_backbone("hf", resolve_weights("hf", str(cut)))
    (cut / "model.safetensors").unlink()
    torch.save(model.state_dict(), cut / "pytorch_model.bin")
    ours = create_backbone("hf", resolve_weights("hf", str(cut)))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["features"], model(pixel_values=x).pooler_output, rtol=1e-5, atol=1e-6)


def test_hf_extracts_through_the_cli_and_refuses_custom_code(folders, tmp_path):
    from conftest import write_video
    from fsv.pipeline.manifests import Manifest, VideoRecord
    from fsv.pipeline.store import FeatureStore

    root = tmp_path / "videos"
    for i in range(2):
        write_video(root / f"v{i}.mp4", n_frames=20, fps=25, size=(96, 72), seed=i)
    Manifest("m", [VideoRecord(f"v{i}", f"v{i}.mp4", "a", "test") for i in range(2)], ["a"], "classification").write(
        tmp_path / "m.csv"
    )
    base = [
        *FSV,
        "extract",
        "--manifest",
        str(tmp_path / "m.csv"),
        "--root",
        str(root),
        "--backbone",
        "hf",
        "--workers",
        "0",
    ]
    folder = folders["siglip"][0]
    proc = subprocess.run(
        [*base, "--store", str(tmp_path / "s"), "--weights", str(folder), "--grid", "--segments", "4"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = FeatureStore.open(tmp_path / "s")
    assert {k: v.shape for k, v in store.spec.fields.items()} == {"features": (32,), "grid": (32, 14, 14)}
    assert (
        store.get("v0", "features").shape == (4, 32)
        and store.spec.weights["name"] == "siglip"
        and len(store.spec.weights["sha256"]) == 64
    )
    custom = tmp_path / "custom"
    custom.mkdir()
    for f in folder.iterdir():
        (custom / f.name).write_bytes(f.read_bytes())
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_x.XModel"}
    (custom / "config.json").write_text(json.dumps(config))
    proc = subprocess.run(
        [*base, "--store", str(tmp_path / "c"), "--weights", str(custom)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 2 and "needs its own code" in proc.stderr and "never runs" in proc.stderr, proc.stderr
    assert not (tmp_path / "c").exists()
    proc = subprocess.run(
        [*base, "--store", str(tmp_path / "r"), "--weights", "random"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 2 and "pass --weights FOLDER" in proc.stderr, proc.stderr
