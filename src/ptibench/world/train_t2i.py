"""The text encoder and UNet, trained jointly on captioned renders with the object-weighted
v-prediction loss (the object's latent pixels count `t2i_foreground_weight` + 1 times).
"""

from __future__ import annotations

import copy
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ptibench.errors import PtibenchError
from ptibench.world.recipe import TrainConfig, cosine_lr, ema_update, merge_manifest, save_pipeline

from . import components
from .dataset import foreground_alpha, render_set
from .render import caption

CFG_DROPOUT = 0.1
RESUME_FILE = "t2i-resume.pt"
"""The phase's full state at its last `save_every` step, in the world's folder until it ends."""
RESUME_KEYS = (
    "seed",
    "images",
    "t2i_steps",
    "t2i_batch",
    "t2i_lr",
    "t2i_foreground_weight",
    "text_layers",
    "ema_decay",
)
"""The settings a saved state belongs to: resuming under others would train another recipe."""


class CaptionTokens:
    """Tokenises captions once each; the same few thousand captions recur all through training."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cache: dict[str, list[int]] = {}

    def __call__(self, captions: list[str]) -> torch.Tensor:
        rows = []
        for text in captions:
            if text not in self.cache:
                self.cache[text] = self.tokenizer(
                    text, padding="max_length", max_length=components.MAX_TOKENS, truncation=True
                ).input_ids
            rows.append(self.cache[text])
        return torch.tensor(rows)


def latent_loss_weights(alpha: torch.Tensor, foreground_weight: float) -> torch.Tensor:
    """Per-latent-pixel loss weights, (N, 1, h, w), that lift the object's share of the loss.

    The object covers 4-20% of an image, so under a plain MSE the background dominates: a model
    trained that way learns backgrounds and leaves the object's colour and position to the noise.
    The mask is dilated by one latent pixel so the object's edges count too.
    """
    mask = F.max_pool2d(F.avg_pool2d(alpha, 2), 3, stride=1, padding=1)
    return 1.0 + foreground_weight * mask


def training_captions(data, idx, rng) -> list[str]:
    """The recipe's captions for images `idx`: CFG-dropped to "" or randomly thinned and
    reordered (`render.caption`), drawn from `rng` in that order."""
    return ["" if rng.random() < CFG_DROPOUT else caption(data.attributes[i], rng) for i in idx]


@dataclass
class ImageBatches:
    """What a text-to-image phase draws each batch from: the rendered set, its latents and loss
    weights, the caption tokenizer and the two random streams (images and captions from `rng`,
    noise and timesteps from `gen`, in that order: the recipe's data stream). A share
    `high_t_share` of each batch draws t from [high_t_from, T): where the noisy input no longer
    shows where the object is, so only the caption can say it."""

    tokens: CaptionTokens
    scheduler: Any
    data: Any
    latents: torch.Tensor
    weights: torch.Tensor
    batch: int
    rng: np.random.Generator
    gen: torch.Generator
    high_t_share: float = 0.0
    high_t_from: int = 0


def text_to_image_loss(
    unet, text_encoder, batches: ImageBatches, batch_out: dict | None = None
) -> torch.Tensor:
    """One batch's object-weighted v-prediction loss, CFG-dropped captions included.
    `batch_out`, if given, receives the batch's indices, captions and text states."""
    scheduler, latents, weights = batches.scheduler, batches.latents, batches.weights
    rng, gen = batches.rng, batches.gen
    idx = rng.integers(0, len(latents), batches.batch)
    captions = training_captions(batches.data, idx, rng)
    x0 = latents[torch.from_numpy(idx)]
    noise = torch.randn(x0.shape, generator=gen)
    total = scheduler.config.num_train_timesteps
    high = round(len(idx) * batches.high_t_share)
    t = torch.randint(0, total, (len(idx) - high,), generator=gen)
    if high:
        t = torch.cat([torch.randint(batches.high_t_from, total, (high,), generator=gen), t])
    noisy = scheduler.add_noise(x0, noise, t)
    target = scheduler.get_velocity(x0, noise, t)
    hidden = text_encoder(batches.tokens(captions))[0]
    pred = unet(noisy, t, encoder_hidden_states=hidden).sample
    if batch_out is not None:
        batch_out.update(idx=idx, captions=captions, hidden=hidden)
    w = weights[torch.from_numpy(idx)]
    return ((pred - target) ** 2 * w).mean() / w.mean()


def cached_latents(config: TrainConfig, vae):
    """The rendered training set, its latents (scaled) and the per-pixel loss weights."""
    data = render_set(config.images, config.seed)
    with torch.no_grad():
        latents = torch.cat([vae.encode(c).latent_dist.mean for c in data.pixels.split(500)])
        latents = latents * vae.config.scaling_factor
    weights = latent_loss_weights(foreground_alpha(data), config.t2i_foreground_weight)
    return data, latents, weights


def train_text_to_image(out: Path, config: TrainConfig) -> dict:
    """Train text encoder + UNet jointly on cached latents, v-prediction, zero terminal SNR,
    with the object's latent pixels weighted up (see `latent_loss_weights`)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(config.seed + 1)
    vae = AutoencoderKL.from_pretrained(out / "vae")
    data, latents, weights = cached_latents(config, vae)
    tokenizer = components.build_tokenizer(out / "tokenizer-src")
    text_encoder = components.build_text_encoder(config.text_layers)
    unet = components.build_unet()
    scheduler = components.build_train_scheduler()
    ema_text, ema_unet = copy.deepcopy(text_encoder), copy.deepcopy(unet)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=config.t2i_lr, weight_decay=0.01)
    tokens = CaptionTokens(tokenizer)
    rng = np.random.default_rng(config.seed + 2)
    gen = torch.Generator().manual_seed(config.seed + 3)
    batches = ImageBatches(tokens, scheduler, data, latents, weights, config.t2i_batch, rng, gen)
    modules = {"unet": unet, "text": text_encoder, "ema_unet": ema_unet, "ema_text": ema_text}
    state = load_resume_state(out, config, modules, opt, rng, gen)
    first, losses, seconds_before = state["step"], state["losses"], state["seconds"]
    start = time.time()
    steps = range(first, config.t2i_steps)
    for step in tqdm(
        steps, desc="text-to-image", initial=first, total=config.t2i_steps, mininterval=30
    ):
        for group in opt.param_groups:
            group["lr"] = config.t2i_lr * cosine_lr(step, config.t2i_steps)
        loss = text_to_image_loss(unet, text_encoder, batches)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_text, text_encoder, decay)
        losses.append(loss.item())
        last = step + 1 == config.t2i_steps
        if (step + 1) % config.save_every == 0 or last:
            seconds = round(seconds_before + time.time() - start, 1)
            save_pipeline(out, vae, ema_text, tokenizer, ema_unet)
            if not last:
                save_resume_state(out, config, step + 1, modules, opt, rng, gen, losses, seconds)
            record = {
                "steps_done": step + 1,
                "steps": config.t2i_steps,
                "seconds": seconds,
                "loss_last_100": float(np.mean(losses[-100:])),
                "batch": config.t2i_batch,
                "lr": config.t2i_lr,
                "foreground_weight": config.t2i_foreground_weight,
                "text_layers": config.text_layers,
                "threads": torch.get_num_threads(),
            }
            if first:
                record["resumed_at"] = first
            merge_manifest(out, "text_to_image", record)
    (out / RESUME_FILE).unlink(missing_ok=True)
    shutil.rmtree(out / "tokenizer-src", ignore_errors=True)
    return record


def resume_settings(config: TrainConfig) -> dict:
    return {key: getattr(config, key) for key in RESUME_KEYS}


def save_resume_state(out: Path, config, step, modules, opt, rng, gen, losses, seconds) -> None:
    """Everything the next step depends on, written atomically: a run stopped after `step`
    continues bit for bit (on the same thread count) instead of starting the phase again."""
    state = {
        "step": step,
        "settings": resume_settings(config),
        "threads": torch.get_num_threads(),
        "modules": {name: module.state_dict() for name, module in modules.items()},
        "optimizer": opt.state_dict(),
        "rng": rng.bit_generator.state,
        "gen": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "losses": losses,
        "seconds": seconds,
    }
    tmp = out / (RESUME_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out / RESUME_FILE)


def load_resume_state(out: Path, config, modules, opt, rng, gen) -> dict:
    """Restore a saved state into the freshly built run if there is one; a fresh run starts
    at step 0."""
    path = out / RESUME_FILE
    if not path.exists():
        return {"step": 0, "losses": [], "seconds": 0.0}
    state = torch.load(path, weights_only=False)
    settings = resume_settings(config)
    if state["settings"] != settings:
        changed = sorted(k for k in settings if state["settings"].get(k) != settings[k])
        raise PtibenchError(
            f"{path} was saved by a run with other settings ({', '.join(changed)}): "
            "rerun with them, or delete it to train the phase from the start"
        )
    for name, module in modules.items():
        module.load_state_dict(state["modules"][name])
    opt.load_state_dict(state["optimizer"])
    rng.bit_generator.state = state["rng"]
    gen.set_state(state["gen"])
    torch.set_rng_state(state["torch_rng"])
    note = ""
    if state["threads"] != torch.get_num_threads():
        threads = torch.get_num_threads()
        note = f" (saved on {state['threads']} threads, not bit for bit on {threads})"
    print(f"text-to-image: resuming at step {state['step']} from {path}{note}", flush=True)
    return state
