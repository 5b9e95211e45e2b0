"""Probe: does a caption language with many constructions (`ptibench.world.language`) make the
world follow held-out phrasings, and does it need a layout map that reads the sentence rather
than token slots?

The shipped world is fine-tuned as in `phrasing_finetune.py` (text encoder, UNet and layout map
together, half of each batch at t >= 950, the map's own loss against the named position's blob,
EMA), but every caption comes from `ptibench.world.language` (thousands of sentence shapes, none
a held-out construction: checked before training). `--map` picks the layout map:

- `flat`: the shipped map, a linear function of the 16 token states flattened (it reads slots);
- `last`: a linear function of the last token state only. The text encoder is causal, so the
  last state (a padding or end token) is the one that has seen the whole prompt; the map then
  depends on what the sentence says, not on where a word sits. Started from a ridge fit on the
  shipped encoder's states, at a higher lr than the fitted flat map.

After training, the fine-tuned pipeline is read in-process by the rewording probe's measures (the
64 held-out combinations, one sample each, same seeds, in the training wording and the six
held-out phrasings; the layout map's own reading), and the weights are saved (`--out`).

    python docs/results/rewording/grammar_finetune.py --map flat --out /tmp/grammar-flat
    python docs/results/rewording/grammar_finetune.py --map last --out /tmp/grammar-last
    python docs/results/rewording/grammar_finetune.py --map last --seed 1 --out /tmp/last-seed1
    python docs/results/rewording/grammar_finetune.py --map last --pooled --out /tmp/last-pooled

`--pooled` adds diffusers' stock `addition_embed_type="text"` (an attention pooling of the token
states added to the time embedding). `--remeasure SOURCE --out DIR` reads a fine-tune's saved
weights, a world folder or "shipped" on `quality.CONFIRMATION_PHRASINGS`. The JSON field
`sentence_shapes_in_100k_draws` of the committed runs counts captions with their attribute words
replaced by slot names; the script now records `distinct_captions_in_100k_draws` instead.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import re
import time
import types
from pathlib import Path

import numpy as np
import torch
from rewording_probe import TRAINING, interval, map_reading

from ptibench.assets import tiny_world_path
from ptibench.world import components, quality
from ptibench.world import language as language_module
from ptibench.world.language import CaptionLanguage
from ptibench.world.quality import THIRD_CONSTRUCTIONS, THIRD_PHRASINGS
from ptibench.world.recipe import TrainConfig
from ptibench.world.train_language import (
    LanguageBatches,
    fine_tune,
    language_losses,
    language_optimizers,
    named_position,
)
from ptibench.world.train_layout import caption_states, position_map, ridge
from ptibench.world.train_t2i import CaptionTokens, cached_latents

ATTRIBUTES = ("background", "colour", "position", "size", "shape")

LEAD_BACKGROUNDS = (
    "the {background} background, ",
    "{background} all around, ",
    "{background} behind; ",
    "a {background} background and ",
)
"""`--lead-background`: captions that open with the background colour, its role named only after
the colour word (the construction the first two sets showed the world misreads)."""


class LeadBackgroundLanguage(CaptionLanguage):
    """The caption language, with a share of captions that open with a LEAD_BACKGROUNDS form."""

    def __init__(self, tokenizer, share: float):
        super().__init__(tokenizer)
        self.share = share

    def __call__(self, attrs, rng) -> str:
        if rng.random() >= self.share:
            return super().__call__(attrs, rng)
        lead = LEAD_BACKGROUNDS[rng.integers(len(LEAD_BACKGROUNDS))]
        size, colour = rng.random() < 0.5, rng.random() < 0.85
        text = lead.format(background=attrs.background) + language_module._object_phrase(
            attrs, size, colour, rng
        )
        if rng.random() < 0.8:
            phrase = language_module.POSITION_PHRASES[
                rng.integers(len(language_module.POSITION_PHRASES))
            ]
            text += " " + phrase.format(position=attrs.position)
        return text


def last_state_map(self, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
    """The `last` layout map: a linear function of the last token state."""
    size = self.config.sample_size
    last = encoder_hidden_states[:, -1].to(self.layout.weight.dtype)
    return self.layout(last).view(len(last), 1, size, size)


def use_last_state_map(
    unet, text_encoder, tokens, language, data, rng, captions: int = 6000
) -> float:
    """Swap the flat map for the `last` one, fitted by ridge regression on the language's
    captions."""
    idx = rng.integers(0, len(data.attributes), captions)
    texts = [language(data.attributes[i], rng) for i in idx]
    states = caption_states(text_encoder, tokens, texts)[:, -1]
    size = unet.config.sample_size
    y = torch.stack(
        [
            position_map(named_position(data.attributes[i], t), size)
            for i, t in zip(idx, texts, strict=True)
        ]
    ).flatten(1)
    weight, bias, error = ridge(states, y)
    unet.layout = torch.nn.Linear(states.shape[1], size * size)
    with torch.no_grad():
        unet.layout.weight.copy_(weight)
        unet.layout.bias.copy_(bias)
    unet.layout_map = types.MethodType(last_state_map, unet)
    return error


def add_pooled_embedding(unet):
    """The same UNet with diffusers' stock `addition_embed_type="text"`: an attention pooling
    of all token states added to the time embedding (a sentence-level summary every block
    sees). Its output starts at zero (the last LayerNorm's scale), so the UNet starts as it was."""
    config = {**dict(unet.config), "addition_embed_type": "text"}
    config["addition_embed_type_num_heads"] = 4
    pooled = type(unet).from_config(config)
    missing, unexpected = pooled.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or any(not k.startswith("add_embedding.") for k in missing):
        raise RuntimeError(f"unexpected weights: {unexpected}, missing {missing}")
    with torch.no_grad():
        pooled.add_embedding.norm2.weight.zero_()
    return pooled


def check_no_held_out(
    language, attributes, draws: int = 100_000, third: bool = False, extra: tuple[str, ...] = ()
) -> int:
    """Draw `draws` captions; stop if one has a held-out construction (tests/test_world_language.py
    checks the same), or one of THIRD_CONSTRUCTIONS with `third`, or of `extra`. Returns how
    many distinct captions were drawn."""
    rng = np.random.default_rng(0)
    banned = [re.compile(c) for c in (*quality.HELD_OUT_CONSTRUCTIONS, *extra)]
    if third:
        banned += [re.compile(c) for c in THIRD_CONSTRUCTIONS]
    seen = set()
    for _ in range(draws):
        text = language(attributes[rng.integers(len(attributes))], rng)
        if any(b.search(text) for b in banned):
            raise SystemExit(f"{text!r} has a held-out construction")
        seen.add(text)
    return len(seen)


def train(args, pipe, data, latents, weights) -> dict:
    config = TrainConfig()
    if args.pooled:
        pipe.unet = add_pooled_embedding(pipe.unet)
    text_encoder, unet = pipe.text_encoder, pipe.unet
    tokens = CaptionTokens(pipe.tokenizer)
    language = (
        LeadBackgroundLanguage(pipe.tokenizer, args.lead_background)
        if args.lead_background
        else CaptionLanguage(pipe.tokenizer)
    )
    rng = np.random.default_rng(args.seed + 101)
    fit_error = None
    if args.map == "last":
        fit_error = use_last_state_map(unet, text_encoder, tokens, language, data, rng)
    scheduler = components.build_train_scheduler()
    unet.train()
    text_encoder.train()
    ema_unet, ema_text = copy.deepcopy(unet), copy.deepcopy(text_encoder)
    if args.map == "last":
        ema_unet.layout_map = types.MethodType(last_state_map, ema_unet)
    optimizers, rest = language_optimizers(
        unet, text_encoder, TrainConfig(language_lr=args.lr, language_map_lr=args.map_lr)
    )
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
            LanguageBatches(tokens, language, scheduler, data, latents, weights, config, rng, gen),
        ),
        args.steps,
        config,
        f"grammar/{args.map}",
    )
    pipe.unet, pipe.text_encoder = ema_unet.eval(), ema_text.eval()
    return {
        "loss_last_100": float(np.mean(losses[-100:])),
        "layout_loss_last_100": float(np.mean(map_losses[-100:])),
        "last_map_ridge_fit_mse": fit_error,
    }


