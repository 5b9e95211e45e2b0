"""Random-weight worlds and pipelines: for tests and for timing code paths without the trained
world (and, for the real-model paths, without any download).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import torch  # noqa: E402

from ptibench.io import file_lock
from ptibench.models.config import TINY_CLIP_NAME, WorldConfig, tiny_world_config
from ptibench.models.loading import quiet_loading
from ptibench.world import components
from ptibench.world.components import CLIP_CONFIG, write_clip_tokenizer_files


def write_random_world(folder: Path, seed: int = 0) -> WorldConfig:
    """A tiny-world-shaped world with random weights: for tests and for timing code paths
    without waiting for (or depending on) the trained world. Written once per folder (under a
    lock, so parallel test workers share it)."""

    folder = Path(folder)
    with file_lock(folder.with_name(folder.name + ".lock")):
        if not (folder / "lpips" / "alex_backbone.safetensors").is_file():
            with quiet_loading():
                _write_random_world(folder, seed)
    return replace(tiny_world_config(folder), name=str(folder))


def _write_random_world(folder: Path, seed: int) -> None:
    import lpips
    import open_clip
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    folder = Path(folder)
    torch.manual_seed(seed)
    pipe = StableDiffusionPipeline(
        vae=components.build_vae(),
        text_encoder=components.build_text_encoder(),
        tokenizer=components.build_tokenizer(folder / "tokenizer-src"),
        unet=components.build_unet(),
        scheduler=components.build_sample_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder / "pipeline", safe_serialization=True)
    shutil.rmtree(folder / "tokenizer-src", ignore_errors=True)
    clip_dir = folder / "clip"
    clip_dir.mkdir(parents=True, exist_ok=True)
    (clip_dir / f"{TINY_CLIP_NAME}.json").write_text(json.dumps(CLIP_CONFIG))
    open_clip.add_model_config(clip_dir / f"{TINY_CLIP_NAME}.json")
    clip = open_clip.create_model(TINY_CLIP_NAME)
    torch.save({"state_dict": clip.state_dict()}, clip_dir / "open_clip_model.pt")
    metric = lpips.LPIPS(net="alex", lpips=False, pretrained=False, pnet_rand=True, verbose=False)
    (folder / "lpips").mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in metric.net.state_dict().items()},
        str(folder / "lpips" / "alex_backbone.safetensors"),
    )


SD_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    steps_offset=1,
    timestep_spacing="leading",
)


def clip_tokenizer(folder: Path, pad_token: str = "<|endoftext|>"):
    from transformers import CLIPTokenizer

    write_clip_tokenizer_files(folder)
    return CLIPTokenizer(
        vocab=str(folder / "vocab.json"),
        merges=str(folder / "merges.txt"),
        model_max_length=77,
        pad_token=pad_token,
    )


def text_config(hidden: int, layers: int, heads: int, projection: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=4 * hidden if hidden < 256 else 256,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        projection_dim=projection or hidden,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


def vae(width: int):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(width, width, 2 * width, 2 * width),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=width // 2 if width >= 8 else width,
        sample_size=64,
    )


def sd15_pipeline(
    folder: Path, resolution: int = 64, width: int = 8, seed: int = 0, full: bool = False
) -> Path:
    """Write an SD1.5-shaped random pipeline to `folder` (a diffusers folder) and return it.

    full=True: SD1.5's exact sizes (UNet 320-640-1280-1280, two layers per block, VAE
    128-256-512-512, a 12-layer text encoder): for timing on a GPU, not for CPU tests."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=resolution // 8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(320, 640, 1280, 1280) if full else (width * 4,) + (width * 8,) * 3,
        layers_per_block=2 if full else 1,
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32 if full else width,
    )
    text = text_config(768, 12, 12) if full else text_config(768, 2, 12)
    if full:
        text.intermediate_size = 3072
        autoencoder = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
            sample_size=resolution,
        )
    else:
        autoencoder = vae(width)
    pipe = StableDiffusionPipeline(
        vae=autoencoder,
        text_encoder=CLIPTextModel(text),
        tokenizer=clip_tokenizer(Path(folder) / ".tokenizer-src"),
        unet=unet,
        scheduler=DDIMScheduler(**SD_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    shutil.rmtree(Path(folder) / ".tokenizer-src", ignore_errors=True)
    return Path(folder)


def sdxl_pipeline(folder: Path, resolution: int = 64, width: int = 8, seed: int = 0) -> Path:
    """Write an SDXL-shaped random pipeline (two text encoders, text_time UNet) to `folder`."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    hidden_l, hidden_g, pooled, time_dim = 32, 64, 32, 8
    unet = UNet2DConditionModel(
        sample_size=resolution // 8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(width * 4, width * 8, width * 8),
        layers_per_block=1,
        transformer_layers_per_block=(1, 1, 1),
        attention_head_dim=(2, 4, 4),
        cross_attention_dim=hidden_l + hidden_g,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + pooled,
        norm_num_groups=width,
    )
    src = Path(folder) / ".tokenizer-src"
    pipe = StableDiffusionXLPipeline(
        vae=vae(width),
        text_encoder=CLIPTextModel(text_config(hidden_l, 2, 4)),
        text_encoder_2=CLIPTextModelWithProjection(text_config(hidden_g, 2, 4, pooled)),
        tokenizer=clip_tokenizer(src / "l"),
        tokenizer_2=clip_tokenizer(src / "g", pad_token="!"),
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SD_SCHEDULER),
        add_watermarker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    shutil.rmtree(src, ignore_errors=True)
    return Path(folder)
