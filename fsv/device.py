"""The torch device a command runs on, from its ``--device`` word (both stages)."""

from __future__ import annotations

import torch

from fsv.errors import FsvInputError


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; asking for CUDA without it is an input error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FsvInputError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return torch.device(device)
