"""The concept spelled out in words: the yellow-ring concept's reconstruction and edit prompts
with the placeholder replaced by "yellow ring" (a pair no training image shows) or by a pair
the world was trained on, sampled from a world with no learnt token at all, at the
evaluation's settings (20 steps, guidance 4, sample j seeded 1234 + j), and read by the oracle
like `edit_identity`: does the sample keep the pair's shape and colour, except what the edit
asks to change. A world that cannot draw the pair in an edit's context cannot keep a learnt
concept there either.

    python docs/results/continuation-cost/worded_concept.py sample --world W --out DIR
    python docs/results/continuation-cost/worded_concept.py table NAME=DIR [NAME=DIR ...]

`--world shipped` is the shipped world.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import torch
from scipy.stats import fisher_exact

from ptibench.concept import load_concept
from ptibench.evaluation.evaluate import ORACLE_ATTRIBUTES
from ptibench.spec import EvalConfig
from ptibench.world import oracle
from ptibench.world.quality import GUIDANCE, SAMPLE_STEPS, load_pipeline

SHIPPED = Path("src/ptibench/fixtures/tiny-world")
CONCEPT = Path("src/ptibench/fixtures/concepts/yellow-ring")
PAIRS = (("ring", "yellow"), ("cross", "yellow"), ("ring", "red"))
"""The held-out pair, then two trained pairs: the same colour on another shape, the same shape in
another colour (red: named by one edit as the background, which that edit then leaves out)."""
SAMPLES = EvalConfig().reconstruction_samples
SEED = EvalConfig().seed


def prompts(concept) -> list[tuple[str, dict]]:
    """(template, what the edit asks to change) for the reconstruction and every edit prompt."""
    rows = [(concept.reconstruction_prompt, {})]
    return rows + [(edit.prompt, dict(edit.expect or {})) for edit in concept.edit_prompts]


def sample_world(world: Path, out: Path, threads: int) -> None:
    torch.set_num_threads(threads)
    pipe = load_pipeline(world)
    concept = load_concept(CONCEPT)
    started = time.perf_counter()
    rows = []
    for shape, colour in PAIRS:
        for template, expect in prompts(concept):
            if expect.get("background") == colour:
                continue
            prompt = template.format(f"{colour} {shape}")
            generators = [torch.Generator().manual_seed(SEED + j) for j in range(SAMPLES)]
            images = pipe(
                [prompt] * SAMPLES,
                num_inference_steps=SAMPLE_STEPS,
                guidance_scale=GUIDANCE,
                generator=generators,
                output_type="np",
            ).images
            readings = [oracle.read(image) for image in images]
            pair = {"shape": shape, "colour": colour}
            wanted = {k: v for k, v in pair.items() if k not in expect}
            rows.append(
                {
                    "pair": f"{colour} {shape}",
                    "template": template,
                    "expect": expect,
                    "kept": [r.matches(wanted) for r in readings],
                    "edit_takes": [r.matches(expect) for r in readings] if expect else None,
                    "readings": [{k: getattr(r, k) for k in ORACLE_ATTRIBUTES} for r in readings],
                }
            )
    out.mkdir(parents=True, exist_ok=True)
    report = {"world": str(world), "samples": SAMPLES, "seconds": time.perf_counter() - started}
    with gzip.open(out / "worded.json.gz", "wt") as f:
        json.dump({**report, "rows": rows}, f, separators=(",", ":"))


def kept(rows: list[dict], pair: str, names_background: bool | None) -> tuple[int, int]:
    """Samples keeping `pair` over its edit prompts: those naming a background (True), the other
    edits (False), or the reconstruction prompt (None)."""
    hits = total = 0
    for row in rows:
        group = "background" in row["expect"] if row["expect"] else None
        if row["pair"] != pair or group != names_background:
            continue
        hits += sum(row["kept"])
        total += len(row["kept"])
    return hits, total


def table(runs: list[tuple[str, Path]]) -> str:
    data = {}
    for name, path in runs:
        with gzip.open(path / "worded.json.gz", "rt") as f:
            data[name] = json.load(f)["rows"]
    first = runs[0][0]
    lines = [
        "| pair | prompts | " + " | ".join(name for name, _ in runs) + " |",
        "|---|---|" + "---|" * len(runs),
    ]
    for shape, colour in PAIRS:
        pair = f"{colour} {shape}"
        for label, which in (
            ("reconstruction", None),
            ("edits naming a background", True),
            ("other edits", False),
        ):
            cells = []
            base = kept(data[first], pair, which)
            for name, _ in runs:
                hits, total = kept(data[name], pair, which)
                cell = f"{hits}/{total}"
                if name != first:
                    table_2x2 = [[hits, total - hits], [base[0], base[1] - base[0]]]
                    cell += f" (p = {fisher_exact(table_2x2).pvalue:.1g})"
                cells.append(cell)
            lines.append(f"| {pair} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sa = sub.add_parser("sample")
    sa.add_argument("--world", required=True, help='"shipped" or a world folder')
    sa.add_argument("--out", type=Path, required=True)
    sa.add_argument("--threads", type=int, default=2)
    ta = sub.add_parser("table")
    ta.add_argument("runs", nargs="+", help="NAME=DIR")
    args = parser.parse_args()
    if args.command == "sample":
        world = SHIPPED if args.world == "shipped" else Path(args.world)
        sample_world(world, args.out, args.threads)
    else:
        runs = [(item.split("=", 1)[0], Path(item.split("=", 1)[1])) for item in args.runs]
        print(table(runs))


if __name__ == "__main__":
    main()
