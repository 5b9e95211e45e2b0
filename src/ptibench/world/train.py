"""Training recipes for the tiny world's four models, each deterministic given its seed.

Order matters: the VAE first (the text-to-image model trains on its cached latents), then the
text-to-image pipeline, then its layout phase (on the saved pipeline); the CLIP and the LPIPS
backbone are independent of all three.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import StableDiffusionPipeline
from tqdm.auto import tqdm

from . import components
from .dataset import foreground_alpha, render_set
from .layout_unet import add_layout
from .render import COLOURS, POSITIONS, SHAPES, SIZES, caption

CFG_DROPOUT = 0.1


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
    clip_steps: int = 1200
    clip_batch: int = 64
    lpips_steps: int = 1000
    lpips_batch: int = 64


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)


def _merge_manifest(out: Path, part: str, record: dict) -> None:
    path = out / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest[part] = record
    _write_json(path, manifest)


def _cosine_lr(step: int, total: int, warmup: int = 200, floor: float = 0.1) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def train_vae(out: Path, config: TrainConfig) -> dict:
    """Train the 32x32x3 <-> 16x16x4 autoencoder and set its latent scaling factor."""
    torch.manual_seed(config.seed)
    data = render_set(config.images, config.seed).pixels
    vae = components.build_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(config.seed)
    start = time.time()
    for step in tqdm(range(config.vae_steps), desc="vae", mininterval=10):
        for group in opt.param_groups:
            group["lr"] = 2e-3 * _cosine_lr(step, config.vae_steps, floor=0.05)
        batch = data[torch.randint(0, len(data), (config.vae_batch,), generator=gen)]
        posterior = vae.encode(batch).latent_dist
        latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon = vae.decode(latents).sample
        kl = posterior.kl().mean() / latents[0].numel()
        # L1 keeps small objects' edges and holes sharp where MSE alone blurs them.
        loss = F.mse_loss(recon, batch) + F.l1_loss(recon, batch) + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        latents = torch.cat([vae.encode(c).latent_dist.mean for c in data[:2000].split(250)])
        recon_mse = F.mse_loss(vae.decode(latents[:500]).sample, data[:500]).item()
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    folder = out / "vae"
    vae.save_pretrained(folder)
    record = {
        "steps": config.vae_steps,
        "seconds": round(time.time() - start, 1),
        "final_loss": float(loss),
        "recon_mse": recon_mse,
        "scaling_factor": vae.config.scaling_factor,
    }
    _merge_manifest(out, "vae", record)
    return record


class _CaptionTokens:
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


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=False):
            e.lerp_(p, 1 - decay)


def latent_loss_weights(alpha: torch.Tensor, foreground_weight: float) -> torch.Tensor:
    """Per-latent-pixel loss weights, (N, 1, h, w), that lift the object's share of the loss.

    The object covers 4-11% of an image, so under a plain MSE the background dominates: a model
    trained that way learns backgrounds and leaves the object's colour and position to the noise.
    The mask is dilated by one latent pixel so the object's edges count too.
    """
    mask = F.max_pool2d(F.avg_pool2d(alpha, 2), 3, stride=1, padding=1)
    return 1.0 + foreground_weight * mask


def training_captions(data, idx, rng) -> list[str]:
    """The recipe's captions for images `idx`: CFG-dropped to "" or randomly thinned and
    reordered (`render.caption`), drawn from `rng` in that order."""
    return ["" if rng.random() < CFG_DROPOUT else caption(data.attributes[i], rng) for i in idx]


def text_to_image_loss(
    unet,
    text_encoder,
    tokens,
    scheduler,
    data,
    latents,
    weights,
    batch: int,
    rng,
    gen,
    high_t_share: float = 0.0,
    high_t_from: int = 0,
    batch_out: dict | None = None,
) -> torch.Tensor:
    """One batch's object-weighted v-prediction loss. Images and captions (CFG-dropped) come from
    `rng`, noise and timesteps from `gen`, in that order: the recipe's data stream. A share
    `high_t_share` of the batch draws t from [high_t_from, T): where the noisy input no longer
    shows where the object is, so only the caption can say it. `batch_out`, if given, receives
    the batch's indices, captions and text states."""
    idx = rng.integers(0, len(latents), batch)
    captions = training_captions(data, idx, rng)
    x0 = latents[torch.from_numpy(idx)]
    noise = torch.randn(x0.shape, generator=gen)
    total = scheduler.config.num_train_timesteps
    high = round(len(idx) * high_t_share)
    t = torch.randint(0, total, (len(idx) - high,), generator=gen)
    if high:
        t = torch.cat([torch.randint(high_t_from, total, (high,), generator=gen), t])
    noisy = scheduler.add_noise(x0, noise, t)
    target = scheduler.get_velocity(x0, noise, t)
    hidden = text_encoder(tokens(captions))[0]
    pred = unet(noisy, t, encoder_hidden_states=hidden).sample
    if batch_out is not None:
        batch_out.update(idx=idx, captions=captions, hidden=hidden)
    w = weights[torch.from_numpy(idx)]
    return ((pred - target) ** 2 * w).mean() / w.mean()


