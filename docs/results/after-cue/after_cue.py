"""Probe: does the world read a background from the known words after its colour once its
captions teach that cue?

The shipped world takes a colour's role from the words before it: every background phrase of
its captions puts a marker there ("on a", "over plain", "background is"). Known words after the
colour carry part of the role even so ("{background} all around and ...": 0.53;
docs/results/2026-12-07-held-out-vocabulary.md). `AfterCueLanguage` draws, in `share` of the
captions, the object phrase (and a position phrase) joined to a background clause whose colour
comes first and whose role words follow it ("{background} is all around it"), in front of the
object or after it; the rest are the shipped captions. No caption uses a held-out construction
of the six sets or the skeleton of a known-word phrasing (`check`).

Both worlds continue the shipped world's `language` phase for `--steps` (the phase's lrs,
batch, map loss and seed): one on `AfterCueLanguage`, one on the shipped captions (the control:
the same extra training without the cue). Predictions 57-60 were committed before either ran
([predictions.md](predictions.md)).

    D=docs/results/after-cue
    python $D/after_cue.py check
    python $D/after_cue.py train --world W_AFTER --language after --threads 1
    python $D/after_cue.py train --world W_PLAIN --language plain --threads 1
    python $D/after_cue.py measure --world W_AFTER --out $D/after --sets first,...,known
    python $D/after_cue.py table plain=$D/plain after=$D/after
    python $D/after_cue.py starts plain=$D/plain after=$D/after

`--language lead` (`LeadLanguage`) is the after-cue captions with half of the clauses in front
led by a noise word, so that the background's colour no longer always opens the caption
(docs/results/2026-12-07-after-cue-lead.md; predictions 73-78 committed first).

`--share` sets the share of after-cue captions (0.3 unless told;
docs/results/2026-12-07-after-cue-lead-grid.md trains the lead captions at 0.6).

`W_*` are copies of the shipped world, trained in place. On a world that has had only its
text-to-image and layout phases, `train --steps 1500` is that world's language phase itself
(docs/results/2026-12-07-after-cue-from-start.md).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "object-slot"))
sys.path.insert(0, str(HERE.parent / "noise-words"))
sys.path.insert(0, str(HERE.parent / "held-out-vocabulary"))
sys.path.insert(0, str(HERE.parent / "bidirectional"))

import noise_words  # noqa: E402  (noise-words/noise_words.py)
from known_words import KNOWN_WORD_PHRASINGS, skeleton  # noqa: E402  (held-out-vocabulary/)
from object_slot import command_parsers, measure_parser, train_phase  # noqa: E402
from phrasing_tables import (  # noqa: E402  (bidirectional/phrasing_tables.py)
    background_shares,
    object_colour_first,
)

from ptibench.world import language, quality, role_language  # noqa: E402
from ptibench.world.language import CaptionLanguage  # noqa: E402
from ptibench.world.render import Attributes, sample_attributes  # noqa: E402

SHARE = 0.3
"""Share of captions drawn with an after-cue background clause."""

AFTER_CUE_CLAUSES = (
    "{background} is all around it",
    "{background} is behind it",
    "{background} is behind it all",
    "{background} is everything else",
)
"""The background's colour first, its role in known words after it, nothing before it."""

SETS = {**quality.HELD_OUT_SETS, "known": KNOWN_WORD_PHRASINGS}
BANNED = tuple(
    re.compile(pattern)
    for name in dir(quality)
    if name.endswith("CONSTRUCTIONS")
    for pattern in getattr(quality, name)
)
SKELETONS = tuple(skeleton(template) for template in KNOWN_WORD_PHRASINGS)


def draw_after_cue(
    attrs: Attributes, rng: np.random.Generator, lead: Callable[[], str] | None = None
) -> str:
    """The object phrase, a position phrase at the language's rate, and an after-cue clause,
    the clause first or last at even odds, joined as the language joins clauses. With `lead`, a
    clause in front gets the word `lead` returns before its colour at even odds (the only extra
    draws, so the captions without it are unchanged)."""
    keep_size = rng.random() < language.KEEP["size"]
    keep_colour = rng.random() < language.KEEP["colour"]
    text = language._object_phrase(attrs, keep_size, keep_colour, rng)
    if rng.random() < language.KEEP["position"]:
        phrase = language.POSITION_PHRASES[rng.integers(len(language.POSITION_PHRASES))]
        text += " " + phrase.format(position=attrs.position)
    clause = AFTER_CUE_CLAUSES[rng.integers(len(AFTER_CUE_CLAUSES))]
    clause = clause.format(background=attrs.background)
    join = language.CLAUSE_JOINS[rng.integers(len(language.CLAUSE_JOINS))]
    if rng.random() >= 0.5:
        return text + join + clause
    if lead is not None and rng.random() < 0.5:
        clause = f"{lead()} {clause}"
    return clause + join + text


def allowed(text: str) -> bool:
    return not any(p.search(text) for p in BANNED) and not any(s.match(text) for s in SKELETONS)


class AfterCueLanguage(CaptionLanguage):
    """The shipped captions, with `share` of them after-cue captions (draw_after_cue); drawn
    until one fits the context and uses no held-out construction."""

    share = SHARE

    def __call__(self, attrs: Attributes, rng: np.random.Generator) -> str:
        while True:
            after = rng.random() < self.share
            text = self.draw(attrs, rng) if after else language.draw_caption(attrs, rng)
            if len(self.tokenizer.tokenize(text)) <= self.max_tokens and allowed(text):
                return text

    def draw(self, attrs: Attributes, rng: np.random.Generator) -> str:
        return draw_after_cue(attrs, rng)


