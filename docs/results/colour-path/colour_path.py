"""Probe: does the world follow colour and background under held-out phrasings once the UNet also
gets them from the text encoder's last state, as it gets position?

The causal encoder's last state is the one that has seen the whole prompt, and the layout map
reading it made position follow rewording. Colour reaches the UNet through cross-attention only,
from token states that have seen only the words before them ("black" opening a prompt cannot
know it names the background). Trained to, the encoder carries both colours in its last state
under the role-word language (a linear head, trained with the encoder alone: object and
background read right in 0.91-0.99 of the third, fourth and fifth sets' prompts).

`ColourPathUNet` adds that path to the layout UNet: a head reads the last state as two
distributions (the object's colour and the background's, each over the six colours or
"unnamed"), trained with cross-entropy on the caption's named colours; two zero-initialised
linear maps turn them into a per-channel gain on the layout blob (the object's colour where the
object goes) and a per-channel bias everywhere (the background's), added to `conv_in`'s output
beside the layout cue. With `--xattn-drop P`, a share P of each batch's captions reach
cross-attention as the empty prompt while the layout and colour paths read the caption, so the
UNet must draw position and colour from the paths alone there.

Both continue the shipped world's `language` phase (its lrs, batch and map loss) with the
role-word language (docs/results/role-words/), like the role-word probe's worlds, which are the
comparison.

    python docs/results/colour-path/colour_path.py train --world COPY --seed 0 [--xattn-drop P]
    python docs/results/colour-path/colour_path.py measure --world DIR --out OUT [--sets ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import UNet2DConditionModel

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "role-words"))
sys.path.insert(0, str(HERE.parent / "noise-words"))
sys.path.insert(0, str(HERE.parent / "rewording"))
sys.path.insert(0, str(HERE.parent / "object-slot"))

import noise_words  # noqa: E402
import role_words  # noqa: E402
from object_slot import measure_parser  # noqa: E402  (object-slot/object_slot.py)

from ptibench.world import packaging, train_language  # noqa: E402
from ptibench.world.layout_unet import LayoutUNet2DConditionModel  # noqa: E402
from ptibench.world.quality import HELD_OUT_SETS, SIXTH_CONSTRUCTIONS  # noqa: E402
from ptibench.world.recipe import TrainConfig  # noqa: E402
from ptibench.world.render import COLOURS  # noqa: E402

noise_words.BANNED = (*noise_words.BANNED, *(re.compile(c) for c in SIXTH_CONSTRUCTIONS))

SETS = HELD_OUT_SETS
COLOUR_NAMES = list(COLOURS)
UNNAMED = len(COLOUR_NAMES)
CLASSES = UNNAMED + 1
PATH_LR = 1e-3


class ColourPathUNet(LayoutUNet2DConditionModel):
    """The layout UNet plus a colour path from the last token state (module docstring)."""

    xattn_drop: float = 0.0
    null_states: torch.Tensor | None = None
    last_states: torch.Tensor | None = None

    @functools.wraps(UNet2DConditionModel.__init__)
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        width = self.config.cross_attention_dim
        channels = self.conv_in.out_channels
        self.colour_head = torch.nn.Linear(width, 2 * CLASSES)
        self.colour_gain = torch.nn.Linear(2 * CLASSES, channels, bias=False)
        self.colour_bias = torch.nn.Linear(2 * CLASSES, channels, bias=False)
        torch.nn.init.zeros_(self.colour_gain.weight)
        torch.nn.init.zeros_(self.colour_bias.weight)

    def colour_logits(self, states: torch.Tensor) -> torch.Tensor:
        return self.colour_head(states[:, -1].to(self.colour_head.weight.dtype))

    def forward(self, sample, timestep, encoder_hidden_states, *args, **kwargs):
        logits = self.colour_logits(encoder_hidden_states)
        probs = torch.cat(
            [logits[:, :CLASSES].softmax(-1), logits[:, CLASSES:].softmax(-1)], dim=-1
        )
        blob = self.layout_map(encoder_hidden_states)
        gain = self.layout_scale + self.colour_gain(probs)[..., None, None]
        cue = blob * gain + self.colour_bias(probs)[..., None, None]
        if cue.shape[-2:] != sample.shape[-2:]:
            cue = torch.nn.functional.interpolate(cue, size=sample.shape[-2:], mode="bilinear")
        self.last_states = encoder_hidden_states
        attend = encoder_hidden_states
        if self.training and self.xattn_drop > 0 and self.null_states is not None:
            drop = torch.rand(len(attend)) < self.xattn_drop
            attend = torch.where(drop[:, None, None], self.null_states.to(attend.dtype), attend)
        self.conv_in.cue = cue
        try:
            return super(LayoutUNet2DConditionModel, self).forward(
                sample, timestep, attend, *args, **kwargs
            )
        finally:
            self.conv_in.cue = None


def colour_labels(texts: list[str], attributes: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Each caption's object and background colour class, UNNAMED where it does not name it."""
    obj, bg = [], []
    for text, attrs in zip(texts, attributes, strict=True):
        words = set(re.findall(r"[a-z]+", text))
        obj.append(COLOUR_NAMES.index(attrs.colour) if attrs.colour in words else UNNAMED)
        bg.append(COLOUR_NAMES.index(attrs.background) if attrs.background in words else UNNAMED)
    return torch.tensor(obj), torch.tensor(bg)


