"""The `language` phase: teach a trained world (after `layout`) to follow its attributes however a
prompt words them.

Two changes, both measured in docs/results/2026-12-02-caption-language.md:
- every caption comes from `language.CaptionLanguage` (thousands of sentence shapes) instead of
  `render.caption`'s one, and the text encoder trains with the UNet;
- the layout map reads the last token state only: its weights for the other fifteen states are
  zeroed and stay zero. The text encoder is causal, so the last state (an end or padding
  token) is the one that has seen the whole prompt; a map over all sixteen states reads which
  word sits in which slot, so its position is lost when a prompt is worded differently. The
  map keeps its shape, so the world's UNet class and folder code do not change.

Otherwise the layout phase's training: half of each batch at t >= 950, the map's own loss
against the named position's blob, EMA. Starts from the saved pipeline.

The shipped world has had it: it runs after `layout` in the recipe's default parts.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import components
from .language import CaptionLanguage
from .packaging import load_pipeline
from .recipe import TrainConfig, cosine_lr, ema_update, merge_manifest, save_pipeline
from .role_language import RoleLanguage
from .train_layout import caption_states, position_map, ridge
from .train_t2i import CFG_DROPOUT, CaptionTokens, cached_latents


def named_position(attrs, text: str) -> str | None:
    """The position a caption names, else None (captions leave attributes out)."""
    return attrs.position if re.search(rf"\b{attrs.position}\b", text) else None


def last_state_block(unet) -> slice:
    """The columns of the layout map's weight that read the last token state."""
    width = unet.config.cross_attention_dim
    return slice(unet.layout.in_features - width, unet.layout.in_features)


def fit_last_state_map(unet, text_encoder, tokens, captions, positions) -> float:
    """Set the layout map to the ridge regression of `positions`' maps on the last token state of
    `captions` (every other state's weights zero). Returns the fit's mean squared error."""
    states = caption_states(text_encoder, tokens, captions)[:, -1]
    size = unet.config.sample_size
    y = torch.stack([position_map(p, size) for p in positions]).flatten(1)
    weight, bias, error = ridge(states, y)
    with torch.no_grad():
        unet.layout.weight.zero_()
        unet.layout.weight[:, last_state_block(unet)] = weight
        unet.layout.bias.copy_(bias)
    return error


def language_captions(language, data, idx, rng) -> tuple[list[str], list[str | None]]:
    """Captions for images `idx` (CFG-dropped to "" or drawn from `language`) and the position
    each one names."""
    texts, named = [], []
    for i in idx:
        text = "" if rng.random() < CFG_DROPOUT else language(data.attributes[i], rng)
        texts.append(text)
        named.append(named_position(data.attributes[i], text) if text else None)
    return texts, named


@dataclass
class LanguageBatches:
    """What the language phase draws each batch from: the caption language, the rendered set,
    its latents and loss weights, the two random streams, and `extra(idx, texts, noisy, t,
    pred)`, a term added to each batch's loss when given (a probe's auxiliary objective)."""

    tokens: CaptionTokens
    language: Callable
    scheduler: Any
    data: Any
    latents: torch.Tensor
    weights: torch.Tensor
    config: TrainConfig
    rng: np.random.Generator
    gen: torch.Generator
    extra: Callable | None = None


