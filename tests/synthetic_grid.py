"""Synthetic lr grids with per-sample records (no tests here), for the knee and interval tests.

A grid is what the benchmark would record for one stage: per lr, one case per training seed
with its aggregates and the per-sample `records` behind them, drawn at the noise of the tiny
world's stored runs (per-sample spreads read from the records of a stage-1 grid: lpips
0.6-0.8, clip_i 0.10-0.20, clip_t 0.02-0.20 per edit sample; oracle hits Bernoulli). Every
lr's samples share their sample seeds, as in the benchmark: sample j of lr a and sample j of
lr b are paired (their noise correlates), which a shuffle of lr labels per sample index keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

LPIPS_SD = 0.7
CLIP_I_SD = 0.12
CLIP_T_SD = 0.08
EDIT_PROMPTS = 9
PAIRING = 0.3
"""Correlation of a sample index's readings across lrs (0.3-0.8 between neighbouring lrs for
lpips and clip_i in a 60-step stage-1 grid; less for the edit readings)."""


@dataclass(frozen=True)
class Level:
    """What one lr's samples are drawn around."""

    appearance: float  # hit rate
    clip_i: float
    lpips: float
    clip_t: float
    edit_success: float  # hit rate per edit sample


# Stage 1 of the committed baselines (tiny world, yellow-ring, 1000 steps, 8 samples),
# the sound lrs: appearance 2,0,2,0,3,1 of 8 and edit_success 40,45,46,34,47,53 of 72.
STORED = (
    Level(0.250, 0.528, 6.266, 0.511, 0.556),
    Level(0.000, 0.572, 6.039, 0.593, 0.625),
    Level(0.250, 0.557, 5.991, 0.533, 0.639),
    Level(0.000, 0.621, 5.662, 0.388, 0.472),
    Level(0.375, 0.574, 6.124, 0.530, 0.653),
    Level(0.125, 0.571, 6.074, 0.662, 0.736),
)


def two_phase(points: int, knee: int) -> list[Level]:
    """Reconstruction rises up to point `knee` and stays; editability holds up to it and then
    falls, linearly on both sides, between the tiny world's worst and best readings."""
    levels = []
    for i in range(points):
        up = min(i / knee, 1.0)
        down = max(i - knee, 0) / (points - 1 - knee)
        levels.append(
            Level(
                appearance=0.15 + 0.7 * up,
                clip_i=0.50 + 0.2 * up,
                lpips=6.3 - 1.5 * up,
                clip_t=0.60 - 0.25 * down,
                edit_success=0.70 - 0.5 * down,
            )
        )
    return levels


def _clip(value: np.ndarray) -> np.ndarray:
    return np.clip(value, -1.0, 1.0)


@dataclass
class Draw:
    """One case's per-sample readings: [samples] for the reconstruction prompt, [prompts,
    samples] for the edit prompts."""

    lpips: np.ndarray
    clip_i: np.ndarray
    appearance: np.ndarray
    clip_t: np.ndarray
    edit: np.ndarray


def draw_grid(levels: list[Level], samples: int, rng: np.random.Generator) -> list[Draw]:
    """One case per level. A sample index shares part of its noise across the lrs (correlation
    PAIRING), as sample seeds do: the same initial noise gives related images at every lr."""
    recon = rng.standard_normal((4, samples))
    edits = rng.standard_normal((2, EDIT_PROMPTS, samples))
    shared, own = math.sqrt(PAIRING), math.sqrt(1 - PAIRING)
    draws = []
    for level in levels:
        r = shared * recon + own * rng.standard_normal(recon.shape)
        e = shared * edits + own * rng.standard_normal(edits.shape)
        draws.append(
            Draw(
                lpips=level.lpips + LPIPS_SD * r[0],
                clip_i=_clip(level.clip_i + CLIP_I_SD * r[1]),
                appearance=r[2] < NormalDist().inv_cdf(min(max(level.appearance, 1e-9), 1 - 1e-9)),
                clip_t=_clip(level.clip_t + CLIP_T_SD * e[0]),
                edit=e[1] < NormalDist().inv_cdf(min(max(level.edit_success, 1e-9), 1 - 1e-9)),
            )
        )
    return draws


def shuffle_per_sample(draws: list[Draw], rng: np.random.Generator) -> list[Draw]:
    """The lr labels shuffled per sample index: sample j's readings (all prompts) move together
    to another lr, so the pairing by sample seed stays and every lr is exchangeable."""
    n = len(draws[0].lpips)
    source = np.array([rng.permutation(len(draws)) for _ in range(n)]).T  # [lrs, samples]

    def moved(name: str) -> np.ndarray:
        stacked = np.stack([getattr(d, name) for d in draws])
        index = source.reshape(source.shape[:1] + (1,) * (stacked.ndim - 2) + source.shape[1:])
        return np.take_along_axis(stacked, np.broadcast_to(index, stacked.shape), axis=0)

    fields = {name: moved(name) for name in ("lpips", "clip_i", "appearance", "clip_t", "edit")}
    return [Draw(**{name: value[i] for name, value in fields.items()}) for i in range(len(draws))]


def case(lr: float, d: Draw, seed: int = 0, stage: str = "inversion") -> dict:
    """A results.json case whose aggregates are the means of its per-sample records."""
    samples = len(d.lpips)
    return {
        "spec": {
            "world": "tiny-world",
            "concept": "yellow-ring",
            "method": "pti",
            "stage": stage,
            "lr": lr,
            "seed": seed,
            "eval": {"samples_per_prompt": samples},
        },
        "status": "ok",
        "metrics": {
            "lpips": float(d.lpips.mean()),
            "clip_i": float(d.clip_i.mean()),
            "appearance": float(d.appearance.mean()),
            "clip_t": float(d.clip_t.mean(axis=1).mean()),
            "edit_success": float(d.edit.mean(axis=1).mean()),
            "denoise_loss": 0.12 + 0.001 * seed,
            "distance": 100.0 * lr,
        },
        "records": {
            "seeds": list(range(1234, 1234 + samples)),
            "reconstruction": {
                "lpips": d.lpips.tolist(),
                "clip_i": d.clip_i.tolist(),
                "appearance": d.appearance.tolist(),
            },
            "edits": [
                {"clip_t": d.clip_t[p].tolist(), "edit": d.edit[p].tolist()}
                for p in range(EDIT_PROMPTS)
            ],
        },
    }


def grid_lrs(points: int) -> list[float]:
    """lrs a half decade apart, like the default grids."""
    return [float(10.0 ** (-3 + 0.5 * i)) for i in range(points)]


def grid(draws: list[Draw], seed: int = 0) -> list[dict]:
    return [case(lr, d, seed) for lr, d in zip(grid_lrs(len(draws)), draws, strict=True)]