def with_colour_path(pipe, xattn_drop: float):
    """`pipe` with its UNet swapped for a ColourPathUNet holding the same weights."""
    unet = ColourPathUNet.from_config(pipe.unet.config)
    missing, unexpected = unet.load_state_dict(pipe.unet.state_dict(), strict=False)
    if unexpected or not all(k.startswith("colour_") for k in missing):
        raise ValueError(f"unexpected UNet: missing {missing}, unexpected {unexpected}")
    unet.xattn_drop = xattn_drop
    with torch.no_grad():
        ids = pipe.tokenizer(
            "", padding="max_length", max_length=pipe.tokenizer.model_max_length
        ).input_ids
        unet.null_states = pipe.text_encoder(torch.tensor([ids]))[0].detach()
    pipe.unet = unet
    return pipe


def train(world: Path, steps: int, seed: int, xattn_drop: float) -> None:
    config = dataclasses.replace(TrainConfig(seed=seed), language_steps=steps)
    load = train_language.load_pipeline
    optimizers = train_language.language_optimizers
    held = {}

    def load_with_path(folder):
        held["pipe"] = with_colour_path(load(folder), xattn_drop)
        return held["pipe"]

    def path_optimizers(unet, text_encoder, config):
        opts, rest = optimizers(unet, text_encoder, config)
        path = [p for name, p in unet.named_parameters() if name.startswith("colour_")]
        ids = {id(p) for p in path}
        opts[0].param_groups[0]["params"] = [
            p for p in opts[0].param_groups[0]["params"] if id(p) not in ids
        ]
        opts[0].add_param_group({"params": path, "lr": PATH_LR, "weight_decay": 0.0})
        return opts, rest

    latents_of = train_language.cached_latents

    def keep_data(*args, **kwargs):
        held["data"], *rest = latents_of(*args, **kwargs)
        return (held["data"], *rest)

    def head_loss(idx, texts, noisy, t, pred):
        unet = held["pipe"].unet
        attrs = [held["data"].attributes[i] for i in idx]
        obj, bg = colour_labels(texts, attrs)
        logits = unet.colour_logits(unet.last_states)
        ce = torch.nn.functional.cross_entropy
        loss = ce(logits[:, :CLASSES], obj) + ce(logits[:, CLASSES:], bg)
        held.setdefault("head_losses", []).append(loss.item())
        return loss

    train_language.cached_latents = keep_data
    train_language.load_pipeline = load_with_path
    train_language.language_optimizers = path_optimizers
    start = time.time()
    record = train_language.train_language(
        world, config, language_class=role_words.RoleLanguage, extra=head_loss
    )
    index_path = world / "pipeline" / "model_index.json"
    index = json.loads(index_path.read_text())
    index["unet"] = [packaging.FOLDER_MODULE, packaging.UNET_CLASS]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    report = {
        "language": "role",
        "steps": steps,
        "seed": seed,
        "xattn_drop": xattn_drop,
        "record": record,
        "head_loss_last_100": float(np.mean(held["head_losses"][-100:])),
        "seconds": round(time.time() - start, 1),
    }
    (world / "colour_path.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def load_world(folder: Path):
    """The world's pipeline with the colour path's UNet, or the plain one for a folder without."""
    pipe = packaging.load_pipeline(folder / "pipeline")
    if (folder / "colour_path.json").is_file():
        unet = ColourPathUNet.from_pretrained(folder / "pipeline" / "unet")
        pipe.unet = unet.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("--world", type=Path, required=True)
    tr.add_argument("--steps", type=int, default=1000)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--xattn-drop", type=float, default=0.0)
    tr.add_argument("--threads", type=int, default=1)
    me = measure_parser(sub)
    me.add_argument("--prompts", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.command == "train":
        train(args.world, args.steps, args.seed, args.xattn_drop)
    else:
        noise_words.measure_all(
            str(args.world), args.out, args.prompts, args.sets.split(","), SETS, load=load_world
        )


if __name__ == "__main__":
    main()