def language_losses(
    unet, text_encoder, batches: LanguageBatches
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's object-weighted v-prediction loss (plus `batches.extra`) and the layout map's
    loss against the named positions' blobs. Images and captions come from `batches.rng`, noise
    and timesteps from `batches.gen`, half of the batch at t >= `config.layout_high_t_from`."""
    config, scheduler, latents = batches.config, batches.scheduler, batches.latents
    rng, gen = batches.rng, batches.gen
    idx = rng.integers(0, len(latents), config.t2i_batch)
    texts, named = language_captions(batches.language, batches.data, idx, rng)
    x0 = latents[torch.from_numpy(idx)]
    noise = torch.randn(x0.shape, generator=gen)
    total_t = scheduler.config.num_train_timesteps
    high = round(len(idx) * config.layout_high_t_share)
    t = torch.cat(
        [
            torch.randint(config.layout_high_t_from, total_t, (high,), generator=gen),
            torch.randint(0, total_t, (len(idx) - high,), generator=gen),
        ]
    )
    noisy = scheduler.add_noise(x0, noise, t)
    target = scheduler.get_velocity(x0, noise, t)
    hidden = text_encoder(batches.tokens(texts))[0]
    pred = unet(noisy, t, encoder_hidden_states=hidden).sample
    w = batches.weights[torch.from_numpy(idx)]
    loss = ((pred - target) ** 2 * w).mean() / w.mean()
    if batches.extra is not None:
        loss = loss + batches.extra(idx, texts, noisy, t, pred)
    size = unet.config.sample_size
    blobs = torch.stack([position_map(p, size) for p in named])[:, None]
    return loss, ((unet.layout_map(hidden) - blobs) ** 2).mean()


def language_optimizers(unet, text_encoder, config: TrainConfig):
    """AdamW for the UNet (the map and its scale at lrs of their own) and the text encoder."""
    head = [unet.layout.weight, unet.layout.bias]
    scale = [unet.layout_scale]
    rest = [p for p in unet.parameters() if all(p is not h for h in head + scale)]
    unet_opt = torch.optim.AdamW(
        [
            {"params": rest, "lr": config.language_lr, "weight_decay": 0.01},
            {"params": head, "lr": config.language_map_lr, "weight_decay": 0.0},
            {"params": scale, "lr": config.layout_scale_lr, "weight_decay": 0.0},
        ]
    )
    text_opt = torch.optim.AdamW(
        text_encoder.parameters(), lr=config.language_lr, weight_decay=0.01
    )
    return [unet_opt, text_opt], rest


def fine_tune(
    unet, text_encoder, ema, optimizers, rest, batch_losses, steps: int, config, desc: str
) -> tuple[list[float], list[float]]:
    """`steps` steps of both models on `batch_losses()` (the v-prediction loss and the map's,
    weighted by `config.layout_weight`): cosine lrs with a short warmup, gradients clipped to 1,
    EMA into `ema` (the UNet's and the text encoder's copies). Returns both losses per step."""
    base = [[g["lr"] for g in o.param_groups] for o in optimizers]
    losses, map_losses = [], []
    for step in tqdm(range(steps), desc=desc, mininterval=30):
        scale = cosine_lr(step, steps, warmup=min(50, steps))
        for o, lrs in zip(optimizers, base, strict=True):
            for group, lr in zip(o.param_groups, lrs, strict=True):
                group["lr"] = lr * scale
        loss, layout_loss = batch_losses()
        total = loss + config.layout_weight * layout_loss
        for o in optimizers:
            o.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(rest, 1.0)
        torch.nn.utils.clip_grad_norm_(text_encoder.parameters(), 1.0)
        for o in optimizers:
            o.step()
        decay = min(config.layout_ema_decay, (1 + step) / (10 + step))
        ema_update(ema[0], unet, decay)
        ema_update(ema[1], text_encoder, decay)
        losses.append(loss.item())
        map_losses.append(layout_loss.item())
    return losses, map_losses


def train_language(
    out: Path,
    config: TrainConfig,
    language_class=CaptionLanguage,
    extra=None,
    part: str = "language",
) -> dict:
    """Fine-tune the pipeline in `out` on the caption language with a last-state layout map.
    `language_class(tokenizer)` draws the captions and `extra` adds a term to each batch's loss
    (`LanguageBatches`): both for probes of variants. The record goes to the manifest under
    `part`."""
    torch.manual_seed(config.seed + 100)
    pipe = load_pipeline(out / "pipeline")
    vae, text_encoder, tokenizer, unet = pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet
    data, latents, weights = cached_latents(config, vae)
    language = language_class(tokenizer)
    tokens = CaptionTokens(tokenizer)
    rng = np.random.default_rng(config.seed + 101)
    idx = rng.integers(0, len(data.attributes), config.language_fit_captions)
    texts = [language(data.attributes[i], rng) for i in idx]
    named = [named_position(data.attributes[i], t) for i, t in zip(idx, texts, strict=True)]
    fit_error = fit_last_state_map(unet, text_encoder, tokens, texts, named)
    scheduler = components.build_train_scheduler()
    unet.train()
    text_encoder.train()
    ema_unet, ema_text = copy.deepcopy(unet), copy.deepcopy(text_encoder)
    # Adam leaves a weight whose gradient is always zero where it is, so the other states'
    # blocks of the map stay zero.
    keep = torch.zeros_like(unet.layout.weight)
    keep[:, last_state_block(unet)] = 1.0
    unet.layout.weight.register_hook(lambda grad: grad * keep)
    optimizers, rest = language_optimizers(unet, text_encoder, config)
    gen = torch.Generator().manual_seed(config.seed + 102)
    start = time.time()
    steps = config.language_steps
    losses, map_losses = fine_tune(
        unet,
        text_encoder,
        (ema_unet, ema_text),
        optimizers,
        rest,
        functools.partial(
            language_losses,
            unet,
            text_encoder,
            LanguageBatches(
                tokens, language, scheduler, data, latents, weights, config, rng, gen, extra
            ),
        ),
        steps,
        config,
        "language",
    )
    save_pipeline(out, vae, ema_text.eval(), tokenizer, ema_unet.eval())
    record = {
        "steps": steps,
        "seconds": round(time.time() - start, 1),
        "loss_last_100": float(np.mean(losses[-100:])),
        "layout_loss_last_100": float(np.mean(map_losses[-100:])),
        "last_state_fit_mse": fit_error,
        "lr": config.language_lr,
        "map_lr": config.language_map_lr,
        "batch": config.t2i_batch,
        "threads": torch.get_num_threads(),
    }
    merge_manifest(out, part, record)
    return record


def train_roles(out: Path, config: TrainConfig) -> dict:
    """The `roles` part: the language phase for `config.roles_steps` steps on role-word captions
    (`role_language.RoleLanguage`), with the phase's seeds, lrs and map loss, from whatever the
    pipeline in `out` holds: after `language` it continues that phase, after `layout` it takes
    its place (`--part t2i,layout,roles --roles-steps 1500`)."""
    phase = dataclasses.replace(config, language_steps=config.roles_steps)
    return train_language(out, phase, language_class=RoleLanguage, part="roles")