def _cached_latents(config: TrainConfig, vae):
    """The rendered training set, its latents (scaled) and the per-pixel loss weights."""
    data = render_set(config.images, config.seed)
    with torch.no_grad():
        latents = torch.cat([vae.encode(c).latent_dist.mean for c in data.pixels.split(500)])
        latents = latents * vae.config.scaling_factor
    weights = latent_loss_weights(foreground_alpha(data), config.t2i_foreground_weight)
    return data, latents, weights


def train_text_to_image(out: Path, config: TrainConfig, resume: bool = False) -> dict:
    """Train text encoder + UNet jointly on cached latents, v-prediction, zero terminal SNR,
    with the object's latent pixels weighted up (see `latent_loss_weights`)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(config.seed + 1)
    vae = AutoencoderKL.from_pretrained(out / "vae")
    data, latents, weights = _cached_latents(config, vae)
    tokenizer = components.build_tokenizer(out / "tokenizer-src")
    text_encoder = components.build_text_encoder()
    unet = components.build_unet()
    scheduler = components.build_train_scheduler()
    ema_text, ema_unet = copy.deepcopy(text_encoder), copy.deepcopy(unet)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=config.t2i_lr, weight_decay=0.01)
    tokens = _CaptionTokens(tokenizer)
    rng = np.random.default_rng(config.seed + 2)
    gen = torch.Generator().manual_seed(config.seed + 3)
    start = time.time()
    losses: list[float] = []
    for step in tqdm(range(config.t2i_steps), desc="text-to-image", mininterval=30):
        for group in opt.param_groups:
            group["lr"] = config.t2i_lr * _cosine_lr(step, config.t2i_steps)
        loss = text_to_image_loss(
            unet,
            text_encoder,
            tokens,
            scheduler,
            data,
            latents,
            weights,
            config.t2i_batch,
            rng,
            gen,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        _ema_update(ema_unet, unet, decay)
        _ema_update(ema_text, text_encoder, decay)
        losses.append(loss.item())
        last = step + 1 == config.t2i_steps
        if (step + 1) % config.save_every == 0 or last:
            save_pipeline(out, vae, ema_text, tokenizer, ema_unet)
            record = {
                "steps_done": step + 1,
                "steps": config.t2i_steps,
                "seconds": round(time.time() - start, 1),
                "loss_last_100": float(np.mean(losses[-100:])),
                "batch": config.t2i_batch,
                "lr": config.t2i_lr,
                "foreground_weight": config.t2i_foreground_weight,
                "threads": torch.get_num_threads(),
            }
            _merge_manifest(out, "text_to_image", record)
    shutil.rmtree(out / "tokenizer-src", ignore_errors=True)
    return record


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


def fit_layout(unet, text_encoder, tokens, data, rng, captions: int = 6000) -> float:
    """Set the layout map to the ridge regression of captions' position maps on their token
    states, so the cue is right from the first step (from zero, the map and the UNet's use of it
    would each wait for the other). Returns the fit's mean squared error."""
    idx = rng.integers(0, len(data.attributes), captions)
    texts = training_captions(data, idx, rng)
    with torch.no_grad():
        x = torch.cat(
            [text_encoder(tokens(texts[k : k + 500]))[0] for k in range(0, captions, 500)]
        )
    x = torch.cat([x.flatten(1), torch.ones(captions, 1)], 1).double()
    size = unet.config.sample_size
    y = torch.stack(
        [
            position_map(_named_position(data.attributes[i], t), size)
            for i, t in zip(idx, texts, strict=True)
        ]
    ).flatten(1)
    w = torch.linalg.solve(x.T @ x + torch.eye(x.shape[1], dtype=x.dtype), x.T @ y.double())
    with torch.no_grad():
        unet.layout.weight.copy_(w[:-1].T.float())
        unet.layout.bias.copy_(w[-1].float())
    return float(((x @ w - y) ** 2).mean())


