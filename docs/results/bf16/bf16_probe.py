"""Probe: would CPU bfloat16 make the tiny world's training or evaluation cheaper, and what would
it change?

`unet`: the tiny UNet's training step (forward + backward, a trained input) and its sampling
forward (no grad), float32 against `torch.autocast("cpu", torch.bfloat16)`, the median of 10
timed repeats after 2 warm-ups, the two alternated twice and the faster round kept. The training
step is also timed on a bfloat16 copy of the frozen UNet, its weights cast once
(`bf16_weights_s`), as a frozen UNet allows: autocast casts each weight again at every call.

`case`: one case (inversion, lr 5e-3, 1000 steps by default) run with its sampling in float32 and
in bfloat16 autocast (every `generate_rows` call, the base model's leakage samples included),
alternated over two rounds on fresh caches: the evaluation's wall time, each metric, and how
many of the oracle's per-sample readings agree between the two precisions.

    python docs/results/bf16/bf16_probe.py unet --out docs/results/bf16/unet.json
    python docs/results/bf16/bf16_probe.py case --out docs/results/bf16/case.json

Both run on one torch thread. CPU bfloat16 speed depends on the CPU (AVX512-BF16 or AMX);
`lscpu`'s flags go into the output.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from ptibench.evaluation import leakage, sampling
from ptibench.models.loading import load_bundle
from ptibench.run.runner import run_case
from ptibench.spec import CaseSpec

REPEATS = 10


def median_seconds(work) -> float:
    times = []
    for _ in range(REPEATS + 2):
        clock = time.perf_counter()
        work()
        times.append(time.perf_counter() - clock)
    kept = sorted(times[2:])
    return kept[len(kept) // 2]


def bf16(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def unet_timings() -> dict:
    unet = load_bundle("tiny-world").unet.requires_grad_(False)
    cast = copy.deepcopy(unet).to(torch.bfloat16)
    rows = {}

    def train_step(batch: int, low: bool, weights=None):
        x, t = torch.randn(batch, 4, 16, 16), torch.randint(0, 1000, (batch,))
        states = torch.randn(batch, 16, 128, requires_grad=True)

        def work():
            if weights is not None:
                out = weights(x.to(torch.bfloat16), t, encoder_hidden_states=states.bfloat16())
            else:
                with bf16(low):
                    out = unet(x, t, encoder_hidden_states=states)
            (out.sample.float() - x).pow(2).mean().backward()

        return median_seconds(work)

    def sample_step(batch: int, low: bool):
        x, t = torch.randn(batch, 4, 16, 16), torch.randint(0, 1000, (batch,))
        states = torch.randn(batch, 16, 128)

        @torch.no_grad()
        def work():
            with bf16(low):
                unet(x, t, encoder_hidden_states=states)

        return median_seconds(work)

    for name, step, batches in (("train", train_step, (4, 28)), ("sample", sample_step, (32, 64))):
        for batch in batches:
            fp32 = min(step(batch, False) for _ in range(2))
            low = min(step(batch, True) for _ in range(2))
            rows[f"{name} batch {batch}"] = {
                "fp32_s": round(fp32, 4),
                "bf16_s": round(low, 4),
                "fp32_over_bf16": round(fp32 / low, 2),
            }
            if name == "train":
                weights = min(step(batch, True, cast) for _ in range(2))
                rows[f"{name} batch {batch}"]["bf16_weights_s"] = round(weights, 4)
                rows[f"{name} batch {batch}"]["fp32_over_bf16_weights"] = round(fp32 / weights, 2)
            print(name, batch, rows[f"{name} batch {batch}"], flush=True)
    return rows


def sampled_in(low: bool):
    """`sampling.autocast` for one precision (the module looks it up at each call)."""
    if not low:
        return sampling.autocast
    return lambda device, dtype: bf16(True)


def oracle_readings(records: dict) -> list:
    """Every per-sample oracle reading of a case, in a fixed order."""
    out = list(records["reconstruction"].get("oracle", []))
    for edit in records["edits"]:
        out += edit.get("oracle", [])
    for prompt in records.get("leakage", {}).get("prompts", []):
        out += prompt["oracle"]
    return out


def case_comparison(steps: int) -> dict:
    spec = CaseSpec(stage="inversion", lr=5e-3, world="tiny-world", steps=steps)
    plain = sampling.autocast
    runs: dict[str, list] = {"fp32": [], "bf16": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(2):
            for mode in ("fp32", "bf16"):
                leakage._BASE_CACHE.clear()
                sampling.autocast = sampled_in(mode == "bf16")
                try:
                    result = run_case(spec, cache_dir=Path(tmp) / f"{mode}-{round_}")
                finally:
                    sampling.autocast = plain
                runs[mode].append(result)
                print(mode, round_, round(result.timings["eval_s"], 1), flush=True)
    fp32, low = runs["fp32"][0], runs["bf16"][0]
    a, b = oracle_readings(fp32.records), oracle_readings(low.records)
    numbers = [k for k, v in fp32.metrics.items() if isinstance(v, float)]
    return {
        "spec": spec.key(),
        "eval_s": {m: [round(r.timings["eval_s"], 1) for r in rs] for m, rs in runs.items()},
        "train_s": {m: [round(r.timings["train_s"], 1) for r in rs] for m, rs in runs.items()},
        "metrics": {k: {"fp32": fp32.metrics[k], "bf16": low.metrics.get(k)} for k in numbers},
        "oracle_readings": {
            "n": len(a),
            "all_attributes_equal": sum(x == y for x, y in zip(a, b, strict=True)),
        },
        "repeat_equal": {m: rs[0].metrics == rs[1].metrics for m, rs in runs.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("unet", "case"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    flags = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    report = {
        "cpu_bf16": [f for f in ("avx512_bf16", "amx_bf16") if f in flags.split()],
        "threads": 1,
    }
    report.update(unet_timings() if args.part == "unet" else case_comparison(args.steps))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
