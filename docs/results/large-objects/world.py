"""The whole world recipe with larger objects (radius 5 / 8 on the same 32x32 canvas).

The size probe found the VAE keeps held-out shapes at these sizes (round trip 0.96 against
0.69) and the text-to-image part alone draws them more often. This script runs the shipped
recipe unchanged (`python -m ptibench.world train`, any of its parts, the same seeds) with the
sizes set in-process (`size_probe.set_sizes`: `render.SIZES` and the oracle's small/large
threshold), records the sizes in the folder's manifest (`object_sizes`), and reads a world with
the shape-phase probe's `measure` (held-out combinations, trained ones, and the two held-out
phrasing sets) at the same sizes.

    python docs/results/large-objects/world.py train --out /work/exp/world58 \
        --part vae,t2i,layout,language
    python docs/results/large-objects/world.py train --out /work/exp/world58-metrics \
        --part clip,lpips
    python docs/results/large-objects/world.py measure --world /work/exp/world58 \
        --out docs/results/large-objects/measure
    python docs/results/large-objects/world.py metrics --world /work/exp/world58-metrics \
        --out docs/results/large-objects/metrics.json

`quick --world DIR --out FILE` reads the prompt following the README's table reports, on
128 held-out combinations in the training wording and 64 in each phrasing of both held-out
sets, the confirmation set first (`quality.measure_prompt_following`,
`quality.measure_phrasings`), writing each reading as it is made; `compare --quick FILE` sets
them beside the shipped world's same readings (the guidance probe's default row and the
shape-phase probe's `phase-shipped`: the same prompts and seeds) with Fisher's exact test.
`metrics` reads the world's CLIP and LPIPS backbone as the quality tests do (zero-shot
background and colour on held-out renderings; LPIPS from a rendering to a re-render, to another
shape and to another background), beside the shipped world's at its own sizes.

The parts chain through the folder (each reads what the one before saved there), so a folder
holding the parts trained so far, such as `world-after-t2i/` here, carries on from a copy:

    cp -r docs/results/large-objects/world-after-t2i /work/exp/world58
    python docs/results/large-objects/world.py train --out /work/exp/world58 \
        --part layout,language

Everything after `train` goes to `python -m ptibench.world train`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "shape"))

from shape_phase import measure  # noqa: E402
from size_probe import set_sizes  # noqa: E402

from ptibench.assets import tiny_world_path  # noqa: E402
from ptibench.world import quality, render  # noqa: E402
from ptibench.world.__main__ import main as world_main  # noqa: E402
from ptibench.world.recipe import merge_manifest  # noqa: E402

SMALL, LARGE = 5.0, 8.0


def train(argv: list[str]) -> int:
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("--out", type=Path, required=True)
    folder = out.parse_known_args(argv)[0].out
    status = world_main(["train", *argv])
    if status == 0:
        merge_manifest(folder, "object_sizes", {"small": SMALL, "large": LARGE})
    return status


def metric_models(world: Path, out: Path) -> None:
    shipped_sizes = (render.SIZES["small"], render.SIZES["large"])
    report = {}
    for name, folder, sizes in (
        ("shipped", tiny_world_path(), shipped_sizes),
        ("larger objects", world, (SMALL, LARGE)),
    ):
        set_sizes(*sizes)
        model, tokenizer = quality.load_clip(folder)
        contrasts = quality.lpips_contrasts(quality.load_lpips(folder))
        report[name] = {
            "sizes": sizes,
            "clip_zero_shot": quality.clip_zero_shot(model, tokenizer),
            "lpips": contrasts,
            "lpips_shape_over_rerender": contrasts["shape"] / contrasts["rerender"],
            "lpips_shape_over_background": contrasts["shape"] / contrasts["background"],
        }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def quick(world: Path, out: Path) -> None:
    pipe = quality.load_pipeline(world)
    report = {}
    readings = (
        ("held_out_128", lambda: quality.measure_prompt_following(pipe, 128)),
        (
            "confirmation_phrasings_64",
            lambda: quality.measure_phrasings(pipe, quality.CONFIRMATION_PHRASINGS, 64),
        ),
        (
            "first_phrasings_64",
            lambda: quality.measure_phrasings(pipe, quality.HELD_OUT_PHRASINGS, 64),
        ),
    )
    for name, read in readings:
        report[name] = asdict(read())
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(name, report[name], flush=True)


ATTRIBUTES = ("background", "colour", "position", "size", "shape")
RESULTS = Path(__file__).resolve().parent.parent


def shipped_readings() -> dict[str, dict[str, tuple[int, int]]]:
    """The radius-3.5 / 6 world's readings of `quick`, as (hits, n), from the probes that made
    them."""
    guidance = json.loads((RESULTS / "guidance" / "guidance.json").read_text())
    default = guidance["training_wording"]["guidance 4, 20 steps"]
    phase = json.loads(
        (RESULTS / "shape" / "phase-shipped" / "shape_phase_measure.json").read_text()
    )
    readings = {
        "held_out_128": {
            key: (round(default[key]["share"] * default[key]["n"]), default[key]["n"])
            for key in ATTRIBUTES
        }
    }
    for name in ("confirmation", "first"):
        rows = phase[f"phrasings_{name}"]
        readings[f"{name}_phrasings_64"] = {
            key: (rows[key]["hits"], rows[key]["n"]) for key in ATTRIBUTES
        }
    return readings


def compare(quick_file: Path) -> None:
    from scipy.stats import fisher_exact

    from ptibench.results.intervals import wilson

    measured = json.loads(quick_file.read_text())
    shipped = shipped_readings()
    print("| prompts | attribute | radius 3.5 / 6 | radius 5 / 8 | p |")
    print("|---|---|---|---|---|")
    for name, row in measured.items():
        for key in ATTRIBUTES:
            n = row["prompts"]
            hits = round(row[key] * n)
            base_hits, base_n = shipped[name][key]
            low, high = wilson(hits, n)
            p = fisher_exact([[hits, n - hits], [base_hits, base_n - base_hits]]).pvalue
            print(
                f"| {name} | {key} | {base_hits / base_n:.2f} | "
                f"{hits / n:.2f} [{low:.2f}, {high:.2f}] | {p:.2g} |"
            )


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "compare":
        parser = argparse.ArgumentParser(description="quick readings beside the shipped world's")
        parser.add_argument("command", choices=["compare"])
        parser.add_argument("--quick", type=Path, required=True)
        compare(parser.parse_args().quick)
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "metrics":
        parser = argparse.ArgumentParser(description="the world's CLIP and LPIPS backbone")
        parser.add_argument("command", choices=["metrics"])
        parser.add_argument("--world", type=Path, required=True)
        parser.add_argument("--out", type=Path, required=True)
        args = parser.parse_args()
        metric_models(args.world, args.out)
        return 0
    set_sizes(SMALL, LARGE)
    if len(sys.argv) > 1 and sys.argv[1] == "train":
        return train(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["measure", "quick"])
    parser.add_argument("--world", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=64)
    args = parser.parse_args()
    if args.command == "quick":
        quick(Path(args.world), args.out)
    else:
        measure(args.world, args.out, args.prompts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
