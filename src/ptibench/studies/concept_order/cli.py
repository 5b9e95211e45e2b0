"""python -m ptibench.studies.concept_order: run an lr grid with checkpointed evaluation, or
re-render a report directory's concept-order section.

    python -m ptibench.studies.concept_order run --stage finetune --lr-grid quick --eval-every 100
    python -m ptibench.studies.concept_order report ptibench-out

`run` takes the plugin's case options (ptibench.case_options) with this study's defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ptibench.case_options import (
    add_case_options,
    add_grid_options,
    apply_device,
    case_specs,
)
from ptibench.errors import PtibenchError
from ptibench.grids import name_text
from ptibench.results.document import (
    case_record,
    load_results,
    results_document,
    run_context,
    write_results,
)
from ptibench.run.runner import run_case
from ptibench.studies.concept_order.analysis import (
    APPEARANCE_SCOPES,
    DEFAULT_APPEARANCE,
    DEFAULT_BOUND,
    DEFAULT_MIN_GAIN,
    DEFAULT_SHARE,
)
from ptibench.studies.concept_order.report import render, summary_lines


def run_grid(args) -> int:
    """Run each case of the grid (cached cases come back at once), rewriting results.json after
    each, then print the findings and render the section."""
    apply_device(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else None
    options = {
        "lr_grid": str(args.lr_grid),
        "stages": list(args.stage),
        **{
            name: getattr(args, name)
            for name in ("steps", "eval_every", "world", "concept", "device")
        },
    }
    context = run_context(Path.cwd(), sys.argv[1:], options)
    cases: list[dict[str, Any]] = []
    for spec in case_specs(args, args.lr_grid, args.stage, [args.seed]):
        result = run_case(spec, cache_dir=cache, progress=args.progress)
        nodeid = f"{spec.stage}-{spec.lr_id}-seed{spec.seed}"
        cases.append(case_record(result, nodeid, outcome="passed"))
        write_results(out, results_document(context, cases))
        print(f"{nodeid}: {result.status} ({result.timings.get('total_s', 0):.0f} s)", flush=True)
    return report_dir(out, args, load_results(out))


def report_dir(folder: Path, args, document=None) -> int:
    document = load_results(folder) if document is None else document
    thresholds = {
        "share": args.share,
        "bound": args.bound,
        "min_gain": args.min_gain,
        "appearance": args.appearance,
    }
    for line in summary_lines(document, **thresholds):
        print(line)
    for path in render(folder, document, **thresholds):
        print(f"wrote {path}")
    return 0


def add_threshold_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--share", type=float, default=DEFAULT_SHARE)
    parser.add_argument("--bound", type=float, default=DEFAULT_BOUND)
    parser.add_argument("--min-gain", type=float, default=DEFAULT_MIN_GAIN)
    parser.add_argument(
        "--appearance",
        choices=sorted(APPEARANCE_SCOPES),
        default=DEFAULT_APPEARANCE,
        help="prompts the appearance curve is read from (default all)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ptibench.studies.concept_order", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an lr grid with checkpointed evaluation, then report")
    add_grid_options(run.add_argument, lr_grid="quick", stage="finetune")
    add_case_options(run.add_argument, eval_every=100)
    run.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    run.add_argument("--out", type=name_text, default="ptibench-out/concept-order")
    run.add_argument("--cache", default=None)
    run.add_argument("--progress", action="store_true")
    rep = sub.add_parser("report", help="re-render concept_order.md/.png from results.json")
    rep.add_argument("dir")
    for p in (run, rep):
        add_threshold_options(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_grid(args) if args.command == "run" else report_dir(Path(args.dir), args)
    except PtibenchError as error:
        print(f"ptibench: error: {error}", file=sys.stderr)
        return 2
