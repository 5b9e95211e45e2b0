"""Probe: does a shape term in the UNet's training put the prompt's shape into its latents?

The shape probes found the UNet is where shape is lost: a classifier reads the prompt's shape in
0.58 of its final latents for held-out prompts, against 0.995 in the encoder's latents of the
renderings. Here the shipped world runs its language phase once more (`train_language`, same
recipe and seeds) with one change: each batch's loss adds `weight` x the cross-entropy of a
frozen shape classifier (`latent_probe.classifier`, fitted on the training set's scaled latents,
seed 0) on the UNet's predicted clean latent, x0 = sqrt(a_t) x_t - sqrt(1 - a_t) v, for every
sample whose caption is not dropped (every caption names the shape). `--weight 0` is the
control: the same phase without the term, so "more training" and "the shape term" separate.
`--judge all` adds one such classifier per attribute (shape, colour, background, position,
size) and sums their cross-entropies, to see whether the others hold what shape gains.
`--judge pixels` judges shape on the frozen decoder's image of x0 instead (a classifier fitted on
the decoder's round trips of the training set), so the term asks for latents the decoder draws
as the shape, not only latents a latent classifier reads.

`measure` reads a world: the oracle on one sample per held-out combination (128, the shape
probe's prompts and seeds, by size) and on trained ones, a second classifier (seed 1, never
used in training, so the term cannot have learned to please it) on the UNet's final latents of
the held-out prompts, and prompt following under the first and confirmation held-out phrasing
sets (64 prompts x 6 phrasings each).

    python docs/results/shape/shape_phase.py train --weight 0.3 --work /tmp/shape-0.3
    python docs/results/shape/shape_phase.py measure --world /tmp/shape-0.3 \
        --out docs/results/shape/phase-0.3
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from latent_probe import fit
from shape_probe import by_size, probe, share, trained_prompts
from wide_decoder_probe import unet_latents

from ptibench.assets import tiny_world_path
from ptibench.world import components, oracle, quality
from ptibench.world.packaging import load_pipeline
from ptibench.world.recipe import TrainConfig
from ptibench.world.render import COLOURS, POSITIONS, SHAPES, SIZES
from ptibench.world.train_language import train_language
from ptibench.world.train_t2i import cached_latents

JUDGE_STEPS = 1500


VOCABULARY = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "background": tuple(COLOURS),
    "position": tuple(POSITIONS),
    "size": tuple(SIZES),
}


def attribute_judges(config: TrainConfig, vae, seed: int, names: tuple[str, ...]) -> dict:
    """Per attribute, a frozen classifier on the training set's scaled latents and the set's
    labels."""
    data, latents, _ = cached_latents(config, vae)
    judges = {}
    for name in names:
        values = VOCABULARY[name]
        labels = torch.tensor([values.index(getattr(a, name)) for a in data.attributes])
        judge = fit(latents, labels, JUDGE_STEPS, seed=seed, classes=len(values))
        judges[name] = (judge.requires_grad_(False), labels)
    return judges


class DecodedJudge(torch.nn.Module):
    """A shape classifier that reads the VAE decoder's image of a scaled latent: its gradient
    reaches the latent through the frozen decoder."""

    def __init__(self, vae, judge: torch.nn.Module):
        super().__init__()
        self.vae, self.judge = vae, judge

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.judge(self.vae.decode(latents / self.vae.config.scaling_factor).sample)


def pixel_judge(config: TrainConfig, vae, seed: int) -> dict:
    """A frozen shape classifier on the decoder's round trips of the training set (the images
    the decoder draws from clean latents), wrapped to read scaled latents."""
    data, latents, _ = cached_latents(config, vae)
    vae.requires_grad_(False)
    with torch.no_grad():
        pixels = torch.cat(
            [vae.decode(c / vae.config.scaling_factor).sample for c in latents.split(500)]
        )
    labels = torch.tensor([SHAPES.index(a.shape) for a in data.attributes])
    unshuffle = torch.nn.PixelUnshuffle(2)  # 3 x 32 x 32 -> 12 x 16 x 16: the latent judge's cost
    judge = fit(unshuffle(pixels), labels, JUDGE_STEPS, seed=seed).requires_grad_(False)
    judge = torch.nn.Sequential(unshuffle, judge)
    return {"shape (decoded)": (DecodedJudge(vae, judge), labels)}


def judge_term(judges: dict, weight: float):
    """`language_losses`' extra term: `weight` x the sum of the judges' cross-entropies on the
    predicted clean latents of the batch's captioned samples."""
    alphas = components.build_train_scheduler().alphas_cumprod

    def term(idx, texts, noisy, t, pred):
        a = alphas[t].sqrt().view(-1, 1, 1, 1)
        s = (1 - alphas[t]).sqrt().view(-1, 1, 1, 1)
        x0 = a * noisy - s * pred
        named = torch.tensor([bool(text) for text in texts])
        if not named.any():
            return pred.sum() * 0.0
        captioned, rows = x0[named], torch.from_numpy(idx)[named]
        return weight * sum(
            F.cross_entropy(judge(captioned), labels[rows]) for judge, labels in judges.values()
        )

    return term


