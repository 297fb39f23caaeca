"""Our ResNet-50 against torchvision's, where torchvision imports (it is an optional extra)."""

from __future__ import annotations

import pytest
import torch

from fsv.pipeline.backbones.resnet50 import ResNet50


def test_torchvision_state_dict_gives_torchvision_outputs() -> None:
    try:
        from torchvision.models import resnet50
    except Exception as e:  # absent, or a CUDA wheel that cannot load on this torch
        pytest.skip(f"torchvision does not import here ({type(e).__name__})")
    torch.manual_seed(0)
    reference = resnet50().eval()
    ours = ResNet50().eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(ours.logits(x), reference(x), rtol=1e-4, atol=1e-4)
        trunk = torch.nn.Sequential(*list(reference.children())[:-2])
        torch.testing.assert_close(ours(x), trunk(x), rtol=1e-4, atol=1e-4)
