"""Probe: the language phase continued with a text encoder that attends both ways.

Under held-out phrasings the world takes the first colour word for the object's
(docs/results/2026-12-02-caption-language.md). Its text encoder is causal, as CLIP's is, so a
colour word's own state cannot see the noun after it ("a black background ..." and "a black
ring ..." give "black" the same state), and every training caption names a colour's role before
it ("on a", "the background is", a determiner before the object's): the UNet can learn the
binding from the words before a colour, which held-out phrasings do not keep. The colour-dropout
and bound-colours probes (docs/results/2026-12-05-colour-dropout.md) found that the UNet reads a
colour from the states at and after its word, and does not learn to read it from the noun's.
Here every token attends to every other one, so the colour word's own state can carry the noun
that follows it (encoder-only text models such as T5 attend both ways). The shipped world's
language phase is continued on the shipped captions with the causal mask replaced by a full
one; images, captions, noise and timesteps are those of the plain continuation
(`role-words/seed0-plain`), so the comparison with it isolates the mask.

    python docs/results/bidirectional/bidirectional.py train --world W [--seed 0] [--steps 1000]
        [--language plain|known-roles-slot]
    python docs/results/bidirectional/bidirectional.py measure --world W --out DIR [--sets ...]

`W` is a copy of the shipped world; it is trained in place, as `--part roles` would, after its
text encoder config is flagged (both_ways.py): the world then reads prompts both ways wherever
`both_ways` is installed, in `measure` and in the grid (both_ways.py says how).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "object-slot"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "known-roles"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "noise-words"))

import noise_words  # noqa: E402  (noise-words/noise_words.py)
from both_ways import attend_both_ways, first_state_sees_last_word, flag_world  # noqa: E402
from known_roles import KnownRoleSlotLanguage  # noqa: E402  (known-roles/known_roles.py)
from object_slot import (  # noqa: E402  (object-slot/object_slot.py)
    command_parsers,
    measure_parser,
    train_phase,
)

from ptibench.world import quality  # noqa: E402
from ptibench.world.language import CaptionLanguage  # noqa: E402


def both_ways_pipeline(folder: Path):
    """The world's pipeline, its encoder checked to attend both ways."""
    pipe = quality.load_pipeline(folder)
    if not first_state_sees_last_word(pipe.text_encoder, pipe.tokenizer):
        raise RuntimeError("the text encoder still attends one way")
    return pipe


LANGUAGES = {"plain": CaptionLanguage, "known-roles-slot": KnownRoleSlotLanguage}
"""Caption languages to continue on: the shipped one, or the known-role captions with an unseen
word in the shape's place in 0.15 of them (docs/results/known-roles/known_roles.py --slot), whose
segments name the background first as often as last."""


def main() -> None:
    parser, sub, tr = command_parsers(__doc__.splitlines()[0])
    tr.add_argument("--language", choices=sorted(LANGUAGES), default="plain")
    measure_parser(sub)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    attend_both_ways()
    if args.command == "measure":
        noise_words.measure_all(
            str(args.world),
            args.out,
            64,
            args.sets.split(","),
            quality.HELD_OUT_SETS,
            load=both_ways_pipeline,
        )
        return
    flag_world(args.world)
    both_ways_pipeline(args.world)
    report = train_phase(
        args.world,
        LANGUAGES[args.language],
        "bidirectional",
        args.seed,
        args.steps,
        language=args.language,
        attention="every token state attends to every other (no causal mask)",
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
