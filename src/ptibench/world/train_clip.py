"""The tiny CLIP (open_clip custom model), trained contrastively on captioned renders."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ptibench.world.components import CLIP_CONFIG, CLIP_MODEL_NAME
from ptibench.world.recipe import TrainConfig, cosine_lr, merge_manifest, write_json

from .dataset import render_set
from .render import caption

CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)


CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def clip_normalise(pixels: torch.Tensor) -> torch.Tensor:
    """[-1, 1] NCHW -> open_clip's normalised input (the same as its preprocess would give)."""
    return ((pixels + 1) / 2 - CLIP_MEAN) / CLIP_STD


def train_clip(out: Path, config: TrainConfig) -> dict:
    """Contrastive training of a tiny open_clip model on the world's images and captions."""
    import open_clip

    folder = out / "clip"
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / f"{CLIP_MODEL_NAME}.json", CLIP_CONFIG)
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
            group["lr"] = 5e-4 * cosine_lr(step, config.clip_steps)
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
    merge_manifest(out, "clip", record)
    return record
