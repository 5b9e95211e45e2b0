"""Probe: is "the first colour named is the object's" a frequency the shipped captions teach?

Split by which colour a held-out phrasing names first, the tiny world reads the object-first
ones and not the background-first ones (docs/results/2026-12-05-bidirectional-encoder.md). In the
shipped caption language (`ptibench.world.language`) the background is named before the
object's colour in about a third of the captions that name both. Here the same constructions,
drawn with the same random draws, put the background first in about `--share` of them: the
background phrase, where there is one, is the phrase that may lead (with probability `share`,
against the shipped 0.35 for whichever phrase comes first), and a background clause goes in
front with probability `share` (shipped 0.5). Only the order moves, so the comparison with the
plain continuation of the same seed (`role-words/seed<N>-plain`) isolates it.

    python docs/results/background-first/background_first.py train --world W [--share 0.65]
        [--seed 0] [--steps 1000]
    python docs/results/background-first/background_first.py measure --world W --out DIR
        [--sets first,...,sixth,seen,markers]
    python docs/results/background-first/background_first.py shares [--share 0.65]
    python docs/results/background-first/background_first.py contexts NAME=DIR[,DIR...] [...]
    python docs/results/background-first/background_first.py pairs NAME=DIR [...]

`W` is a copy of the shipped world; it is trained in place, as `--part roles` would.
"""

from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "object-slot"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "noise-words"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bidirectional"))

import noise_words  # noqa: E402  (noise-words/noise_words.py)
from object_slot import (  # noqa: E402  (object-slot/object_slot.py)
    command_parsers,
    measure_parser,
    train_phase,
)
from phrasing_tables import mean_interval, object_colour_first  # noqa: E402  (bidirectional/phrasing_tables.py)

from ptibench.world import language, quality  # noqa: E402
from ptibench.world.render import Attributes  # noqa: E402

SHARE = 0.65
"""How often the background may lead: phrase and clause alike."""

PROMPTS = 64
"""Held-out combinations read per phrasing."""

SEEN_BACKGROUND_FIRST = (
    "on a {background} background, a {size} {colour} {shape} at the {position}",
    "the background is {background}, a {size} {colour} {shape} at the {position}",
    "with {background} all around, a {size} {colour} {shape} near the {position}",
    "everything else is {background}; the {colour} {size} {shape} towards the {position}",
    "over plain {background}, one {size} {shape} coloured {colour} at the {position}",
    "behind it all is {background}; one {size} {colour} {shape} at the {position}",
)
SEEN_OBJECT_FIRST = (
    "one {size} {shape} painted {colour} with {background} behind it at the {position}",
    "the {colour} coloured {size} {shape} towards the {position}; the background is {background}",
    "a {size} {shape} whose colour is {colour} over a {background} background near the {position}",
    "a {colour} {shape} that is {size} at the very {position} with {background} all around",
    "one {colour} {size} {shape} placed at the {position}, and everything else is {background}",
    "a single {size} {shape} coloured {colour} sitting at the {position} over plain {background}",
)
MARKER_PAIRS = (
    (
        "a {colour} {size} {shape} at {position}, {background} everywhere",
        "with a {colour} {size} {shape} at {position}, {background} everywhere",
    ),
    (
        "{background} tiles, a {colour} {size} {shape} at {position}",
        "over plain {background} tiles, a {colour} {size} {shape} at {position}",
    ),
    (
        "a {background} wall, and a {colour} {size} {shape} at {position}",
        "with a {background} wall, and a {colour} {size} {shape} at {position}",
    ),
)
"""Pairs of phrasings outside the caption language (unseen words, no "the" before the position)
that differ only in the words before the first colour, written with their predictions before
any world was read on them. If a colour is the background's when the words before it are ones
the captions put before background colours, and the object's first otherwise, then: the first
pair's second phrasing ("with a" before the object's colour) is read with the colours swapped
while its first is read right; the second and third pairs' first phrasings (nothing, or "a",
before the background's colour) are read swapped, and their second phrasings ("over plain",
"with a") right."""
SETS = {
    **quality.HELD_OUT_SETS,
    "seen": SEEN_BACKGROUND_FIRST + SEEN_OBJECT_FIRST,
    "markers": tuple(phrasing for pair in MARKER_PAIRS for phrasing in pair),
}
"""The held-out sets, and `seen`: twelve captions the shipped language draws (its constructions
and joins, held-out combinations), six naming the background first and six the object's colour:
whether a world reads the order when the words around the colours are ones it was taught;
and `markers` (MARKER_PAIRS)."""


