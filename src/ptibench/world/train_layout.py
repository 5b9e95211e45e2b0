"""The layout path: a text-to-layout map added to the trained UNet, fitted by ridge regression of
captions' position maps on their token states, then fine-tuned with the UNet (text encoder
frozen; half of each batch at t >= 950, where only the prompt can place the object).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ptibench.world.recipe import TrainConfig, cosine_lr, ema_update, merge_manifest, save_pipeline
from ptibench.world.train_t2i import (
    CaptionTokens,
    ImageBatches,
    cached_latents,
    text_to_image_loss,
    training_captions,
)

from . import components
from .layout_unet import add_layout
from .packaging import load_pipeline
from .render import POSITIONS


def position_map(position: str | None, size: int = 16, sigma: float = 2.0) -> torch.Tensor:
    """The layout target for one caption: a Gaussian blob at the named position on the latent
    grid, or zeros when the caption names none."""
    if position is None:
        return torch.zeros(size, size)
    ox, oy = POSITIONS[position]
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    scale = size / 32
    cx, cy = size / 2 + ox * scale, size / 2 + oy * scale
    return torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))


def _named_position(attrs, text: str) -> str | None:
    """The position a caption names (captions drop attributes at random), else None."""
    return attrs.position if f" at the {attrs.position}" in text else None


def caption_states(text_encoder, tokens, captions: list[str]) -> torch.Tensor:
    """The text encoder's token states of `captions`, (N, tokens, width), 500 at a time, without
    gradients."""
    with torch.no_grad():
        return torch.cat(
            [text_encoder(tokens(captions[k : k + 500]))[0] for k in range(0, len(captions), 500)]
        )


def ridge(
    features: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Ridge regression (penalty 1) of `targets` on `features` plus a bias, in float64. Returns
    the weight as a Linear layer holds it (out, in), the bias, and the fit's mean squared error."""
    x = torch.cat([features, torch.ones(len(features), 1)], 1).double()
    y = targets.double()
    w = torch.linalg.solve(x.T @ x + torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)
    return w[:-1].T.float(), w[-1].float(), float(((x @ w - y) ** 2).mean())


def fit_layout(unet, text_encoder, tokens, data, rng, captions: int = 6000) -> float:
    """Set the layout map to the ridge regression of captions' position maps on their token
    states, so the cue is right from the first step (from zero, the map and the UNet's use of it
    would each wait for the other). Returns the fit's mean squared error."""
    idx = rng.integers(0, len(data.attributes), captions)
    texts = training_captions(data, idx, rng)
    size = unet.config.sample_size
    y = torch.stack(
        [
            position_map(_named_position(data.attributes[i], t), size)
            for i, t in zip(idx, texts, strict=True)
        ]
    ).flatten(1)
    weight, bias, error = ridge(caption_states(text_encoder, tokens, texts).flatten(1), y)
    with torch.no_grad():
        unet.layout.weight.copy_(weight)
        unet.layout.bias.copy_(bias)
    return error


def train_layout(out: Path, config: TrainConfig) -> dict:
    """Second text-to-image phase: give the trained UNet its layout path (see `layout_unet`),
    fit the map, and fine-tune UNet and map with the text encoder frozen, half of each batch at
    t >= 950 (where only the prompt can say where the object goes), plus the map's own loss
    against the caption's position map. Starts from the saved pipeline, so it is the same
    whether run right after `train_text_to_image` or later."""
    torch.manual_seed(config.seed + 4)
    pipe = load_pipeline(out / "pipeline")
    vae, text_encoder, tokenizer = pipe.vae, pipe.text_encoder, pipe.tokenizer
    text_encoder.requires_grad_(False)
    unet = add_layout(pipe.unet)
    data, latents, weights = cached_latents(config, vae)
    tokens = CaptionTokens(tokenizer)
    rng = np.random.default_rng(config.seed + 5)
    fit_error = fit_layout(unet, text_encoder, tokens, data, rng)
    scheduler = components.build_train_scheduler()
    unet.train()
    ema_unet = copy.deepcopy(unet)
    opt, rest = layout_optimizer(unet, config)
    base_lrs = [group["lr"] for group in opt.param_groups]
    gen = torch.Generator().manual_seed(config.seed + 6)
    batches = ImageBatches(
        tokens,
        scheduler,
        data,
        latents,
        weights,
        config.t2i_batch,
        rng,
        gen,
        high_t_share=config.layout_high_t_share,
        high_t_from=config.layout_high_t_from,
    )
    size = unet.config.sample_size
    start = time.time()
    losses: list[float] = []
    for step in tqdm(range(config.layout_steps), desc="layout", mininterval=30):
        scale = cosine_lr(step, config.layout_steps, warmup=min(20, config.layout_steps))
        for group, base in zip(opt.param_groups, base_lrs, strict=True):
            group["lr"] = base * scale
        batch: dict = {}
        loss = text_to_image_loss(unet, text_encoder, batches, batch_out=batch)
        layout_loss = map_loss(unet, data, batch, size)
        total = loss + config.layout_weight * layout_loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(rest, 1.0)
        opt.step()
        decay = min(config.layout_ema_decay, (1 + step) / (10 + step))
        ema_update(ema_unet, unet, decay)
        losses.append(loss.item())
        if (step + 1) % config.save_every == 0 and step + 1 < config.layout_steps:
            save_pipeline(out, vae, text_encoder, tokenizer, ema_unet)
    save_pipeline(out, vae, text_encoder, tokenizer, ema_unet)
    record = layout_record(config, time.time() - start, losses, fit_error, layout_loss)
    merge_manifest(out, "layout", record)
    return record


def layout_optimizer(unet, config: TrainConfig) -> tuple[torch.optim.AdamW, list]:
    """AdamW with the map and its scale at lrs of their own (and the UNet's other weights)."""
    head = [unet.layout.weight, unet.layout.bias, unet.layout_scale]
    rest = [p for p in unet.parameters() if all(p is not h for h in head)]
    # The fitted map is wide (2,048 inputs): at the UNet's lr, Adam's first steps would undo it.
    opt = torch.optim.AdamW(
        [
            {"params": rest, "lr": config.layout_lr, "weight_decay": 0.01},
            {"params": head[:2], "lr": config.layout_map_lr, "weight_decay": 0.0},
            {"params": head[2:], "lr": config.layout_scale_lr, "weight_decay": 0.0},
        ]
    )
    return opt, rest


def map_loss(unet, data, batch: dict, size: int) -> torch.Tensor:
    """The layout map's own squared error against the position maps of the batch's captions."""
    target = torch.stack(
        [
            position_map(_named_position(data.attributes[i], t), size)
            for i, t in zip(batch["idx"], batch["captions"], strict=True)
        ]
    )[:, None]
    return ((unet.layout_map(batch["hidden"]) - target) ** 2).mean()


def layout_record(config: TrainConfig, seconds: float, losses, fit_error, layout_loss) -> dict:
    """The manifest's record of the layout phase."""
    return {
        "steps": config.layout_steps,
        "seconds": round(seconds, 1),
        "loss_last_100": float(np.mean(losses[-100:])),
        "layout_fit_mse": fit_error,
        "layout_loss_last": float(layout_loss.item()),
        "batch": config.t2i_batch,
        "lr": config.layout_lr,
        "map_lr": config.layout_map_lr,
        "scale_lr": config.layout_scale_lr,
        "high_t_share": config.layout_high_t_share,
        "high_t_from": config.layout_high_t_from,
        "threads": torch.get_num_threads(),
    }