def measure(pipe, prompts: int, phrasings=quality.HELD_OUT_PHRASINGS) -> dict:
    """The rewording probe's readings of `pipe` (sampled, then the layout map alone)."""
    combos = quality.held_out_prompts(prompts)
    rows = {}
    for template in (None, *phrasings):
        name = TRAINING if template is None else template
        score = quality.measure_prompt_following(pipe, prompts, template=template)
        if template is None:
            texts = [quality.full_prompt(a) for a in combos]
        else:
            texts = [quality.phrased_prompt(a, template) for a in combos]
        read = map_reading(pipe, texts)
        share = float(np.mean([r == a.position for r, a in zip(read, combos, strict=True)]))
        rows[name] = {
            "example": texts[0],
            **{
                key: {"share": getattr(score, key), "ci95": interval(getattr(score, key), prompts)}
                for key in ATTRIBUTES
            },
            "layout_map_position": {"share": share, "ci95": interval(share, prompts)},
        }
        print(name, json.dumps({k: rows[name][k]["share"] for k in ATTRIBUTES}), flush=True)
    held = [rows[t] for t in phrasings]
    mean = {k: float(np.mean([r[k]["share"] for r in held])) for k in ATTRIBUTES}
    mean["layout_map_position"] = float(np.mean([r["layout_map_position"]["share"] for r in held]))
    return {"rows": rows, "held_out_mean": mean}


