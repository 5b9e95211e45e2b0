"""Probe: is the tiny world's position gap on the UNet's side or on the text side?

Two measurements on the shipped weights of 2026-11-29 (before the layout path of commit 41dcb7e):

1. **Can the text encoder's output tell positions apart?** A linear probe (softmax regression,
   300 full-batch Adam steps) predicts the caption's position (5 words, or "none") and, for
   contrast, its object colour from the shipped text encoder's last hidden states, pooled three
   ways: the mean over tokens, the last token, all 16 tokens flattened. 3,000 training
   captions, 1,000 held out.
2. **Can the UNet draw the object where a clean spatial cue says?** The shipped UNet and text
   encoder are fine-tuned for 200 steps on t in [950, 1000) only (where the noisy input no longer
   shows the object, so only the conditioning can place it), with a cue added to `conv_in`'s
   output: a Gaussian blob (sigma 2 latent pixels) at the caption's position times a learned
   per-channel vector (zero at the start, so the model starts as shipped; no blob when the
   caption names no position). A control run does the same 200 steps without the cue. The
   measure is the centroid of the object (red minus blue) in the decoded t = T prediction for
   "a large red circle on a blue background at the {left,right,top,bottom,center}", 32x32
   pixels; a position-following model moves it by 7 pixels.

    python docs/results/position/text_side_probe.py --out docs/results/position
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ptibench.assets import tiny_world_path
from ptibench.world import components, quality
from ptibench.world.dataset import foreground_alpha, render_set
from ptibench.world.render import COLOURS, POSITIONS, caption, sample_attributes
from ptibench.world.train_t2i import CaptionTokens, latent_loss_weights, training_captions

WORDS = list(POSITIONS)
PROBE_TEMPLATE = "a large red circle on a blue background at the {}"


def named(text: str, word: str, kind: str) -> bool:
    return f" at the {word}" in text if kind == "position" else f" {word} " in f" {text} "


def text_probe(pipe, n_train: int = 3000, n_test: int = 1000) -> dict:
    rng = np.random.default_rng(0)
    attrs = [sample_attributes(rng) for _ in range(n_train + n_test)]
    captions = [caption(a, rng) for a in attrs]
    ids = pipe.tokenizer(
        captions, padding="max_length", max_length=16, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(ids)[0]
    result = {}
    for kind, vocabulary in (("position", WORDS), ("colour", list(COLOURS))):
        labels = torch.tensor(
            [
                vocabulary.index(getattr(a, kind))
                if named(c, getattr(a, kind), kind)
                else len(vocabulary)
                for a, c in zip(attrs, captions, strict=True)
            ]
        )
        majority = float((labels[n_train:] == labels[:n_train].mode().values).float().mean())
        scores = {"majority_class": round(majority, 3)}
        for pooling, x in (
            ("mean", hidden.mean(1)),
            ("last_token", hidden[:, -1]),
            ("flattened", hidden.flatten(1)),
        ):
            mu, sd = x[:n_train].mean(0), x[:n_train].std(0) + 1e-6
            x = (x - mu) / sd
            torch.manual_seed(0)
            probe = torch.nn.Linear(x.shape[1], len(vocabulary) + 1)
            opt = torch.optim.Adam(probe.parameters(), 1e-2)
            for _ in range(300):
                loss = F.cross_entropy(probe(x[:n_train]), labels[:n_train])
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                accuracy = (probe(x[n_train:]).argmax(1) == labels[n_train:]).float().mean()
            scores[pooling] = round(float(accuracy), 3)
        result[kind] = scores
    return result


def blob(position: str | None, size: int = 16, sigma: float = 2.0) -> torch.Tensor:
    if position is None:
        return torch.zeros(size, size)
    ox, oy = POSITIONS[position]
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    cx, cy = size / 2 + ox / 2, size / 2 + oy / 2
    return torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))


@torch.no_grad()
def centroids(pipe, cue: dict | None) -> dict[str, list[float]]:
    """Object centroid (x, y) in the decoded t = T prediction, per position word."""
    ids = pipe.tokenizer(
        [PROBE_TEMPLATE.format(w) for w in WORDS],
        padding="max_length",
        max_length=16,
        return_tensors="pt",
    ).input_ids
    if cue is not None:
        cue["maps"] = torch.stack([blob(w) for w in WORDS])[:, None]
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    v = pipe.unet(noise.expand(len(WORDS), -1, -1, -1), 999, pipe.text_encoder(ids)[0]).sample
    image = pipe.vae.decode(-v / pipe.vae.config.scaling_factor).sample
    red = (image[:, 0] - image[:, 2]).clamp(min=0)
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    mass = red.sum((1, 2))
    cx, cy = (red * xs).sum((1, 2)) / mass, (red * ys).sum((1, 2)) / mass
    return {
        w: [round(float(a), 1), round(float(b), 1)] for w, a, b in zip(WORDS, cx, cy, strict=True)
    }


def fine_tune(steps: int, with_cue: bool) -> dict:
    torch.manual_seed(0)
    pipe = quality.load_pipeline(tiny_world_path())
    unet, text_encoder, vae = pipe.unet, pipe.text_encoder, pipe.vae
    cue = None
    params = list(unet.parameters()) + list(text_encoder.parameters())
    if with_cue:
        vector = torch.nn.Parameter(torch.zeros(1, unet.conv_in.out_channels, 1, 1))
        cue = {"maps": None}
        unet.conv_in.register_forward_hook(lambda m, args, out: out + cue["maps"] * vector)
    data = render_set(10000, 0)
    with torch.no_grad():
        latents = torch.cat([vae.encode(c).latent_dist.mean for c in data.pixels.split(500)])
        latents = latents * vae.config.scaling_factor
    weights = latent_loss_weights(foreground_alpha(data), 10.0)
    tokens = CaptionTokens(pipe.tokenizer)
    scheduler = components.build_train_scheduler()
    groups = [{"params": params, "lr": 1e-3}]
    if with_cue:
        groups.append({"params": [vector], "lr": 1e-2, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    rng, gen = np.random.default_rng(2), torch.Generator().manual_seed(3)
    start, before, losses = time.time(), centroids(pipe, cue), []
    unet.train()
    text_encoder.train()
    for _ in range(steps):
        idx = rng.integers(0, len(latents), 32)
        captions = training_captions(data, idx, rng)
        if cue is not None:
            cue["maps"] = torch.stack(
                [
                    blob(data.attributes[i].position if " at the " in c else None)
                    for i, c in zip(idx, captions, strict=True)
                ]
            )[:, None]
        x0 = latents[torch.from_numpy(idx)]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(950, 1000, (len(idx),), generator=gen)
        pred = unet(scheduler.add_noise(x0, noise, t), t, text_encoder(tokens(captions))[0]).sample
        w = weights[torch.from_numpy(idx)]
        loss = ((pred - scheduler.get_velocity(x0, noise, t)) ** 2 * w).mean() / w.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
    unet.eval()
    text_encoder.eval()
    return {
        "steps": steps,
        "cue": with_cue,
        "loss_first_50": round(float(np.mean(losses[:50])), 4),
        "loss_last_50": round(float(np.mean(losses[-50:])), 4),
        "centroids_before": before,
        "centroids_after": centroids(pipe, cue),
        "seconds": round(time.time() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("docs/results/position"))
    args = parser.parse_args()
    record = {
        "text_probe": text_probe(quality.load_pipeline(tiny_world_path())),
        "with_cue": fine_tune(args.steps, with_cue=True),
        "control": fine_tune(args.steps, with_cue=False),
    }
    print(json.dumps(record, indent=2))
    (args.out / "text_side_probe.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
