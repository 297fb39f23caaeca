"""The transformer backbones (CLIP, VideoMAE, VideoMAE V2) against reference implementations that
someone else wrote, on the same random weights written in each published checkpoint layout.

References: transformers' ``CLIPVisionModelWithProjection`` and ``VideoMAEForVideoClassification``
(tiny random configurations, written with ``save_pretrained``); for OpenAI's layout, a module built
here from PyTorch's own ``nn.MultiheadAttention`` with OpenAI's parameter names, saved as a
TorchScript archive as OpenAI's ``.pt`` files are; for the authors' VideoMAE (V2) ``.pth`` and
mmaction2's, the transformers model's weights written under their key names. Frames: PIL (CLIP's
bicubic), and the VideoMAE V2 script's and CLIP-FSAR's ``F.interpolate`` calls, on random frames.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fsv.errors import FsvInputError
from fsv.pipeline.backbones import BACKBONES, VIT_CONFIGS, create_backbone, resolve_weights
from fsv.pipeline.backbones.vit import ViTConfig, VisionTransformer, sinusoid_table
from fsv.pipeline.backbones.vit_weights import read_clip, read_videomae
from fsv.pipeline.weights import read_safetensors
from fsv.pipeline.plan import make_recipe, plan_video
from fsv.pipeline.spec_presets import get_spec
from fsv.pipeline.transforms import crop_views, resize_frames
from fsv.pipeline.weights import WeightsRef
from fsv.safe_pickle.torchscript import read_torchscript

try:
    import transformers
except ImportError:
    if os.environ.get("FSV_REQUIRE_REFERENCES"):
        raise
    pytest.skip("the hf extra (transformers), the reference, is not installed", allow_module_level=True)

RANDOM = WeightsRef("random", None, None, seed=0)
TINY_CLIP = dict(width=32, depth=2, heads=4, mlp=64, patch=8, image=32, proj=16)
TINY_VIDEOMAE = dict(width=32, depth=2, heads=4, mlp=64, patch=8, image=32, frames=4, tubelet=2, family="videomae")


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter drawn at a scale that makes each layer matter (LayerNorm weights near 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(
                torch.randn(p.shape, generator=g) * 0.2
                + (
                    1.0
                    if name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "ln_1.weight", "ln_2.weight"))
                    else 0.0
                )
            )
    return model.eval()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# ----------------------------------------------------------------------------- CLIP
@pytest.fixture(scope="module")
def hf_clip(tmp_path_factory) -> tuple[Path, nn.Module]:
    cfg = transformers.CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=16,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )
    torch.manual_seed(0)
    model = randomize(transformers.CLIPVisionModelWithProjection(cfg))
    folder = tmp_path_factory.mktemp("hf") / "clip"
    model.save_pretrained(folder)
    return folder, model


def test_clip_from_a_transformers_folder_equals_transformers(hf_clip):
    folder, ref = hf_clip
    ours = VisionTransformer(ViTConfig(**TINY_CLIP), grid=True).eval()
    ours.load_state_dict(read_clip(folder, ViTConfig(**TINY_CLIP)), strict=True)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = ref(pixel_values=x)
        got = ours(x)
    assert rel(got["features"], want.image_embeds) < 1e-5
    # the grid is the last block's patch tokens, not post-LayerNormed (transformers' last_hidden_state)
    grid = want.last_hidden_state[:, 1:].transpose(1, 2).reshape(3, 32, 4, 4)
    assert rel(got["grid"], grid) < 1e-5
    assert (
        rel(
            got["grid"],
            ref.vision_model.post_layernorm(want.last_hidden_state)[:, 1:].transpose(1, 2).reshape(3, 32, 4, 4),
        )
        > 1e-2
    )
    # float64: the same to rounding
    ours64, ref64 = ours.double(), ref.double()
    with torch.no_grad():
        assert rel(ours64(x.double())["features"], ref64(pixel_values=x.double()).image_embeds) < 1e-9


class OpenAIResidualBlock(nn.Module):
    """OpenAI CLIP's ``ResidualAttentionBlock`` layout: ``attn`` is PyTorch's MultiheadAttention."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, width * 2)),
                    ("gelu", QuickGELURef()),
                    ("c_proj", nn.Linear(width * 2, width)),
                ]
            )
        )
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [N, B, D]
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class QuickGELURef(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class OpenAIVisual(nn.Module):
    def __init__(
        self, width: int = 32, layers: int = 2, heads: int = 4, patch: int = 8, image: int = 32, out: int = 16
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width))
        self.positional_embedding = nn.Parameter(torch.randn((image // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(*[OpenAIResidualBlock(width, heads) for _ in range(layers)])
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + self.positional_embedding
        x = self.transformer.resblocks(self.ln_pre(x).permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0]) @ self.proj


class OpenAICLIP(nn.Module):
    """The parts of OpenAI's ``CLIP`` that the image features use, plus a text-side parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.visual = OpenAIVisual()
        self.logit_scale = nn.Parameter(torch.ones([]))
        self.token_embedding = nn.Embedding(10, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x) * self.logit_scale


@pytest.fixture(scope="module")
def openai_files(tmp_path_factory) -> tuple[dict[str, Path], nn.Module]:
    torch.manual_seed(1)
    ref = randomize(OpenAICLIP(), seed=1).half().float()  # OpenAI's files hold fp16 weights
    out = tmp_path_factory.mktemp("openai")
    scripted = torch.jit.trace(
        copy.deepcopy(ref), torch.randn(1, 3, 32, 32)
    ).half()  # the archive holds HalfStorage, as OpenAI's do
    torch.jit.save(scripted, out / "ViT-T-8.pt")
    half = {k: v.half() for k, v in ref.state_dict().items()}
    torch.save(half, out / "open_clip_pytorch_model.bin")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in half.items()}, out / "open_clip_model.safetensors")
    return {
        "pt": out / "ViT-T-8.pt",
        "bin": out / "open_clip_pytorch_model.bin",
        "safetensors": out / "open_clip_model.safetensors",
    }, ref


@pytest.mark.parametrize("layout", ["pt", "bin", "safetensors"])
def test_clip_from_openai_and_open_clip_files_equals_their_model(openai_files, layout, monkeypatch):
    files, ref = openai_files

    def no_jit(*a, **k):
        raise AssertionError("torch.jit.load must never run a user's file")

    monkeypatch.setattr(torch.jit, "load", no_jit)
    ours = VisionTransformer(ViTConfig(**TINY_CLIP)).eval()
    ours.load_state_dict(read_clip(files[layout], ViTConfig(**TINY_CLIP)), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert rel(ours(x)["features"], ref.visual(x)) < 1e-5


def test_a_torchscript_archive_that_calls_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(Evil(), protocol=2))
        z.writestr("evil/code/__torch__.py", "")
    with pytest.raises(FsvInputError, match=r"refusing to load (posix|os)\.system.*nothing in it was run"):
        read_clip(path, ViTConfig(**TINY_CLIP))


def test_safetensors_reader_equals_the_package(tmp_path):
    from safetensors.torch import save_file

    tensors = {
        "a": torch.randn(3, 4),
        "b": torch.arange(5, dtype=torch.int64),
        "c": torch.randn(2, 2).to(torch.bfloat16),
        "d": torch.zeros(0),
    }
    save_file(tensors, tmp_path / "t.safetensors")
    got = read_safetensors(tmp_path / "t.safetensors")
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v)


def test_a_folder_that_needs_custom_code_is_refused(hf_clip, tmp_path):
    folder, _ = hf_clip
    custom = tmp_path / "custom"
    custom.mkdir()
    for f in folder.iterdir():
        (custom / f.name).write_bytes(f.read_bytes())
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (custom / "config.json").write_text(json.dumps(config))
    with pytest.raises(FsvInputError, match="needs its own code .*AutoModel.* fsv never runs"):
        read_clip(custom, ViTConfig(**TINY_CLIP))


# ----------------------------------------------------------------------------- VideoMAE
@pytest.fixture(scope="module")
def hf_videomae(tmp_path_factory) -> tuple[Path, nn.Module]:
    cfg = transformers.VideoMAEConfig(
        image_size=32,
        patch_size=8,
        num_frames=4,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        layer_norm_eps=1e-6,
        use_mean_pooling=True,
        num_labels=5,
        qkv_bias=True,
    )
    torch.manual_seed(0)
    model = randomize(transformers.VideoMAEForVideoClassification(cfg), seed=2)
    folder = tmp_path_factory.mktemp("hf") / "videomae"
    model.save_pretrained(folder)
    return folder, model


def hf_to_authors(state: dict[str, torch.Tensor], *, mmaction: bool = False) -> dict[str, torch.Tensor]:
    """transformers' VideoMAE weights written under the authors' ``modeling_finetune`` names (or
    mmaction2's): the layout of ``vit_g_hybrid_pt_1200e_k710_ft.pth`` / ``vit-base-p16_videomae-...pth``."""
    out = {}
    for k, v in state.items():
        k = k.removeprefix("videomae.")
        if k.startswith("embeddings.patch_embeddings.projection."):
            out[("patch_embed.projection." if mmaction else "patch_embed.proj.") + k.rsplit(".", 1)[1]] = v
        elif k.startswith("fc_norm."):
            out[k] = v
        elif k.startswith("classifier."):
            out[("cls_head.fc_cls." if mmaction else "head.") + k.rsplit(".", 1)[1]] = v
    layers = sorted({int(k.split(".")[3]) for k in state if k.startswith("videomae.encoder.layer.")})
    for i in layers:
        p = f"videomae.encoder.layer.{i}."
        b = f"blocks.{i}."
        att = p + "attention.attention."
        out[b + "attn.qkv.weight"] = torch.cat([state[att + n + ".weight"] for n in ("query", "key", "value")])
        out[b + "attn.q_bias"], out[b + "attn.v_bias"] = state[att + "query.bias"], state[att + "value.bias"]
        for theirs, mine in [
            ("attention.output.dense", "attn.proj"),
            ("layernorm_before", "norm1"),
            ("layernorm_after", "norm2"),
            ("intermediate.dense", "mlp.layers.0.0" if mmaction else "mlp.fc1"),
            ("output.dense", "mlp.layers.1" if mmaction else "mlp.fc2"),
        ]:
            for t in ("weight", "bias"):
                out[f"{b}{mine}.{t}"] = state[f"{p}{theirs}.{t}"]
    return {f"backbone.{k}" if mmaction and not k.startswith("cls_head") else k: v for k, v in out.items()}


@pytest.mark.parametrize(
    "layout", ["hf-folder", "hf-folder-query-bias", "authors-model", "authors-module", "mmaction2"]
)
def test_videomae_from_each_layout_equals_transformers(hf_videomae, layout, tmp_path):
    folder, ref = hf_videomae
    if layout == "hf-folder":
        path = folder
    elif layout == "hf-folder-query-bias":
        # save_pretrained (and the MCG-NJU hub folders) write the biases as q_bias / v_bias; a
        # transformers 5 model's own state_dict names them query.bias / value.bias
        from safetensors.torch import save_file

        assert any(k.endswith("q_bias") for k in read_safetensors(folder / "model.safetensors"))
        path = tmp_path / "query-bias"
        path.mkdir()
        (path / "config.json").write_bytes((folder / "config.json").read_bytes())
        state = ref.state_dict()
        assert any(k.endswith("attention.query.bias") for k in state)
        save_file({k: v.contiguous() for k, v in state.items()}, path / "model.safetensors")
    else:
        state = hf_to_authors(ref.state_dict(), mmaction=layout == "mmaction2")
        key = {"authors-model": "model", "authors-module": "module", "mmaction2": "state_dict"}[layout]
        path = tmp_path / "ckpt.pth"
        torch.save({key: state, "epoch": 3}, path)
    ours = VisionTransformer(ViTConfig(**TINY_VIDEOMAE), grid=True).eval()
    ours.load_state_dict(read_videomae(path, ViTConfig(**TINY_VIDEOMAE)), strict=True)
    x = torch.rand(2, 3, 4, 32, 32)
    # transformers' fc_norm is an nn.LayerNorm with eps 1e-5; the authors' (and fsv's) is 1e-6
    ref.fc_norm.eps = 1e-6
    with torch.no_grad():
        tokens = ref(pixel_values=x.transpose(1, 2), output_hidden_states=True).hidden_states[
            -1
        ]  # HF takes [B, T, C, H, W]
        got = ours(x)
        assert rel(got["features"], ref.fc_norm(tokens.mean(1))) < 1e-5
        # the grid: tokens in the patch convolution's time-major order, channels first
        assert rel(got["grid"], tokens.transpose(1, 2).reshape(2, 32, 2, 4, 4)) < 1e-5
    ref.fc_norm.eps = 1e-5


def test_a_pretraining_checkpoint_is_refused_with_what_to_use(tmp_path):
    torch.save(
        {"model": {"encoder.blocks.0.norm1.weight": torch.ones(4), "decoder.blocks.0.norm1.weight": torch.ones(4)}},
        tmp_path / "pt.pth",
    )
    with pytest.raises(FsvInputError, match="pre-training checkpoint .* fine-tuned or distilled encoder"):
        read_videomae(tmp_path / "pt.pth", ViTConfig(**TINY_VIDEOMAE))


def test_real_size_cards_load_their_own_layout_strictly(tmp_path):
    """videomaev2-s in the authors' .pth layout, written from a transformers model of its size."""
    cfg = VIT_CONFIGS["videomaev2-s"]
    hf_cfg = transformers.VideoMAEConfig(
        image_size=224,
        patch_size=cfg.patch,
        num_frames=16,
        tubelet_size=2,
        hidden_size=cfg.width,
        num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.heads,
        intermediate_size=cfg.mlp,
        layer_norm_eps=1e-6,
        use_mean_pooling=True,
        num_labels=710,
    )
    ref = transformers.VideoMAEForVideoClassification(hf_cfg).eval()
    torch.save({"module": hf_to_authors(ref.state_dict())}, tmp_path / "vit_s_k710_dl_from_giant.pth")
    weights = resolve_weights("videomaev2-s", str(tmp_path / "vit_s_k710_dl_from_giant.pth"))
    model = create_backbone("videomaev2-s", weights)
    x = torch.rand(1, 3, 16, 224, 224)
    ref.fc_norm.eps = 1e-6
    with torch.no_grad():
        tokens = ref(pixel_values=x.transpose(1, 2), output_hidden_states=True).hidden_states[-1]
        assert rel(model(x)["features"], ref.fc_norm(tokens.mean(1))) < 1e-5
    with pytest.raises(FsvInputError, match="does not fit videomaev2-b"):
        create_backbone("videomaev2-b", weights)
    # and through the CLI, from that file: 24 native frames give windows at 0, 4, 8
    import subprocess
    import sys

    from conftest import write_video
    from fsv.pipeline.manifests import Manifest, VideoRecord
    from fsv.pipeline.store import FeatureStore

    write_video(tmp_path / "v" / "a.mp4", n_frames=24, fps=30, size=(80, 60))
    Manifest("m", [VideoRecord("a", "a.mp4", "x", "test")], ["x"], "classification").write(tmp_path / "m.csv")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsv",
            "extract",
            "--manifest",
            str(tmp_path / "m.csv"),
            "--root",
            str(tmp_path / "v"),
            "--store",
            str(tmp_path / "s"),
            "--backbone",
            "videomaev2-s",
            "--weights",
            str(tmp_path / "vit_s_k710_dl_from_giant.pth"),
            "--workers",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = FeatureStore.open(tmp_path / "s")
    assert store.spec.weights == {"name": "vit_s_k710_dl_from_giant.pth", "sha256": weights.sha256}
    assert store.get("a").shape == (3, 384) and store.spec.name == "videomaev2-s-rgb-nativefps-s16x4"
    np.testing.assert_allclose(store.spans("a")[:, 0], [0, 4 / 30, 8 / 30], atol=1e-6)


# ----------------------------------------------------------------------------- frames
def pil_clip_frames(frame: np.ndarray, size: int = 224) -> np.ndarray:
    """OpenAI CLIP's `_transform` up to ToTensor: torchvision Resize(size, BICUBIC) on a PIL image
    (short side to ``size``, long side truncated), CenterCrop(size) (offsets rounded)."""
    from PIL import Image

    h, w = frame.shape[:2]
    new = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    img = Image.fromarray(frame).resize((new[1], new[0]), Image.BICUBIC)
    top, left = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
    return np.asarray(img)[top : top + size, left : left + size]


def fsv_frames(frames: np.ndarray, preprocess: dict) -> np.ndarray:
    resized = resize_frames(frames, preprocess)
    views = crop_views(
        torch.from_numpy(resized).permute(0, 3, 1, 2), int(preprocess["crop"]), geometry=preprocess.get("geometry")
    )
    return views[0].permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("hw", [(240, 320), (241, 427), (360, 203), (100, 150), (224, 224)])
def test_clip_openai_frames_equal_pil_within_one_grey_level(hw):
    rng = np.random.default_rng(hw[0])
    frame = (rng.random((*hw, 3)) * 64 + np.linspace(0, 190, hw[1])[None, :, None]).astype(np.uint8)
    pre = BACKBONES["clip-vit-b16"].preprocess
    ours = fsv_frames(frame[None], pre)[0].astype(int)
    want = pil_clip_frames(frame).astype(int)
    assert ours.shape == want.shape == (224, 224, 3)
    assert np.abs(ours - want).max() <= 1


def test_clip_fsar_and_videomaev2_frames_equal_their_interpolate_calls():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 180, 320, 3), dtype=np.uint8)
    video = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255  # their ToTensor: [C, T, H, W] in [0, 1]
    # CLIP-FSAR: square 256 bilinear resize, crop offsets (256 - 224) // 2
    _, pre = BACKBONES["clip-vit-b16"].recipe_choices("clip-fsar")
    want = F.interpolate(video, size=(256, 256), mode="bilinear", align_corners=False)[:, :, 16:240, 16:240]
    ours = torch.from_numpy(fsv_frames(frames, pre)).permute(3, 0, 1, 2).float() / 255
    assert float((ours - want).abs().max()) <= 1 / 255
    # VideoMAE V2 extract_tad_feature.py: F.interpolate to (224, 224) of the [C, T, H, W] clip
    pre = BACKBONES["videomaev2-g"].preprocess
    want = F.interpolate(video, size=(224, 224), mode="bilinear", align_corners=False)
    ours = torch.from_numpy(fsv_frames(frames, pre)).permute(3, 0, 1, 2).float() / 255
    assert float((ours - want).abs().max()) <= 0.5 / 255 + 1e-6


def test_videomaev2_windows_are_the_scripts_at_native_fps():
    """extract_tad_feature.py: windows start at range(0, num_frames - 15, 4) of the native frames."""
    for n, fps in [(40, 30.0), (16, 25.0), (101, 29.97)]:
        ts = np.arange(n) / fps
        for recipe, stride in [("thumos14", 4), ("fineaction", 16)]:
            plan = plan_video(make_recipe("videomaev2-g", weights={"rgb": RANDOM}, recipe=recipe), ts, fps)
            assert plan.starts.tolist() == list(range(0, n - 15, stride))
            assert plan.frames.tolist() == list(range(n))
            np.testing.assert_allclose(plan.spans[0], [0.0, 16 / fps])
            np.testing.assert_allclose(plan.spans[-1], [plan.starts[-1] / fps, (plan.starts[-1] + 16) / fps])
    with pytest.raises(FsvInputError, match="15 frames at native fps, fewer than one 16-frame snippet"):
        plan_video(make_recipe("videomaev2-g", weights={"rgb": RANDOM}), np.arange(15) / 30, 30.0)


def test_each_recipe_is_its_published_settings():
    """The presets say what the papers' scripts do (values read from their code, not from fsv's)."""
    fsar = get_spec("clip-vit-b16-clipfsar-tsn8")
    assert (
        fsar.preprocess["resize"] == [256, 256]
        and fsar.preprocess["crop"] == 224
        and fsar.sampling == {"kind": "tsn", "num_segments": 8, "mode": "center"}
    )
    assert get_spec("clip-vit-b32-openai-frames").sampling == {"kind": "frames"}
    assert get_spec("videomaev2-g-tad-16x4").sampling == {
        "kind": "snippets",
        "fps": "native",
        "snippet": 16,
        "stride": 4,
    }
    assert get_spec("videomaev2-g-tad-16x16").sampling["stride"] == 16
    assert get_spec("videomaev2-g-tad-16x4").fields["features"].shape == (1408,)
    tsp = get_spec("tsp-r2plus1d-34-thumos14-15fps-16x1")
    assert tsp.sampling == {
        "kind": "snippets",
        "fps": 15,
        "snippet": 16,
        "stride": 1,
        "count": "ceil",
    } and tsp.preprocess["resize"] == [128, 171]
    for name in ("clip-vit-b16-clipfsar-tsn8", "videomaev2-s-tad-16x16", "tsp-r2plus1d-34-thumos14-15fps-16x1"):
        backbone = get_spec(name).backbone
        recipe = next(r for r, v in BACKBONES[backbone].recipes.items() if v.preset == name)
        assert make_recipe(backbone, weights={"rgb": RANDOM}, recipe=recipe).spec().to_dict(with_name=False) | {
            "weights": None,
            "extra": None,
        } == get_spec(name).to_dict(with_name=False) | {"weights": None, "extra": None}


def test_recipes_and_grid_are_in_the_spec():
    base = make_recipe("clip-vit-b16", weights={"rgb": RANDOM})
    fsar = make_recipe("clip-vit-b16", weights={"rgb": RANDOM}, recipe="clip-fsar")
    grid = make_recipe("clip-vit-b16", weights={"rgb": RANDOM}, grid=True)
    assert len({base.spec().key, fsar.spec().key, grid.spec().key}) == 3
    assert fsar.spec().name == "clip-vit-b16-rgb-tsn8-clip-fsar"
    assert grid.spec().fields["grid"].shape == (768, 14, 14) and base.spec().fields["features"].shape == (512,)
    assert make_recipe("videomaev2-g", weights={"rgb": RANDOM}, grid=True).spec().fields["grid"].shape == (
        1408,
        8,
        16,
        16,
    )
    with pytest.raises(FsvInputError, match="--grid: c3d has no patch-token grid"):
        make_recipe("c3d", weights={"rgb": RANDOM}, grid=True)
    with pytest.raises(
        FsvInputError, match="clip-vit-b16 has no recipe 'thumos14'; its recipes: openai, clip-fsar, video-features"
    ):
        make_recipe("clip-vit-b16", weights={"rgb": RANDOM}, recipe="thumos14")


# ----------------------------------------------------------------------------- the files' traps
def copy_folder(src: Path, dst: Path, *, config: dict | None = None, state: dict | None = None) -> Path:
    from safetensors.torch import save_file

    dst.mkdir()
    (dst / "config.json").write_text(json.dumps(config) if config is not None else (src / "config.json").read_text())
    if state is None:
        (dst / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, dst / "model.safetensors")
    return dst


def test_clip_folder_with_position_ids_loads_and_another_architecture_is_refused(hf_clip, tmp_path):
    folder, ref = hf_clip
    # the openai/clip-vit-* folders carry the embeddings' position_ids buffer
    state = dict(read_safetensors(folder / "model.safetensors"))
    state["vision_model.embeddings.position_ids"] = torch.arange(17)[None]
    with_ids = copy_folder(folder, tmp_path / "ids", state=state)
    ours = VisionTransformer(ViTConfig(**TINY_CLIP)).eval()
    ours.load_state_dict(read_clip(with_ids, ViTConfig(**TINY_CLIP)), strict=True)
    # a LAION model converted to transformers: exact GELU, which OpenAI's architecture would silently get wrong
    config = json.loads((folder / "config.json").read_text())
    config["hidden_act"] = "gelu"
    with pytest.raises(FsvInputError, match="hidden_act is 'gelu', this backbone's is 'quick_gelu'; .* --backbone hf"):
        read_clip(copy_folder(folder, tmp_path / "gelu", config=config), ViTConfig(**TINY_CLIP))


def test_mmaction2_pos_embed_is_checked_and_dropped(hf_videomae, tmp_path):
    _, ref = hf_videomae
    state = hf_to_authors(ref.state_dict(), mmaction=True)
    state["backbone.pos_embed"] = sinusoid_table(32, 32)[None]  # mmaction2 saves its fixed table
    torch.save({"state_dict": state}, tmp_path / "mm.pth")
    ours = VisionTransformer(ViTConfig(**TINY_VIDEOMAE)).eval()
    ours.load_state_dict(read_videomae(tmp_path / "mm.pth", ViTConfig(**TINY_VIDEOMAE)), strict=True)
    state["backbone.pos_embed"] = torch.randn(1, 32, 32)
    torch.save({"state_dict": state}, tmp_path / "learned.pth")
    with pytest.raises(FsvInputError, match="not VideoMAE's fixed sinusoid table"):
        read_videomae(tmp_path / "learned.pth", ViTConfig(**TINY_VIDEOMAE))


def archive(path: Path, payload: bytes, storages: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("m/data.pkl", payload)
        z.writestr("m/code/__torch__.py", "")
        for key, raw in (storages or {}).items():
            z.writestr(f"m/data/{key}", raw)
    return path


def test_torchscript_reader_bounds_and_isolation(openai_files, tmp_path):
    files, _ = openai_files

    def tensor(size: int, stride: int) -> bytes:  # a module holding one float tensor over a 4-float storage
        return (
            b"\x80\x02c__torch__\nM\n)\x81}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
            b"ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00J"
            + size.to_bytes(4, "little")
            + b"\x85J"
            + stride.to_bytes(4, "little")
            + b"\x85\x89ccollections\nOrderedDict\n)RtRsb."
        )

    assert torch.equal(
        read_torchscript(archive(tmp_path / "ok.pt", tensor(4, 1), {"0": bytes(16)}))["w"], torch.zeros(4)
    )
    # a view past its storage is refused (not read out of other memory), and so is a stride-0 giant (not copied into memory)
    with pytest.raises(FsvInputError, match="tensor reaches past its storage"):
        read_torchscript(archive(tmp_path / "oob.pt", tensor(3, 2), {"0": bytes(16)}))
    with pytest.raises(FsvInputError, match="tensor of 1073741824 elements from a storage of 4"):
        read_torchscript(archive(tmp_path / "huge.pt", tensor(2**30, 0), {"0": bytes(16)}))
    # BUILD on what the unpickler hands out cannot change how the next archive is read
    poison = b"\x80\x02ctorch\nFloatStorage\nN}X\x05\x00\x00\x00dtypeX\x01\x00\x00\x00x\x86b."
    with pytest.raises(FsvInputError):
        read_torchscript(archive(tmp_path / "poison.pt", poison))
    assert read_torchscript(files["pt"])["visual.proj"].dtype == torch.float16


def test_a_scripted_archive_reads(tmp_path):
    """torch.jit.script archives tag int lists (build_intlist); OpenAI's are traced."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    torch.jit.save(torch.jit.script(model), tmp_path / "s.pt")
    state = read_torchscript(tmp_path / "s.pt")
    assert set(state) == {"0.weight", "0.bias"} and torch.equal(state["0.weight"], model[0].weight)


def test_videomae_opentad_frames_equal_opencv_resize():
    """mmaction2's Resize(scale=(-1, 224)) is mmcv.imresize: cv2.resize INTER_LINEAR (no
    antialiasing), the long side int(x + 0.5); CenterCrop floors its offsets."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    pre = BACKBONES["videomae-b"].preprocess
    for h, w in [(240, 320), (360, 640), (181, 250)]:
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        s = 224 / min(h, w)
        size = (int(w * s + 0.5), int(h * s + 0.5))
        ref = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
        top, left = (size[1] - 224) // 2, (size[0] - 224) // 2
        want = ref[top : top + 224, left : left + 224].astype(int)
        ours = fsv_frames(frame[None], pre)[0].astype(int)
        assert np.abs(ours - want).max() <= 1