def train_layout(out: Path, config: TrainConfig) -> dict:
    """Second text-to-image phase: give the trained UNet its layout path (see `layout_unet`),
    fit the map, and fine-tune UNet and map with the text encoder frozen, half of each batch at
    t >= 950 (where only the prompt can say where the object goes), plus the map's own loss
    against the caption's position map. Starts from the saved pipeline, so it is the same
    whether run right after `train_text_to_image` or later."""
    torch.manual_seed(config.seed + 4)
    pipe = StableDiffusionPipeline.from_pretrained(out / "pipeline", torch_dtype=torch.float32)
    vae, text_encoder, tokenizer = pipe.vae, pipe.text_encoder, pipe.tokenizer
    text_encoder.requires_grad_(False)
    unet = add_layout(pipe.unet)
    data, latents, weights = _cached_latents(config, vae)
    tokens = _CaptionTokens(tokenizer)
    rng = np.random.default_rng(config.seed + 5)
    fit_error = fit_layout(unet, text_encoder, tokens, data, rng)
    scheduler = components.build_train_scheduler()
    unet.train()
    ema_unet = copy.deepcopy(unet)
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
    base_lrs = [group["lr"] for group in opt.param_groups]
    gen = torch.Generator().manual_seed(config.seed + 6)
    size = unet.config.sample_size
    start = time.time()
    losses: list[float] = []
    for step in tqdm(range(config.layout_steps), desc="layout", mininterval=30):
        scale = _cosine_lr(step, config.layout_steps, warmup=min(20, config.layout_steps))
        for group, base in zip(opt.param_groups, base_lrs, strict=True):
            group["lr"] = base * scale
        batch: dict = {}
        loss = text_to_image_loss(
            unet,
            text_encoder,
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
            batch_out=batch,
        )
        target = torch.stack(
            [
                position_map(_named_position(data.attributes[i], t), size)
                for i, t in zip(batch["idx"], batch["captions"], strict=True)
            ]
        )[:, None]
        layout_loss = ((unet.layout_map(batch["hidden"]) - target) ** 2).mean()
        total = loss + config.layout_weight * layout_loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(rest, 1.0)
        opt.step()
        decay = min(config.layout_ema_decay, (1 + step) / (10 + step))
        _ema_update(ema_unet, unet, decay)
        losses.append(loss.item())
        if (step + 1) % config.save_every == 0 and step + 1 < config.layout_steps:
            save_pipeline(out, vae, text_encoder, tokenizer, ema_unet)
    save_pipeline(out, vae, text_encoder, tokenizer, ema_unet)
    record = {
        "steps": config.layout_steps,
        "seconds": round(time.time() - start, 1),
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
    _merge_manifest(out, "layout", record)
    return record


def save_pipeline(out: Path, vae, text_encoder, tokenizer, unet) -> None:
    """Write a diffusers StableDiffusionPipeline folder atomically (fp16 weights)."""
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
    final = out / "pipeline"
    old = out / "pipeline.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


CLIP_MODEL_NAME = "ptibench-tiny-clip"
CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 128, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3},
}