def draw_background_first(attrs: Attributes, rng: np.random.Generator, share: float) -> str:
    """`language.draw_caption` with the background moved to the front more often; the same
    random draws in the same order, so the rest of the phase sees what it sees on the shipped
    captions."""
    keep = {name: rng.random() < rate for name, rate in language.KEEP.items()}
    obj = language._object_phrase(attrs, keep["size"], keep["colour"], rng)
    phrases, clauses = [], []
    for name, forms, clause_forms in (
        ("position", language.POSITION_PHRASES, language.POSITION_CLAUSES),
        ("background", language.BACKGROUND_PHRASES, language.BACKGROUND_CLAUSES),
    ):
        if keep[name]:
            if rng.random() < language.PHRASE_SHARE:
                phrases.append((name, forms[rng.integers(len(forms))]))
            else:
                clauses.append(clause_forms[rng.integers(len(clause_forms))])
    rng.shuffle(phrases)
    rng.shuffle(clauses)
    phrases.sort(key=lambda named: named[0] != "background")
    fill = {"position": attrs.position, "background": attrs.background}
    lead = share if phrases and phrases[0][0] == "background" else language.LEADING_SHARE
    phrases = [form.format(**fill) for _, form in phrases]
    clauses = [c.format(**fill) for c in clauses]
    text = f"{phrases.pop(0)}, {obj}" if phrases and rng.random() < lead else obj
    if phrases:
        text += " " + " ".join(phrases)
    for clause in clauses:
        if clause.startswith(("it ", "its ", "placed ")) or rng.random() >= share:
            text += language.CLAUSE_JOINS[rng.integers(len(language.CLAUSE_JOINS))] + clause
        else:
            text = clause + language.CLAUSE_JOINS[rng.integers(2)] + text
    return text


class BackgroundFirstLanguage(language.CaptionLanguage):
    """The shipped caption language, the background led with more often."""

    share = SHARE

    def __call__(self, attrs: Attributes, rng: np.random.Generator) -> str:
        while True:
            text = draw_background_first(attrs, rng, self.share)
            if len(self.tokenizer.tokenize(text)) <= self.max_tokens:
                return text


def drawn_captions(draw, n: int = 20000):
    """(attributes, words) of `n` captions `draw(attrs, rng)` gives the held-out combinations in
    turn, from one seeded generator."""
    rng = np.random.default_rng(0)
    combos = quality.held_out_prompts(PROMPTS)
    for i in range(n):
        attrs = combos[i % len(combos)]
        yield attrs, words(draw(attrs, rng))


def background_first_share(draw) -> float:
    """Of the captions of held-out combinations that name both colours, the share that names
    the background's first."""
    both = first = 0
    for attrs, ws in drawn_captions(draw):
        if attrs.colour in ws and attrs.background in ws:
            both += 1
            first += ws.index(attrs.background) < ws.index(attrs.colour)
    return first / both


def words(text: str) -> list[str]:
    """A caption's words, punctuation dropped, after two start markers (so that every word has
    two words before it)."""
    return ["<start>", "<start>", *re.sub(r"[^a-z ]", " ", text.lower()).split()]


def taught_contexts() -> dict[str, set[tuple[str, str]]]:
    """The two words the shipped language puts before a background colour and before the
    object's colour, over captions of held-out combinations."""
    seen: dict[str, set[tuple[str, str]]] = {"background": set(), "object": set()}
    for attrs, ws in drawn_captions(language.draw_caption):
        for j in range(2, len(ws)):
            if ws[j] == attrs.background:
                seen["background"].add((ws[j - 2], ws[j - 1]))
            if ws[j] == attrs.colour:
                seen["object"].add((ws[j - 2], ws[j - 1]))
    return seen


def background_context(template: str, taught: dict[str, set[tuple[str, str]]]) -> str:
    """What the two words before a phrasing's background colour are in the shipped captions:
    "background" (only ever before a background colour), "object" (only before the object's),
    "both", or "never"."""
    kinds = set()
    for attrs in quality.held_out_prompts(PROMPTS):
        ws = words(quality.phrased_prompt(attrs, template))
        j = ws.index(attrs.background)
        context = (ws[j - 2], ws[j - 1])
        kinds.add(tuple(k for k in ("background", "object") if context in taught[k]))
    if len(kinds) != 1:
        return "mixed"
    kind = kinds.pop()
    return {(): "never", ("background",): "background", ("object",): "object"}.get(kind, "both")


