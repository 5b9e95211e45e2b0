"""The `ptibench` command:

- `ptibench report DIR` re-renders a report directory from its results.json (tables, knee,
  plot) without training anything;
- `ptibench cache list|prune` shows what the case cache holds and removes what this code
  will never read (entries made by other code or library versions, old --no-cache runs);
- `ptibench compare RUN_A RUN_B` prints, lr by lr, how two runs differ and whether the
  difference is larger than their samples' spread.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from collections import Counter
from pathlib import Path

from ptibench.errors import PtibenchError
from ptibench.results.api import Tradeoff
from ptibench.results.history import compare_runs, format_comparison, resolve_run
from ptibench.results.tables import render_text
from ptibench.run.cache import default_cache_dir, inventory, prune
from ptibench.spec import lr_key


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptibench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser(
        "report", help="re-render the reports of DIR from its results.json"
    )
    report.add_argument("directory", type=Path, metavar="DIR")
    report.add_argument("--quiet", action="store_true", help="do not print the tables")

    cache = commands.add_parser("cache", help="list or prune the case cache")
    actions = cache.add_subparsers(dest="action", required=True)
    for name, text in (
        ("list", "what the cache holds, and whether this code would read it"),
        ("prune", "remove what this code will never read"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument(
            "--cache",
            type=Path,
            default=None,
            metavar="DIR",
            help="the case cache (default $PTIBENCH_CACHE or ./.ptibench-cache)",
        )
    actions.choices["prune"].add_argument(
        "--all", action="store_true", help="remove every entry, current or not"
    )
    actions.choices["prune"].add_argument(
        "--dry-run", action="store_true", help="say what would be removed, remove nothing"
    )

    compare = commands.add_parser(
        "compare", help="how two runs differ, lr by lr, with the significance of each difference"
    )
    for name in ("run_a", "run_b"):
        compare.add_argument(
            name,
            metavar=name.upper(),
            help="a report folder (or its results.json), or the number of an autosaved run "
            "under OUT/runs/",
        )
    compare.add_argument(
        "--out",
        type=Path,
        default=Path("ptibench-out"),
        metavar="OUT",
        help="where autosaved runs are looked up by number (default ./ptibench-out)",
    )
    compare.add_argument(
        "--alpha", type=float, default=0.05, help="significance level (default 0.05)"
    )
    return parser


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


KINDS = {
    "entry": ("entry", "entries"),
    "pivot": ("pivot", "pivots"),
    "trained": ("batched-grid slot", "batched-grid slots"),
    "base": ("base-model share", "base-model shares"),
    "fresh": ("--no-cache run", "--no-cache runs"),
    "staging": ("staging folder", "staging folders"),
    "broken": ("broken entry", "broken entries"),
}


def _counts(items) -> str:
    counts = Counter(item.kind for item in items)
    return ", ".join(
        f"{counts[kind]} {KINDS[kind][counts[kind] != 1]}" for kind in KINDS if counts[kind]
    )


def cache_list(root: Path) -> list[str]:
    items = inventory(root)
    if not items:
        return [f"cache {root}: empty"]
    stale = sum(not item.current for item in items)
    lines = [
        f"cache {root}: {_counts(items)}; {_megabytes(sum(item.size for item in items))}; "
        + f"{stale} item(s) this code will not read (`ptibench cache prune` removes them)"
    ]
    body = []
    for item in items:
        spec = item.spec
        when = _dt.datetime.fromtimestamp(item.modified).strftime("%Y-%m-%d %H:%M")
        old = "old" if item.kind in ("fresh", "staging") else "stale"
        body.append(
            [
                item.kind,
                "current" if item.current else old,
                str(spec.get("stage", "")),
                str(spec.get("method", "")),
                lr_key(spec["lr"]) if isinstance(spec.get("lr"), int | float) else "",
                str(spec.get("steps", "")),
                item.status,
                _megabytes(item.size),
                when,
                item.path.name,
            ]
        )
    header = ["kind", "state", "stage", "method", "lr", "steps", "status", "size", "written"]
    lines.append(render_text([*header, "name"], body, align="left"))
    return lines


def cache_prune(root: Path, everything: bool, dry_run: bool) -> list[str]:
    removed = prune(root, everything=everything, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    if not removed:
        return [f"cache {root}: nothing to remove"]
    lines = [
        f"cache {root}: {verb} {_counts(removed)} ({_megabytes(sum(i.size for i in removed))})"
    ]
    lines += [f"  {item.kind}: {item.path.name}" for item in removed]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "cache":
            root = args.cache if args.cache is not None else default_cache_dir()
            if args.action == "list":
                print("\n".join(cache_list(root)))
            else:
                print("\n".join(cache_prune(root, args.all, args.dry_run)))
            return 0
        if args.command == "compare":
            if not 0 < args.alpha < 1:
                raise PtibenchError(f"--alpha must lie between 0 and 1, got {args.alpha}")
            runs = [resolve_run(name, args.out) for name in (args.run_a, args.run_b)]
            comparison = compare_runs(*runs, alpha=args.alpha)
            print(format_comparison(comparison))
            return 0
        report = Tradeoff.from_directory(args.directory)
        paths = report.write(args.directory)
    except PtibenchError as error:
        print(f"ptibench: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        where = getattr(args, "directory", None) or error.filename or ""
        print(f"ptibench: error: {where}: {error.strerror or error}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(report.text())
    print("wrote " + ", ".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
