"""The world's training recipe: its settings (TrainConfig: the defaults are the shipped recipe)
and what every part's training shares (the manifest, the lr schedule, EMA, saving the pipeline).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from . import components
from .packaging import package_pipeline


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of the world's recipe; the defaults are what the shipped weights were trained with."""

    seed: int = 0
    images: int = 10000
    vae_steps: int = 2500
    vae_batch: int = 16
    t2i_steps: int = 7000
    t2i_batch: int = 32
    t2i_lr: float = 8e-4
    t2i_foreground_weight: float = 10.0
    text_layers: int = components.TEXT_LAYERS
    ema_decay: float = 0.999
    save_every: int = 500
    layout_steps: int = 1000
    layout_lr: float = 5e-4
    layout_map_lr: float = 1e-4
    layout_scale_lr: float = 1e-3
    layout_weight: float = 10.0
    layout_high_t_share: float = 0.5
    layout_high_t_from: int = 950
    layout_ema_decay: float = 0.995
    language_steps: int = 1500
    language_lr: float = 2e-4
    language_map_lr: float = 1e-3
    language_fit_captions: int = 6000
    roles_steps: int = 1000
    clip_steps: int = 1200
    clip_batch: int = 64
    lpips_steps: int = 1000
    lpips_batch: int = 64


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)


def merge_manifest(out: Path, part: str, record: dict) -> None:
    path = out / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest[part] = record
    write_json(path, manifest)


def cosine_lr(step: int, total: int, warmup: int = 200, floor: float = 0.1) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=False):
            e.lerp_(p, 1 - decay)


def save_pipeline(out: Path, vae, text_encoder, tokenizer, unet) -> None:
    """Write a diffusers StableDiffusionPipeline folder atomically (fp16 weights, loading in
    float32; see `packaging`)."""
    pipe = StableDiffusionPipeline(
        vae=copy.deepcopy(vae).half(),
        text_encoder=copy.deepcopy(text_encoder).half(),
        tokenizer=tokenizer,
        unet=copy.deepcopy(unet).half(),
        scheduler=components.build_sample_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    tmp = out / "pipeline.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    package_pipeline(tmp)
    final = out / "pipeline"
    old = out / "pipeline.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def config_record(config: TrainConfig) -> dict:
    return asdict(config)
