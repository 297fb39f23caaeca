"""A local transformers model folder (``save_pretrained``'s layout), read offline and without
running anything from it.

A folder holds ``config.json``, the weights (``model.safetensors``, a sharded
``model.safetensors.index.json`` set, or ``pytorch_model.bin``) and, for vision models,
``preprocessor_config.json``. A ``config.json`` that asks for the model's own code (``auto_map``,
what ``trust_remote_code=True`` would import and run) is refused: fsv never runs a folder's code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from fsv.errors import FsvInputError
from fsv.pipeline.weights import load_state_dict, read_safetensors


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise FsvInputError(f"{path}: missing; a transformers model folder has it (save_pretrained writes it)") from e
    except json.JSONDecodeError as e:
        raise FsvInputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from e
    if not isinstance(data, dict):
        raise FsvInputError(f"{path}: expected a JSON object")
    return data


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of ``folder``; one that needs custom code is an input error saying why."""
    config = read_json(folder / "config.json")
    if config.get("auto_map"):
        raise FsvInputError(
            f"{folder / 'config.json'}: the model needs its own code ({', '.join(config['auto_map'])} in auto_map), which fsv never runs "
            "(no trust_remote_code); use a model whose architecture transformers defines"
        )
    return config


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's weight files (custom code refused, see :func:`read_config`)."""
    read_config(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            if Path(shard).name != shard:
                raise FsvInputError(f"{index}: shard {shard!r} lies outside the folder")
            state.update(read_safetensors(folder / shard))
        return state
    if (folder / "model.safetensors").is_file():
        return read_safetensors(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        return load_state_dict(folder / "pytorch_model.bin")
    raise FsvInputError(f"{folder}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")