def train_clip(out: Path, config: TrainConfig) -> dict:
    """Contrastive training of a tiny open_clip model on the world's images and captions."""
    import open_clip

    folder = out / "clip"
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / f"{CLIP_MODEL_NAME}.json", CLIP_CONFIG)
    open_clip.add_model_config(folder / f"{CLIP_MODEL_NAME}.json")
    torch.manual_seed(config.seed + 10)
    model = open_clip.create_model(CLIP_MODEL_NAME)
    tokenizer = open_clip.get_tokenizer(CLIP_MODEL_NAME)
    data = render_set(config.images, config.seed + 11)
    pixels = clip_normalise(data.pixels)
    rng = np.random.default_rng(config.seed + 12)
    gen = torch.Generator().manual_seed(config.seed + 13)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.1)
    start = time.time()
    for step in tqdm(range(config.clip_steps), desc="clip", mininterval=10):
        for group in opt.param_groups:
            group["lr"] = 5e-4 * _cosine_lr(step, config.clip_steps)
        idx = rng.integers(0, len(pixels), config.clip_batch)
        images = pixels[torch.from_numpy(idx)]
        shift = torch.randint(-1, 2, (2,), generator=gen)
        images = torch.roll(images, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
        texts = tokenizer([caption(data.attributes[i], rng) for i in idx])
        img_f, txt_f, scale = model(images, texts)
        logits = scale * img_f @ txt_f.T
        # Captions repeat within a batch: every pair with the same caption is a positive.
        same = (texts[:, None, :] == texts[None, :, :]).all(-1).float()
        target = same / same.sum(1, keepdim=True)
        loss = (
            torch.sum(-target * logits.log_softmax(1), 1).mean()
            + torch.sum(-target * logits.T.log_softmax(1), 1).mean()
        ) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    # fp16 storage halves the fixture; open_clip casts back to the model's fp32 on load.
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"state_dict": half}, folder / "open_clip_model.pt")
    record = {
        "steps": config.clip_steps,
        "seconds": round(time.time() - start, 1),
        "loss": float(loss),
    }
    _merge_manifest(out, "clip", record)
    return record


CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def clip_normalise(pixels: torch.Tensor) -> torch.Tensor:
    """[-1, 1] NCHW -> open_clip's normalised input (the same as its preprocess would give)."""
    return ((pixels + 1) / 2 - CLIP_MEAN) / CLIP_STD


LPIPS_RESOLUTION = 64


def train_lpips_backbone(out: Path, config: TrainConfig) -> dict:
    """Train the AlexNet feature stack LPIPS uses, by predicting every attribute of the image.

    Features that separate shape, colour, background, position and size are the perceptual
    features of this world; LPIPS then compares images in that feature space.
    """
    import lpips

    torch.manual_seed(config.seed + 20)
    metric = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
    backbone = metric.net
    heads = torch.nn.ModuleDict(
        {
            "shape": torch.nn.Linear(256 * 9, len(SHAPES)),
            "colour": torch.nn.Linear(256 * 9, len(COLOURS)),
            "background": torch.nn.Linear(256 * 9, len(COLOURS)),
            "position": torch.nn.Linear(256 * 9, len(POSITIONS)),
            "size": torch.nn.Linear(256 * 9, len(SIZES)),
        }
    )
    vocab = {
        "shape": list(SHAPES),
        "colour": list(COLOURS),
        "background": list(COLOURS),
        "position": list(POSITIONS),
        "size": list(SIZES),
    }
    data = render_set(config.images, config.seed + 21)
    labels = {
        key: torch.tensor([values.index(getattr(a, key)) for a in data.attributes])
        for key, values in vocab.items()
    }
    for p in backbone.parameters():
        p.requires_grad_(True)
    params = list(backbone.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(config.seed + 22)
    start = time.time()
    for _step in tqdm(range(config.lpips_steps), desc="lpips", mininterval=10):
        idx = torch.randint(0, len(data.pixels), (config.lpips_batch,), generator=gen)
        images = F.interpolate(data.pixels[idx], size=LPIPS_RESOLUTION, mode="bilinear")
        feats = backbone(metric.scaling_layer(images))[-1]
        pooled = F.adaptive_avg_pool2d(feats, 3).flatten(1)
        loss = sum(F.cross_entropy(heads[k](pooled), labels[k][idx]) for k in heads)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    folder = out / "lpips"
    folder.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(
        {k: v.half().contiguous() for k, v in backbone.state_dict().items()},
        str(folder / "alex_backbone.safetensors"),
    )
    record = {
        "steps": config.lpips_steps,
        "seconds": round(time.time() - start, 1),
        "loss": float(loss),
    }
    _merge_manifest(out, "lpips", record)
    return record


def config_record(config: TrainConfig) -> dict:
    return asdict(config)