JUDGES = {
    "shape": lambda config, vae, seed: attribute_judges(config, vae, seed, ("shape",)),
    "all": lambda config, vae, seed: attribute_judges(config, vae, seed, tuple(VOCABULARY)),
    "pixels": pixel_judge,
}


def train(work: Path, weight: float, steps: int, seed: int, judge: str) -> None:
    start = time.time()
    config = TrainConfig(seed=seed, language_steps=steps)
    if not (work / "pipeline").is_dir():
        shutil.copytree(tiny_world_path() / "pipeline", work / "pipeline")
    extra = None
    if weight:
        vae = load_pipeline(work / "pipeline").vae
        extra = judge_term(JUDGES[judge](config, vae, 0), weight)
    record = train_language(work, config, extra=extra)
    report = {"weight": weight, "judge": judge, "seed": seed, "record": record}
    report["seconds"] = round(time.time() - start, 1)
    (work / "shape_phase.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def measure(world: str, out: Path, prompts: int) -> None:
    start = time.time()
    folder = tiny_world_path() if world == "shipped" else Path(world)
    pipe = quality.load_pipeline(folder)
    held_out = quality.held_out_prompts(128)
    report = {
        "held_out": probe(pipe, held_out, jitter_seed=1),
        "trained": probe(pipe, trained_prompts(128), jitter_seed=2),
    }
    config = TrainConfig()
    judge, _ = attribute_judges(config, pipe.vae, 1, ("shape",))["shape"]
    latents = unet_latents(pipe, held_out)
    wanted = torch.tensor([SHAPES.index(a.shape) for a in held_out])
    with torch.no_grad():
        hits = (judge(latents).argmax(1) == wanted).tolist()
    report["held_out_latents_judge_seed1"] = {
        size: share([h for h, a in zip(hits, held_out, strict=True) if size in ("all", a.size)])
        for size in ("small", "large", "all")
    }
    combos = quality.held_out_prompts(prompts)
    for name, phrasings in (
        ("first", quality.HELD_OUT_PHRASINGS),
        ("confirmation", quality.CONFIRMATION_PHRASINGS),
    ):
        readings = []
        for template in phrasings:
            images = quality.sample(pipe, [quality.phrased_prompt(a, template) for a in combos])
            readings += [(a, oracle.read(img)) for a, img in zip(combos, images, strict=True)]
        report[f"phrasings_{name}"] = {
            key: share([getattr(r, key) == getattr(a, key) for a, r in readings])
            for key in ("background", "colour", "position", "size", "shape")
        }
        report[f"phrasings_{name}_shape_by_size"] = by_size(
            [a for a, _ in readings], [r for _, r in readings]
        )
    report["seconds"] = round(time.time() - start, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "shape_phase_measure.json").write_text(json.dumps(report, indent=2) + "\n")
    for split in ("held_out", "trained"):
        print(split, {k: v["share"] for k, v in report[split]["generated"].items()})
    print(
        "judge on latents",
        {k: v["share"] for k, v in report["held_out_latents_judge_seed1"].items()},
    )
    for name in ("first", "confirmation"):
        print(name, {k: v["share"] for k, v in report[f"phrasings_{name}"].items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("--work", type=Path, required=True)
    tr.add_argument("--weight", type=float, required=True)
    tr.add_argument("--steps", type=int, default=1000)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--threads", type=int, default=1)
    tr.add_argument(
        "--judge",
        choices=tuple(JUDGES),
        default="shape",
        help="the attributes judged on the latent, or shape on the decoded image",
    )
    me = sub.add_parser("measure")
    me.add_argument("--world", required=True, help='"shipped" or a world folder')
    me.add_argument("--out", type=Path, required=True)
    me.add_argument("--prompts", type=int, default=64)
    me.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.command == "train":
        train(args.work, args.weight, args.steps, args.seed, args.judge)
    else:
        measure(args.world, args.out, args.prompts)


if __name__ == "__main__":
    main()
