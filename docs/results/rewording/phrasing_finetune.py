"""Probe: does the shipped tiny world follow held-out phrasings once it has seen its attributes
worded in many ways (none of them a held-out phrasing)?

The shipped world is fine-tuned (text encoder, UNet and its layout map together, the recipe's
layout phase otherwise: half of each batch at t >= 950, the map's own loss against the named
position's blob) on captions drawn half from the recipe's `render.caption` and half from
TRAINING_PHRASINGS below: seven wordings and word orders, none of them a held-out phrasing or one
of its constructions. No training caption equals a held-out prompt (checked before training). The
fine-tuned pipeline is then measured by `rewording_probe.py --world`.

    python docs/results/rewording/phrasing_finetune.py --out /tmp/phrasing-world --steps 1500
    python docs/results/rewording/rewording_probe.py --world /tmp/phrasing-world \
        --out docs/results/rewording/phrasing
    python docs/results/rewording/phrasing_finetune.py --measure /tmp/phrasing-world \
        --out docs/results/rewording/phrasing

`--measure` reads the held-out combinations worded in the phrasings it trained on: whether the
fine-tune learned its own phrasings at all.
"""

from __future__ import annotations

import argparse
import copy
import functools
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from ptibench.assets import tiny_world_path
from ptibench.world import components, quality
from ptibench.world.packaging import load_pipeline
from ptibench.world.recipe import TrainConfig, save_pipeline
from ptibench.world.render import caption
from ptibench.world.train_language import LanguageBatches, fine_tune, language_losses
from ptibench.world.train_layout import layout_optimizer
from ptibench.world.train_t2i import CaptionTokens, cached_latents

TRAINING_PHRASINGS = (
    "{size} {colour} {shape} towards the {position}, {background} background",
    "a picture of a {size} {colour} {shape} near the {position} with a backdrop of {background}",
    "a {size} {colour} {shape} placed {position} with {background} around it",
    "{shape}: {size}, {colour}, {position}, {background}",
    "{background} is the backdrop; the {shape} is {size}, {colour}, {position}",
    "coloured {colour}: a {size} {shape} near the {position}, plain {background} behind it",
    "at the image's {position} part, a {size} {colour} {shape} over {background}",
)
"""Wordings of my own. Each attribute sits in a construction no held-out phrasing uses (the
held-out set says "on the P", "P side", "to the P of", "in the P", "P:", "against B",
"B backdrop", "a B picture", "in C"); "picture", "backdrop" and "with" appear, in other roles."""


PROBE_PROMPTS = 64
"""The held-out combinations `rewording_probe.py` measures (its default)."""


def check_held_out(data) -> None:
    """No caption this probe trains on is a held-out prompt of the rewording probe."""
    held = {
        quality.phrased_prompt(a, t)
        for a in quality.held_out_prompts(PROBE_PROMPTS)
        for t in quality.HELD_OUT_PHRASINGS
    }
    ours = {
        quality.phrased_prompt(a, t)
        for a, t in itertools.product(data.attributes, TRAINING_PHRASINGS)
    }
    if held & ours:
        raise SystemExit(f"a training phrasing gives held-out prompts: {sorted(held & ours)[:3]}")


def phrasings_language(share: float):
    """Captions for `train_language.language_losses`: a training phrasing that names all five
    attributes (a share `share`), else the recipe's caption."""

    def draw(attrs, rng) -> str:
        if rng.random() < share:
            template = TRAINING_PHRASINGS[rng.integers(len(TRAINING_PHRASINGS))]
            return quality.phrased_prompt(attrs, template)
        return caption(attrs, rng)

    return draw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--text-lr", type=float, default=2e-4)
    parser.add_argument("--share", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", type=Path, default=None, help="a fine-tuned world folder")
    args = parser.parse_args()
    if args.measure is not None:
        measure_training_phrasings(args.measure, args.out)
        return
    clock = time.time()
    config = TrainConfig()
    torch.manual_seed(args.seed + 100)
    pipe = load_pipeline(tiny_world_path() / "pipeline")
    vae, text_encoder, tokenizer, unet = pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet
    data, latents, weights = cached_latents(config, vae)
    check_held_out(data)
    tokens = CaptionTokens(tokenizer)
    scheduler = components.build_train_scheduler()
    unet.train()
    text_encoder.train()
    ema_unet, ema_text = copy.deepcopy(unet), copy.deepcopy(text_encoder)
    layout_config = TrainConfig(layout_lr=args.lr)
    opt, rest = layout_optimizer(unet, layout_config)
    text_opt = torch.optim.AdamW(text_encoder.parameters(), lr=args.text_lr, weight_decay=0.01)
    optimizers = [opt, text_opt]
    rng = np.random.default_rng(args.seed + 101)
    gen = torch.Generator().manual_seed(args.seed + 102)
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
                tokens,
                phrasings_language(args.share),
                scheduler,
                data,
                latents,
                weights,
                config,
                rng,
                gen,
            ),
        ),
        args.steps,
        config,
        "phrasings",
    )
    args.out.mkdir(parents=True, exist_ok=True)
    save_pipeline(args.out, vae, ema_text.eval(), tokenizer, ema_unet.eval())
    record = {
        "steps": args.steps,
        "lr": args.lr,
        "text_lr": args.text_lr,
        "phrasing_share": args.share,
        "seed": args.seed,
        "loss_last_100": float(np.mean(losses[-100:])),
        "layout_loss_last_100": float(np.mean(map_losses[-100:])),
        "threads": torch.get_num_threads(),
        "seconds": round(time.time() - clock, 1),
        "training_phrasings": list(TRAINING_PHRASINGS),
    }
    (args.out / "phrasing_finetune.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))


def measure_training_phrasings(world: Path, out: Path) -> None:
    """Prompt following on the held-out combinations worded in TRAINING_PHRASINGS."""
    torch.set_num_threads(1)
    pipe = quality.load_pipeline(world)
    rows = {}
    for template in TRAINING_PHRASINGS:
        score = quality.measure_prompt_following(pipe, PROBE_PROMPTS, template=template)
        rows[template] = {
            key: getattr(score, key)
            for key in ("background", "colour", "position", "size", "shape")
        }
        print(template, json.dumps(rows[template]), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    record = {"prompts": PROBE_PROMPTS, "rows": rows}
    (out / "training_phrasings.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
