"""Which words of the held-out phrasings the tiny world has ever been trained on, and how it
reads the background in the phrasings that name the background's colour first, by whether a
word it knows stands next to that colour.

The world's text encoder is trained from scratch on its own captions (`render.caption` and the
`language` phase's `draw_caption`), so a token those captions never contain keeps the row it
was initialised with: the world has no meaning for it. This lists the caption vocabulary, every
held-out word outside it, the embedding-row norms of trained and untrained tokens, and the
shipped world's background share per phrasing (64 readings each, `measure` output of the
shipped world kept in docs/results/bidirectional/shipped/).

    python docs/results/held-out-vocabulary/vocabulary.py [--captions 20000]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from safetensors.torch import load_file
from transformers import CLIPTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bidirectional"))

from phrasing_tables import (  # noqa: E402  (bidirectional/phrasing_tables.py)
    background_shares,
    mean_interval,
    object_colour_first,
)

from ptibench.world import language, quality, render  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1]
PIPELINE = RESULTS.parents[1] / "src" / "ptibench" / "fixtures" / "tiny-world" / "pipeline"
SHIPPED_READINGS = RESULTS / "bidirectional" / "shipped"
BESIDE = "a caption word beside the background's colour"


def words(text: str) -> list[str]:
    """A phrasing's words and slots, in order ("{background}" stays one item)."""
    return re.findall(r"\{\w+\}|[a-z]+", text.lower())


def training_captions(count: int, seed: int = 0):
    """`count` attribute draws, each captioned by both caption sources the world trains on."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        attrs = render.sample_attributes(rng)
        yield render.caption(attrs)
        yield render.caption(attrs, rng)
        yield language.draw_caption(attrs, rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=20000)
    args = parser.parse_args()

    tokenizer = CLIPTokenizer.from_pretrained(PIPELINE / "tokenizer")
    vocabulary, token_ids = set(), set()
    for text in training_captions(args.captions):
        vocabulary.update(words(text))
        token_ids.update(tokenizer(text)["input_ids"])

    weights = load_file(str(next((PIPELINE / "text_encoder").glob("*.safetensors"))))
    table = next(v for k, v in weights.items() if k.endswith("token_embedding.weight")).float()
    norms = table.norm(dim=1).numpy()
    trained = np.zeros(len(table), dtype=bool)
    trained[sorted(token_ids)] = True
    print(f"## Vocabulary ({args.captions} attribute draws, three captions each)\n")
    print(f"{len(vocabulary)} words, {int(trained.sum())} token ids (start and end included):")
    print(", ".join(sorted(vocabulary)) + "\n")
    print("| embedding rows | count | norm: median | 0.1% - 99.9% |")
    print("|---|---|---|---|")
    for name, rows in (("in the captions", norms[trained]), ("never in them", norms[~trained])):
        low, high = np.quantile(rows, [0.001, 0.999])
        print(f"| {name} | {len(rows)} | {np.median(rows):.3f} | {low:.3f} - {high:.3f} |")
    print(
        f"\nrow width {table.shape[1]}: N(0, 0.02) initialisation's norm about "
        f"{0.02 * table.shape[1] ** 0.5:.3f}\n"
    )

    phrasings(vocabulary)


def phrasings(vocabulary: set[str]) -> None:
    """Each held-out phrasing's words outside `vocabulary` and whether a caption word stands
    beside its background colour (two words before, one after), with the shipped world's
    background share; then the shares grouped."""
    shares = background_shares(SHIPPED_READINGS)
    print("## Held-out phrasings\n")
    print(f"| set | names first | background | outside the vocabulary | {BESIDE} | phrasing |")
    print("|---|---|---|---|---|---|")
    groups: dict[tuple[str, bool], list[float]] = {}
    for set_name, templates in quality.HELD_OUT_SETS.items():
        for template, object_first in zip(
            templates, object_colour_first(list(templates)), strict=True
        ):
            ws = words(template)
            unseen = ", ".join(sorted({w for w in ws if w[0] != "{" and w not in vocabulary}))
            j = ws.index("{background}")
            beside = [w for w in ws[max(0, j - 2) : j] + ws[j + 1 : j + 2] if w[0] != "{"]
            known = any(w in vocabulary for w in beside)
            first = "object" if object_first else "background"
            share = shares[template]
            groups.setdefault((first, known), []).append(share)
            context = f"{'yes' if known else 'no'} ({' '.join(beside) or 'none'})"
            print(
                f"| {set_name} | {first}'s colour | {share:.2f} | {unseen or '-'} "
                f"| {context} | `{template}` |"
            )
    print("\n## The shipped world's background share by group\n")
    print("Mean over phrasings with a 95% t interval.\n")
    print(f"| names first | {BESIDE} | phrasings | background |")
    print("|---|---|---|---|")
    for (first, known), values in sorted(groups.items()):
        cell = mean_interval(np.array(values))
        print(f"| {first}'s colour | {'yes' if known else 'no'} | {len(values)} | {cell} |")


if __name__ == "__main__":
    main()
