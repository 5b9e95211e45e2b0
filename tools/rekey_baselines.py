"""Re-key stored baselines to a new world version, on evidence that the numbers cannot move.

A world's files can change without changing a single number ptibench computes (how the folder
loads in plain diffusers, a config field ptibench overrides). Its version is a hash of the
files, so every baseline entry then names an old version, and `--update-baselines` would record
hours of cases again to the same values. This tool instead loads the old and the new pipeline
folder the way ptibench loads them and compares what the computation sees: every tensor of the
UNet, text encoder and VAE, bitwise, their dtypes, the scheduler's config and the tokenizer's
vocabulary. When all are equal it rewrites `recorded.world_version` OLD -> NEW in every entry
under the baselines folder; one difference and it changes nothing. (A run is no such evidence:
CPU rounding differs between machines, so a run reproduces its baselines bitwise only on a
machine like the recording one.)

    git archive OLD_COMMIT src/ptibench/fixtures/tiny-world/pipeline | tar -x -C /tmp/old
    python tools/rekey_baselines.py --old be738487 --new c44b7423 \\
        --old-pipeline /tmp/old/src/ptibench/fixtures/tiny-world/pipeline
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ptibench.assets import tiny_world_path
from ptibench.io import atomic_write_json, read_json
from ptibench.world.packaging import load_pipeline

COMPONENTS = ("unet", "text_encoder", "vae")


def differences(old_folder: Path, new_folder: Path) -> tuple[int, list[str]]:
    """(tensors compared, one line per thing that differs between the two folders as loaded)."""
    old, new = load_pipeline(old_folder), load_pipeline(new_folder)
    compared, lines = 0, []
    for name in COMPONENTS:
        a, b = getattr(old, name).state_dict(), getattr(new, name).state_dict()
        if a.keys() != b.keys():
            lines.append(f"{name}: tensors {sorted(a.keys() ^ b.keys())[:5]} on one side only")
        for key in a.keys() & b.keys():
            compared += 1
            if a[key].dtype != b[key].dtype or not torch.equal(a[key], b[key]):
                lines.append(f"{name}.{key}: differs")
    if dict(old.scheduler.config) != dict(new.scheduler.config):
        lines.append("scheduler config differs")
    if old.tokenizer.get_vocab() != new.tokenizer.get_vocab():
        lines.append("tokenizer vocabulary differs")
    return compared, lines


def rekey(root: Path, old: str, new: str) -> int:
    """Entries whose recorded world_version was `old`, now `new`."""
    changed = 0
    for path in sorted(root.rglob("*.json")):
        data = read_json(path)
        touched = 0
        for seeds in data.get("entries", {}).values():
            for variants in seeds.values():
                for entry in variants.values():
                    if entry.get("recorded", {}).get("world_version") == old:
                        entry["recorded"]["world_version"] = new
                        touched += 1
        if touched:
            atomic_write_json(path, data)
            changed += touched
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-pipeline", type=Path, required=True, help="the folder before")
    parser.add_argument("--new-pipeline", type=Path, default=tiny_world_path() / "pipeline")
    parser.add_argument("--baselines", type=Path, default=Path("baselines"))
    parser.add_argument("--old", required=True, help="world version the entries name now")
    parser.add_argument("--new", required=True, help="world version of the new folder")
    args = parser.parse_args(argv)
    for folder in (args.old_pipeline, args.new_pipeline):
        if not (folder / "model_index.json").is_file():
            print(f"rekey: {folder} is not a diffusers pipeline folder", file=sys.stderr)
            return 2
    compared, lines = differences(args.old_pipeline, args.new_pipeline)
    if lines:
        print(f"rekey: {len(lines)} difference(s), nothing changed", file=sys.stderr)
        print("\n".join(lines[:20]), file=sys.stderr)
        return 1
    changed = rekey(args.baselines, args.old, args.new)
    print(
        f"{compared} tensors bitwise equal, scheduler and tokenizer equal; "
        f"{changed} entries {args.old} -> {args.new}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