def contexts(worlds: list[str]) -> None:
    """Per world (NAME=DIR[,DIR...]: folders of `measure` output), over the held-out sets and
    `seen` (the marker pairs have `pairs`), the background share of the phrasings that name the
    background first and of those that name the object's colour first, by what the words
    before the background colour are in the shipped captions; the mean over phrasings with a
    95% t interval."""
    taught = taught_contexts()
    templates = [t for name, phrasings in SETS.items() if name != "markers" for t in phrasings]
    group_of = {
        template: ("object" if object_first else "background", background_context(template, taught))
        for template, object_first in zip(templates, object_colour_first(templates), strict=True)
    }
    header = ("world", "names first", "the two words before the background colour", "phrasings")
    print("| " + " | ".join(header) + " | background |")
    print("|---|---|---|---|---|")
    for spec in worlds:
        name, folders = spec.split("=", 1)
        groups = collections.defaultdict(list)
        for set_name, phrasings in SETS.items():
            found = [Path(f) / f"{set_name}.json" for f in folders.split(",")]
            found = [f for f in found if f.is_file()]
            if set_name == "markers" or not found:
                continue
            rows = json.loads(found[0].read_text())["rows"]
            for template in phrasings:
                groups[group_of[template]].append(rows[template]["background"]["share"])
        for (first, kind), shares in sorted(groups.items()):
            cell = mean_interval(np.array(shares))
            print(f"| {name} | {first}'s colour | {kind} | {len(shares)} | {cell} |")


PREDICTED = ("right", "swapped", "swapped", "right", "swapped", "right")
"""MARKER_PAIRS' predictions, phrasing by phrasing (see there)."""


def pairs(worlds: list[str]) -> None:
    """Per world (NAME=DIR: a folder with `markers.json`), each marker pair's background and
    colour shares with their 95% intervals, the prediction, and Fisher's exact test (two-sided)
    of the pair's two background counts."""
    print("| world | phrasing | predicted | background | colour | pair's Fisher p (background) |")
    print("|---|---|---|---|---|---|")
    for spec in worlds:
        name, folder = spec.split("=", 1)
        rows = json.loads((Path(folder) / "markers.json").read_text())["rows"]
        templates = SETS["markers"]
        for i, template in enumerate(templates):
            row = rows[template]
            cells = []
            for attribute in ("background", "colour"):
                low, high = row[attribute]["ci95"]
                cells.append(f"{row[attribute]['share']:.2f} [{low:.2f}, {high:.2f}]")
            p = ""
            if i % 2:
                pair = templates[i - 1 : i + 1]
                hits = [round(rows[t]["background"]["share"] * PROMPTS) for t in pair]
                p = f"{stats.fisher_exact([[h, PROMPTS - h] for h in hits])[1]:.1g}"
            print(f"| {name} | {template} | {PREDICTED[i]} | {cells[0]} | {cells[1]} | {p} |")


def main() -> None:
    parser, sub, tr = command_parsers(__doc__.splitlines()[0])
    tr.add_argument("--share", type=float, default=SHARE)
    measure_parser(sub)
    sh = sub.add_parser("shares")
    sh.add_argument("--share", type=float, default=SHARE)
    co = sub.add_parser("contexts")
    co.add_argument("worlds", nargs="+", help="NAME=DIR[,DIR...]")
    pa = sub.add_parser("pairs")
    pa.add_argument("worlds", nargs="+", help="NAME=DIR")
    args = parser.parse_args()
    if args.command in ("contexts", "pairs"):
        (contexts if args.command == "contexts" else pairs)(args.worlds)
        return
    if args.command == "shares":
        shares = {
            "shipped": background_first_share(language.draw_caption),
            f"share {args.share}": background_first_share(
                lambda attrs, rng: draw_background_first(attrs, rng, args.share)
            ),
        }
        print(json.dumps({k: round(v, 3) for k, v in shares.items()}, indent=2))
        return
    torch.set_num_threads(args.threads)
    if args.command == "measure":
        noise_words.measure_all(str(args.world), args.out, PROMPTS, args.sets.split(","), SETS)
        return
    BackgroundFirstLanguage.share = args.share
    report = train_phase(
        args.world,
        BackgroundFirstLanguage,
        "background_first",
        args.seed,
        args.steps,
        share=args.share,
        language="shipped constructions, the background led with more often",
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
