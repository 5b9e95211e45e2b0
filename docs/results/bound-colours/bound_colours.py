"""Probe: teach the text encoder to carry each noun's colour in that noun's own state.

With every colour word masked out of the UNet's cross-attention a world reads the held-out
phrasings as it does with them (docs/results/2026-12-05-colour-dropout.md): the states after
the colour words decide which colour is the object's, and decide it the same way. Here the
language phase is continued with an auxiliary loss on the text encoder: at each shape word's
token the state must give the object's colour, at each "background" token the background's,
through a fixed random linear readout (no new trained weights), wherever the caption names that
colour before the noun (a causal state cannot see a colour after it). That teaches the nearest
preceding colour, not the first one; on the known-role slot captions (the default), whose
segment captions name the background first as often as last, the two rules disagree often.

    python docs/results/bound-colours/bound_colours.py train --world W [--weight 0.1] [--seed 0]
        [--language known-roles-slot|plain] [--mask-share 0.5]
    python docs/results/colour-dropout/colour_dropout.py measure --world W --out DIR
    python docs/results/bound-colours/bound_colours.py readout --world W [--out FILE.json]

`readout` reads the trained encoder alone: per held-out set, how often the fixed readout of a
shape word's or "background"'s state gives that noun's colour, over the quality tests' 64
held-out combinations in each phrasing (nouns whose colour comes after them are not read).

`--mask-share S` also masks every colour word out of the UNet's cross-attention in S of the
captions (colour-dropout/colour_dropout.py), so the UNet must read the colours from other states.

`W` is a copy of the shipped world; it is trained in place, as `--part roles` would.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "object-slot"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "colour-dropout"))

from colour_dropout import LANGUAGES, masked, single_token  # noqa: E402  (colour-dropout/colour_dropout.py)
from object_slot import command_parsers, train_phase  # noqa: E402  (object-slot/object_slot.py)

from ptibench.world import quality  # noqa: E402
from ptibench.world import train_language as phase  # noqa: E402
from ptibench.world.render import COLOURS, SHAPES  # noqa: E402
from ptibench.world.train_t2i import CaptionTokens  # noqa: E402

WEIGHT = 0.1
"""The auxiliary loss's weight beside the v-prediction loss (about 0.27 late in the phase)."""

READOUT_SEED = 4343
"""Seed of the fixed readout from a token state to the six colours."""

PART = "bound_colours"


class BoundColours:
    """The auxiliary loss for a batch of captions: cross-entropy of the fixed readout of each
    supervised noun state against the colour bound to that noun."""

    def __init__(self, tokenizer, width: int, attributes):
        self.tokens = CaptionTokens(tokenizer)
        self.colours = list(COLOURS)
        self.colour_ids = [single_token(tokenizer, c) for c in self.colours]
        self.shape_ids = {single_token(tokenizer, s) for s in SHAPES}
        self.background_id = single_token(tokenizer, "background")
        gen = torch.Generator().manual_seed(READOUT_SEED)
        self.readout = torch.randn(width, len(self.colours), generator=gen) / width**0.5
        self.attributes = attributes
        self.history: list[tuple[float, float]] = []

    def targets(self, ids: list[int], attrs) -> list[tuple[int, int]]:
        """(token position, colour index) of each noun whose bound colour is named before it."""
        out = []
        for j, token in enumerate(ids):
            if token in self.shape_ids:
                colour = attrs.colour
            elif token == self.background_id:
                colour = attrs.background
            else:
                continue
            k = self.colours.index(colour)
            if self.colour_ids[k] in ids[:j]:
                out.append((j, k))
        return out

    def loss(self, text_encoder, idx: np.ndarray, texts: list[str]) -> torch.Tensor:
        ids = self.tokens(texts)
        rows, cols, labels = [], [], []
        for r, (i, row) in enumerate(zip(idx, ids.tolist(), strict=True)):
            for j, k in self.targets(row, self.attributes[i]):
                rows.append(r)
                cols.append(j)
                labels.append(k)
        if not rows:
            return torch.zeros(())
        states = text_encoder(ids.to(text_encoder.device))[0][rows, cols]
        logits = states @ self.readout.to(states.device)
        target = torch.tensor(labels, device=states.device)
        loss = F.cross_entropy(logits, target)
        accuracy = float((logits.argmax(1) == target).float().mean())
        self.history.append((float(loss), accuracy))
        return loss