class LeadLanguage(AfterCueLanguage):
    """The after-cue captions, with half of the clauses in front led by a noise word (a
    vocabulary word no caption, held-out phrasing or known-word phrasing uses): the background's
    colour no longer always opens the caption, so its role must come from the words after it."""

    def __init__(self, tokenizer, max_tokens: int | None = None):
        super().__init__(tokenizer, max_tokens)
        self.pool = role_language.noise_pool(tokenizer, BANNED + SKELETONS)

    def draw(self, attrs: Attributes, rng: np.random.Generator) -> str:
        return draw_after_cue(attrs, rng, lead=lambda: self.pool[int(rng.integers(len(self.pool)))])


LANGUAGES = {"after": AfterCueLanguage, "lead": LeadLanguage, "plain": CaptionLanguage}


def check(count: int = 20000) -> None:
    """Every after-cue draw, before the context check, uses no held-out construction and no
    known-word phrasing's skeleton (the language redraws any that would)."""
    rng = np.random.default_rng(0)
    for _ in range(count):
        text = draw_after_cue(sample_attributes(rng), rng)
        assert allowed(text.lower()), text
    print(f"{count} after-cue captions: no held-out construction, no known-word skeleton")


def table(worlds: list[str]) -> None:
    """Background share per group of phrasings (held-out or known-word, by which colour comes
    first), per world, the mean over phrasings; then each world against the first, paired by
    phrasing (mean change, 95% t interval, Wilcoxon p)."""
    named = [item.split("=", 1) for item in worlds]
    shares = {name: background_shares(Path(folder), SETS) for name, folder in named}
    known = set(KNOWN_WORD_PHRASINGS)
    keys = list(shares[named[0][0]])

    def group(key: str) -> str:
        first = "object" if object_colour_first([key])[0] else "background"
        return f"{'known-word' if key in known else 'held-out'}, {first}'s colour first"

    groups = sorted({group(k) for k in keys})
    print("| world | " + " | ".join(groups) + " |")
    print("|---|" + "---|" * len(groups))
    for name, _ in named:
        cells = []
        for g in groups:
            values = np.array([shares[name][k] for k in keys if group(k) == g])
            cells.append(f"{values.mean():.2f} (n = {len(values)})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    base = named[0][0]
    print("\n| world | against | group | mean change [95% t] | Wilcoxon p |")
    print("|---|---|---|---|---|")
    for name, _ in named[1:]:
        for g in groups:
            ks = [k for k in keys if group(k) == g]
            print(f"| {name} | {base} | {g} | {paired_change(shares[base], shares[name], ks)} |")


def paired_change(base: dict[str, float], other: dict[str, float], keys: list[str]) -> str:
    """`other` minus `base` over `keys`: the mean change, its 95% t interval and Wilcoxon's p,
    as two table cells."""
    change = np.array([other[k] - base[k] for k in keys])
    low, high = stats.t.interval(0.95, len(keys) - 1, change.mean(), stats.sem(change))
    p = stats.wilcoxon(change).pvalue if np.any(change) else 1.0
    return f"{change.mean():+.2f} [{low:+.2f}, {high:+.2f}] | {p:.2g}"


def starts(worlds: list[str]) -> None:
    """The held-out phrasings that name the background's colour first, split by whether the
    colour is the phrasing's first word: per world the mean background share of each part, then
    each world against the first, paired by phrasing."""
    named = [item.split("=", 1) for item in worlds]
    shares = {name: background_shares(Path(folder)) for name, folder in named}
    every = list(shares[named[0][0]])
    keys = [k for k, first in zip(every, object_colour_first(every), strict=True) if not first]
    parts = {
        "starts with the colour": [k for k in keys if k.startswith("{background}")],
        "words before the colour": [k for k in keys if not k.startswith("{background}")],
    }
    print("| world | " + " | ".join(f"{part} ({len(ks)})" for part, ks in parts.items()) + " |")
    print("|---|" + "---|" * len(parts))
    for name, _ in named:
        means = [np.mean([shares[name][k] for k in ks]) for ks in parts.values()]
        print(f"| {name} | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    base = named[0][0]
    print("\n| world | against | part | mean change [95% t] | Wilcoxon p |")
    print("|---|---|---|---|---|")
    for name, _ in named[1:]:
        for part, ks in parts.items():
            print(f"| {name} | {base} | {part} | {paired_change(shares[base], shares[name], ks)} |")


def main() -> None:
    parser, sub, tr = command_parsers(__doc__.splitlines()[0])
    tr.add_argument("--language", choices=sorted(LANGUAGES), required=True)
    tr.add_argument(
        "--share", type=float, default=SHARE, help="share of after-cue captions (after, lead)"
    )
    measure_parser(sub, sets=",".join(SETS))
    sub.add_parser("check")
    sub.add_parser("table").add_argument("worlds", nargs="+", help="NAME=DIR (first: the base)")
    sub.add_parser("starts").add_argument("worlds", nargs="+", help="NAME=DIR (first: the base)")
    args = parser.parse_args()
    if args.command == "check":
        check()
        return
    if args.command in ("table", "starts"):
        {"table": table, "starts": starts}[args.command](args.worlds)
        return
    torch.set_num_threads(args.threads)
    if args.command == "measure":
        sets = args.sets.split(",")
        noise_words.measure_all(str(args.world), args.out, 64, sets, SETS)
        return
    if not 0.0 < args.share <= 1.0:
        parser.error(f"--share must lie in (0, 1], got {args.share}")
    language_class = LANGUAGES[args.language]
    if args.language != "plain":
        language_class.share = args.share  # as object_slot.train_with_share sets it
    report = train_phase(
        args.world,
        language_class,
        f"after_cue_{args.language}",
        args.seed,
        args.steps,
        language=args.language,
        share=0.0 if args.language == "plain" else args.share,
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
