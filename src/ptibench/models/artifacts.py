"""Trained artifacts in the formats the ecosystem loads: learned_embeds.safetensors
(`pipe.load_textual_inversion`) and pytorch_lora_weights.safetensors (`pipe.load_lora_weights`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..io import atomic_path


def embedding_tensors(bundle, placeholder: str, vector: torch.Tensor) -> dict:
    """The learned_embeds.safetensors content pipe.load_textual_inversion reads: one row under
    the placeholder (SD), or {"clip_l", "clip_g"} (SDXL: load it twice, once per encoder)."""
    method = getattr(bundle, "embedding_tensors", None)
    if method is not None:
        return method(placeholder, vector)
    return {placeholder: vector.detach().float().cpu().reshape(1, -1).contiguous()}


def save_learned_embeds(bundle, path: Path, placeholder: str, vector: torch.Tensor) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(embedding_tensors(bundle, placeholder, vector), str(tmp))


def save_embedding(path: Path, placeholder: str, vector: torch.Tensor) -> None:
    """learned_embeds.safetensors in the format pipe.load_textual_inversion reads."""
    with atomic_path(path) as tmp:
        save_file(
            {placeholder: vector.detach().float().cpu().reshape(1, -1).contiguous()}, str(tmp)
        )


def load_embedding(path: Path) -> torch.Tensor:
    tensors = load_file(str(path))
    return next(iter(tensors.values())).reshape(-1)


def save_lora(unet, folder: Path) -> Path:
    """pytorch_lora_weights.safetensors in the layout pipe.load_lora_weights reads."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    layers = {k: v.detach().float().cpu().contiguous() for k, v in layers.items()}
    StableDiffusionPipeline.save_lora_weights(
        str(folder), unet_lora_layers=layers, safe_serialization=True
    )
    return folder / "pytorch_lora_weights.safetensors"
