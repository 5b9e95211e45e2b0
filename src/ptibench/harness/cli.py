"""The `ptibench` command: `ptibench report DIR` re-renders a report directory from its
results.json (tables, knee, plot) without training anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ptibench.errors import PtibenchError
from ptibench.results.document import load_results
from ptibench.results.report import render, summary_lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ptibench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser(
        "report", help="re-render the reports of DIR from its results.json"
    )
    report.add_argument("directory", type=Path, metavar="DIR")
    report.add_argument("--quiet", action="store_true", help="do not print the tables")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:

        document = load_results(args.directory)
        paths = render(args.directory, document)
    except PtibenchError as error:
        print(f"ptibench: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"ptibench: error: {args.directory}: {error.strerror or error}", file=sys.stderr)
        return 2
    if not args.quiet:
        print("\n".join(summary_lines(document)))
    print("wrote " + ", ".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