def remeasure(source: str, out: Path, prompts: int, third: bool = False) -> None:
    """Read a world on the confirmation phrasings: `source` is "shipped", a world folder (with
    `pipeline/`) or a fine-tune's `--out` folder (its saved weights)."""
    folder = Path(source)
    if (folder / "pipeline").is_dir():
        pipe = quality.load_pipeline(folder)
    else:
        pipe = quality.load_pipeline(tiny_world_path())
    if (folder / "grammar_finetune.json").exists():
        record = json.loads((folder / "grammar_finetune.json").read_text())
        if record.get("pooled"):
            pipe.unet = add_pooled_embedding(pipe.unet)
        if record["map"] == "last":
            width = pipe.text_encoder.config.hidden_size
            size = pipe.unet.config.sample_size
            pipe.unet.layout = torch.nn.Linear(width, size * size)
            pipe.unet.layout_map = types.MethodType(last_state_map, pipe.unet)
        weights = torch.load(folder / "weights.pt")
        pipe.unet.load_state_dict(weights["unet"])
        pipe.text_encoder.load_state_dict(weights["text_encoder"])
    elif source != "shipped" and not (folder / "pipeline").is_dir():
        raise SystemExit(f"{source}: not a world folder nor a fine-tune's folder")
    phrasings = THIRD_PHRASINGS if third else quality.CONFIRMATION_PHRASINGS
    result = measure(pipe, prompts, phrasings)
    out.mkdir(parents=True, exist_ok=True)
    name = "third.json" if third else "confirmation.json"
    (out / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["held_out_mean"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--map", choices=("flat", "last"), default="flat")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--map-lr", type=float, default=None, help="default 1e-4 flat, 1e-3 last")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--pooled", action="store_true", help="add diffusers' text embedding to the time embedding"
    )
    parser.add_argument(
        "--lead-background",
        type=float,
        default=0.0,
        help="share of captions opening with a LEAD_BACKGROUNDS form",
    )
    parser.add_argument("--third", action="store_true", help="--remeasure on THIRD_PHRASINGS")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--remeasure",
        metavar="SOURCE",
        help='read SOURCE ("shipped", a world folder or a fine-tune\'s folder) on '
        "quality.CONFIRMATION_PHRASINGS, into --out",
    )
    args = parser.parse_args()
    if args.remeasure:
        torch.set_num_threads(args.threads)
        remeasure(args.remeasure, args.out, args.prompts, args.third)
        return
    args.map_lr = args.map_lr or (1e-4 if args.map == "flat" else 1e-3)
    torch.set_num_threads(args.threads)
    clock = time.time()
    torch.manual_seed(args.seed + 100)
    pipe = quality.load_pipeline(tiny_world_path())
    data, latents, weights = cached_latents(TrainConfig(), pipe.vae)
    checked = (
        LeadBackgroundLanguage(pipe.tokenizer, args.lead_background)
        if args.lead_background
        else CaptionLanguage(pipe.tokenizer)
    )
    distinct = check_no_held_out(checked, data.attributes, third=bool(args.lead_background))
    record = {"map": args.map, "pooled": args.pooled, "steps": args.steps, "lr": args.lr}
    record["map_lr"] = args.map_lr
    record["lead_background"] = args.lead_background
    record["seed"] = args.seed
    record["distinct_captions_in_100k_draws"] = distinct
    record.update(train(args, pipe, data, latents, weights))
    record["train_seconds"] = round(time.time() - clock, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"unet": pipe.unet.state_dict(), "text_encoder": pipe.text_encoder.state_dict()},
        args.out / "weights.pt",
    )
    record.update(measure(pipe, args.prompts))
    record["threads"] = args.threads
    record["seconds"] = round(time.time() - clock, 1)
    (args.out / "grammar_finetune.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["held_out_mean"]))


if __name__ == "__main__":
    main()