def install(weight: float) -> dict:
    """Add `weight` x the auxiliary loss to the language phase's batches; returns the holder of
    the BoundColours it builds on the first batch (for its history)."""
    plain = phase.language_losses
    held: dict = {}

    def losses(unet, text_encoder, batches):
        if "aux" not in held:
            held["aux"] = BoundColours(
                batches.tokens.tokenizer,
                text_encoder.config.hidden_size,
                batches.data.attributes,
            )
        aux = held["aux"]

        def extra(idx, texts, noisy, t, pred):
            return weight * aux.loss(text_encoder, idx, texts)

        return plain(unet, text_encoder, dataclasses.replace(batches, extra=extra))

    phase.language_losses = losses
    return held


@torch.no_grad()
def readout_accuracy(world: Path) -> dict:
    """Per held-out set (and the training wording): the readout's hits on shape-word states and
    on "background" states, and how many of each were read."""
    pipe = quality.load_pipeline(world)
    text_encoder = pipe.text_encoder.eval()
    combos = quality.held_out_prompts(64)
    aux = BoundColours(pipe.tokenizer, text_encoder.config.hidden_size, combos)
    shape_ids = aux.shape_ids
    sets = {"training wording": (None,), **quality.HELD_OUT_SETS}
    out = {}
    for name, templates in sets.items():
        hits = {"shape": 0, "background": 0}
        read = {"shape": 0, "background": 0}
        for template in templates:
            texts = [
                quality.full_prompt(a) if template is None else quality.phrased_prompt(a, template)
                for a in combos
            ]
            ids = aux.tokens(texts)
            states = text_encoder(ids)[0]
            guesses = (states @ aux.readout).argmax(-1)
            for r, row in enumerate(ids.tolist()):
                for j, k in aux.targets(row, combos[r]):
                    noun = "shape" if row[j] in shape_ids else "background"
                    read[noun] += 1
                    hits[noun] += int(guesses[r, j] == k)
        out[name] = {
            noun: {"hits": hits[noun], "read": read[noun], "share": hits[noun] / max(read[noun], 1)}
            for noun in hits
        }
        print(name, json.dumps(out[name]), flush=True)
    return out


def main() -> None:
    parser, sub, tr = command_parsers(__doc__.splitlines()[0])
    tr.add_argument("--weight", type=float, default=WEIGHT)
    tr.add_argument("--language", choices=sorted(LANGUAGES), default="known-roles-slot")
    tr.add_argument("--mask-share", type=float, default=0.0)
    ro = sub.add_parser("readout")
    ro.add_argument("--world", type=Path, required=True)
    ro.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.command == "readout":
        torch.set_num_threads(1)
        result = readout_accuracy(args.world)
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        return
    torch.set_num_threads(args.threads)
    held = install(args.weight)
    language = LANGUAGES[args.language]
    if args.mask_share:
        language = masked(language, args.mask_share)
    report = train_phase(
        args.world,
        language,
        PART,
        args.seed,
        args.steps,
        language=args.language,
        weight=args.weight,
        readout_seed=READOUT_SEED,
        mask_share=args.mask_share,
    )
    late = held["aux"].history[-100:]
    report["aux_loss_last_100"] = float(np.mean([loss for loss, _ in late]))
    report["aux_accuracy_last_100"] = float(np.mean([acc for _, acc in late]))
    report["aux_loss_first_100"] = float(np.mean([loss for loss, _ in held["aux"].history[:100]]))
    (args.world / f"{PART}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
