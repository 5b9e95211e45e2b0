"""Probe: hide the colour words from the UNet's cross-attention in a share of the captions.

Under held-out phrasings the world takes the first colour word for the object's
(docs/results/2026-12-03-larger-object-world.md). Its text encoder is causal, so a colour word's
own state cannot know whether a shape or a background word follows it; the states after it can
("black background" carries black in the state of "background", "yellow ring" yellow in the
state of "ring"). Here the language phase is continued on the shipped captions, and in `share`
of them every colour word's token state is masked out of the UNet's cross-attention (diffusers'
`encoder_attention_mask`): there the UNet must read both colours from the states that come
after them, which hold their role. The captions, images, noise and timesteps are the plain
continuation's (the mask draws from a generator of its own), so the comparison with it isolates
the mask.

    python docs/results/colour-dropout/colour_dropout.py train --world W [--share 0.5] [--seed 0]
        [--language plain|known-roles-slot]

`--language known-roles-slot` continues on the known-role captions with unseen words in the
shape's place instead (the one caption variant that kept a learnt concept in background edits,
docs/results/2026-12-05-known-roles.md): their segment captions name the background first as
often as last, so the first colour word is no longer the object's by rule.

`W` is a copy of the shipped world; it is trained in place, as `--part roles` would.

    python docs/results/colour-dropout/colour_dropout.py measure --world W --out DIR
        [--sets first,confirmation,third] [--mask-colours]

measures prompt following as `colour-path/colour_path.py measure` does; `--mask-colours` masks
every colour word out of the UNet's cross-attention at sampling too, so the images show what the
states after the colour words carry; `--mask-ends` also masks the end-of-text and padding states
(which have read the whole prompt), leaving the UNet the states of the words themselves.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "object-slot"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "known-roles"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "noise-words"))

import noise_words  # noqa: E402  (noise-words/noise_words.py)
from known_roles import KnownRoleSlotLanguage  # noqa: E402  (known-roles/known_roles.py)
from object_slot import (  # noqa: E402  (object-slot/object_slot.py)
    command_parsers,
    measure_parser,
    train_phase,
)

from ptibench.world import quality  # noqa: E402
from ptibench.world import train_language as phase  # noqa: E402
from ptibench.world.language import CaptionLanguage  # noqa: E402
from ptibench.world.render import COLOURS  # noqa: E402

SHARE = 0.5
"""Share of captions whose colour words the UNet's cross-attention does not see."""

MASK_SEED = 4242
"""Seed of the mask's own generator (the phase's caption and noise streams stay untouched)."""


def single_token(tokenizer, word: str) -> int:
    """`word`'s one token id in the world's tokenizer (the masks and readouts work per token)."""
    ids = tokenizer(word, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise ValueError(f"{word!r} is not one token of the world's tokenizer")
    return ids[0]


class ColourMask:
    """Per batch of token ids: an (B, T) keep-mask with every colour word's position zeroed in
    about `share` of the rows, drawn from a generator of its own; with `ends`, the end-of-text
    and padding positions too (their states have read the whole prompt)."""

    def __init__(self, tokenizer, share: float, seed: int = MASK_SEED, ends: bool = False):
        hidden = [single_token(tokenizer, c) for c in COLOURS]
        hidden += [tokenizer.eos_token_id] if ends else []
        self.colour_ids = torch.tensor(hidden)
        self.share = share
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        hidden = torch.rand(ids.shape[0], generator=self.gen) < self.share
        is_colour = torch.isin(ids, self.colour_ids)
        return (~(is_colour & hidden[:, None])).float()


def masked_losses(mask: ColourMask):
    """`train_language.language_losses`, with the UNet called under `mask` of the batch's ids."""
    plain = phase.language_losses

    def losses(unet, text_encoder, batches):
        seen: dict[str, torch.Tensor] = {}

        def tokens(texts):
            seen["ids"] = batches.tokens(texts)
            return seen["ids"]

        tokens.tokenizer = batches.tokens.tokenizer

        forward = unet.forward

        def masked_forward(sample, timestep, encoder_hidden_states, *args, **kwargs):
            keep = mask(seen["ids"]).to(encoder_hidden_states.device)
            return forward(
                sample,
                timestep,
                encoder_hidden_states,
                *args,
                encoder_attention_mask=keep,
                **kwargs,
            )

        unet.forward = masked_forward
        try:
            return plain(unet, text_encoder, dataclasses.replace(batches, tokens=tokens))
        finally:
            del unet.forward

    return losses


def masked(language_class, share: float):
    """`language_class` whose construction (once per phase, with the world's tokenizer) installs
    the colour mask in the phase's loss."""

    class Masked(language_class):
        def __init__(self, tokenizer, *args, **kwargs):
            super().__init__(tokenizer, *args, **kwargs)
            phase.language_losses = masked_losses(ColourMask(tokenizer, share))

    return Masked


LANGUAGES = {"plain": CaptionLanguage, "known-roles-slot": KnownRoleSlotLanguage}
"""Caption languages to continue on: the shipped one, or the known-role captions with an unseen
word in the shape's place in 0.15 of them (docs/results/known-roles/known_roles.py --slot)."""


def colour_blind_pipeline(folder: Path, ends: bool = False):
    """The world's pipeline with every colour word masked out of the UNet's cross-attention: the
    text encoder's calls (prompt, then the unconditional one) are kept, and the UNet's batch
    (unconditional half first) gets the matching masks."""
    pipe = quality.load_pipeline(folder)
    mask = ColourMask(pipe.tokenizer, share=1.0, ends=ends)
    seen: list[torch.Tensor] = []
    encode, forward = pipe.text_encoder.forward, pipe.unet.forward

    def kept_encode(input_ids, *args, **kwargs):
        seen.append(input_ids)
        return encode(input_ids, *args, **kwargs)

    def masked_forward(sample, timestep, encoder_hidden_states, *args, **kwargs):
        prompt, unconditional = seen[-2], seen[-1]
        keep = torch.cat([mask(unconditional), mask(prompt)])
        if len(keep) != len(encoder_hidden_states):
            raise ValueError("the UNet's batch is not the last two text encoder calls")
        kwargs["encoder_attention_mask"] = keep.to(encoder_hidden_states.device)
        return forward(sample, timestep, encoder_hidden_states, *args, **kwargs)

    pipe.text_encoder.forward, pipe.unet.forward = kept_encode, masked_forward
    return pipe


def main() -> None:
    parser, sub, tr = command_parsers(__doc__.splitlines()[0])
    tr.add_argument("--share", type=float, default=SHARE, help="share of captions masked")
    tr.add_argument("--language", choices=sorted(LANGUAGES), default="plain")
    me = measure_parser(sub, sets="first,confirmation,third")
    me.add_argument("--mask-colours", action="store_true")
    me.add_argument(
        "--mask-ends",
        action="store_true",
        help="with --mask-colours: the end and padding states too",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.command == "measure":
        load = quality.load_pipeline
        if args.mask_colours:
            load = functools.partial(colour_blind_pipeline, ends=args.mask_ends)
        noise_words.measure_all(
            str(args.world), args.out, 64, args.sets.split(","), quality.HELD_OUT_SETS, load=load
        )
        return
    report = train_phase(
        args.world,
        masked(LANGUAGES[args.language], args.share),
        "colour_dropout",
        args.seed,
        args.steps,
        language=args.language,
        share=args.share,
        mask_seed=MASK_SEED,
        masked="every colour word's token state, in the UNet's cross-attention",
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
