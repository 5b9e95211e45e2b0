"""Accelerator figures for the README: step time, batched-vs-sequential ratios, peak memory.

    python tools/gpu_perf.py --out DIR [--models DIR] [--steps 50] [--sd15-steps 20] [--seeds 3]

Two worlds: an SD1.5-shaped random-init pipeline at 512x512 under bf16 autocast, then the
shipped tiny world (fp32, as the baselines run it). For each: one stage-1 and one stage-2 step
alone; the default inversion grid (7 lrs x seeds) as K sequential runs and as one batched run;
the default LoRA grid (6 lrs x seeds) as K sequential runs and as one stacked run; the peak
memory of the batched and stacked runs at growing K; the FLOPs of a step against the device's
measured bf16 matmul rate. For the tiny world also the default evaluation of seven cases,
sampled per case and in shared batches. Every figure is one JSON line, printed and appended to
DIR/gpu_perf.jsonl as it is measured, so a run stopped early keeps what it measured; a section
that fails records its error and the next one runs. On a machine without CUDA it runs the same
code at toy sizes (--toy), to check the script before a GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import torch

from ptibench.concept import load_concept
from ptibench.grids import PRESETS
from ptibench.harness.gpu_smoke import sd15_world, write_noise_concept
from ptibench.models.loading import load_bundle
from ptibench.models.registry import register_world, resolve_world
from ptibench.spec import CaseSpec, EvalConfig
from ptibench.training.batched import train_batched
from ptibench.training.loop import StageContext, TrainingData
from ptibench.training.methods import get_method
from ptibench.training.stacked_lora import train_stacked

DEFAULT_GRID = PRESETS["default"]


class Figures:
    """Appends each figure to a JSON-lines file and prints it."""

    def __init__(self, path: Path):
        self.path = path

    def add(self, name: str, **values) -> None:
        line = json.dumps({"figure": name, **values})
        print(line, flush=True)
        with self.path.open("a") as handle:
            handle.write(line + "\n")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn):
    sync(device)
    clock = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - clock, out


def measured(device: torch.device, fn):
    """(seconds, peak memory in MiB, result): the allocator's peak on CUDA, else the process's
    max RSS so far (which never goes down: on a CPU it bounds, not measures, a run's peak)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    seconds, out = timed(device, fn)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return seconds, round(peak, 1), out


def matmul_tflops(device: torch.device, size: int) -> float:
    """What this device reaches on a square bf16 matmul (fp32 on a CPU): the dense bound."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    repeats = 10
    seconds, _ = timed(device, lambda: [a @ b for _ in range(repeats)])
    return 2 * size**3 * repeats / seconds / 1e12


def step_tflop(method, stage: str, ctx: StageContext) -> float:
    """Floating-point work of one training step (matmuls and convolutions, forward and backward,
    text encoder included), counted by torch's FlopCounterMode over a two-step run."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.random.fork_rng(devices=[]):
        method.train(
            stage,
            StageContext(
                ctx.spec.with_(steps=2), ctx.concept, ctx.bundle, ctx.data, pivot=ctx.pivot
            ),
        )
    return counter.get_total_flops() / 2 / 1e12


class WorldRun:
    """The measurements of one world: its bundle, concept and training data, loaded once."""

    def __init__(self, label: str, world, concept, figures: Figures, steps: int, dense: float):
        self.label, self.figures, self.steps, self.dense = label, figures, steps, dense
        self.world = world
        self.bundle = load_bundle(world)
        self.device = self.bundle.device
        self.concept = load_concept(concept)
        pixels, _ = self.concept.pixels(self.bundle.resolution)
        self.data = TrainingData.build(self.bundle, self.concept, pixels)
        self.method = get_method("pti")
        self.pivot = self.bundle.word_embedding(self.concept.initializer).to(self.device)
        figures.add(
            "world",
            world=label,
            device=str(self.device),
            dtype=str(self.bundle.dtype),
            resolution=self.bundle.resolution,
            batch=self.spec("inversion", 1e-3).batch_size,
        )

    def spec(self, stage: str, lr: float, seed: int = 0, steps: int | None = None) -> CaseSpec:
        return CaseSpec(
            stage=stage, lr=lr, world=self.world.name, concept=str(self.concept.folder),
            steps=steps or self.steps, seed=seed,
        )  # fmt: skip

    def context(self, spec: CaseSpec) -> StageContext:
        pivot = self.pivot if spec.stage == "finetune" else None
        return StageContext(spec, self.concept, self.bundle, self.data, pivot=pivot)

    def alone(self, stage: str, lr: float) -> None:
        """Seconds per step of one case (after a three-step warm-up)."""
        self.method.train(stage, self.context(self.spec(stage, lr, steps=3)))
        with torch.random.fork_rng(devices=[]):
            seconds, peak, _ = measured(
                self.device, lambda: self.method.train(stage, self.context(self.spec(stage, lr)))
            )
        step = seconds / self.steps
        flop = step_tflop(self.method, stage, self.context(self.spec(stage, lr)))
        self.figures.add(
            "step_alone", world=self.label, stage=stage, s_per_step=round(step, 5),
            peak_mib=peak, tflop_per_step=round(flop, 4),
            tflops_reached=round(flop / step, 2), share_of_dense=round(flop / step / self.dense, 4),
        )  # fmt: skip

    def grid(self, stage: str, seeds: int, label: str = "grid") -> None:
        """The default grid of `stage` at `seeds` seeds: K sequential runs, then one group run
        (after a three-step warm-up at its batch shape: cuDNN tunes each new shape once)."""
        lrs = DEFAULT_GRID[stage]
        specs = [self.spec(stage, lr, seed) for seed in range(seeds) for lr in lrs]

        def sequential():
            return [self.method.train(stage, self.context(s)) for s in specs]

        with torch.random.fork_rng(devices=[]):
            seq_s, seq_peak, alone = measured(self.device, sequential)
            self.together(stage, [s.with_(steps=3) for s in specs])
            grp_s, grp_peak, grouped = measured(self.device, lambda: self.together(stage, specs))
        diffs = agreement(stage, alone, grouped)
        self.figures.add(
            label, world=self.label, stage=stage, k=len(specs), seeds=seeds, steps=self.steps,
            sequential_s=round(seq_s, 3), group_s=round(grp_s, 3),
            speedup=round(seq_s / grp_s, 2), sequential_peak_mib=seq_peak,
            group_peak_mib=grp_peak,
            max_abs_diff_per_lr=[None if d is None else float(f"{d:.1e}") for d in diffs],
        )  # fmt: skip

    def grid_without_tf32(self, stage: str) -> None:
        """The one-seed grid again with TF32 off: how much of the sequential/group difference
        is TF32's rounding, amplified over the run."""
        matmul, conv = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            self.grid(stage, 1, label="grid_without_tf32")
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, conv

    def together(self, stage: str, specs: list[CaseSpec]):
        """One group run of `specs`: the batched stage 1 or the stacked LoRA."""
        if stage == "inversion":
            return train_batched(self.bundle, self.concept, self.data, specs, self.method)
        return train_stacked(self.bundle, self.concept, self.data, specs, self.method, self.pivot)

    def memory_growth(self, stage: str, ks: tuple[int, ...]) -> None:
        """Peak memory and time per step of the group run at K = each of `ks` (lrs cycled),
        each after a two-step warm-up at its shape."""
        lrs = DEFAULT_GRID[stage]
        steps = max(3, self.steps // 5)
        for k in ks:
            specs = [self.spec(stage, lrs[i % len(lrs)], i // len(lrs), steps) for i in range(k)]
            with torch.random.fork_rng(devices=[]):
                self.together(stage, [s.with_(steps=2) for s in specs])
                seconds, peak, _ = measured(self.device, lambda s=specs: self.together(stage, s))
            self.figures.add(
                "group_memory", world=self.label, stage=stage, k=k, steps=steps,
                s_per_step=round(seconds / steps, 5), peak_mib=peak,
            )  # fmt: skip

    def sampling(self, cases: int) -> None:
        """The default evaluation's images for `cases` stage-1 cases: each case sampled alone
        vs all in shared batches (what group sampling does), same images."""
        from ptibench.evaluation.evaluate import case_plan, sample_cases
        from ptibench.evaluation.sampling import generate_rows

        config = EvalConfig()
        plan = case_plan(self.concept, config, oracle=self.world.oracle)
        prompts = [self.concept.with_placeholder(t) for t in plan]
        counts = list(plan.values())
        gen = torch.Generator().manual_seed(0)
        start = self.pivot.cpu()
        vectors = [
            (start + 0.1 * torch.randn(start.shape, generator=gen)).to(self.device)
            for _ in range(cases)
        ]

        def per_case():
            out = []
            for vector in vectors:
                embeds = self.bundle.encode(prompts, self.concept.placeholder, vector)
                out.append(generate_rows(self.bundle, embeds, counts, config))
            return out

        def shared():
            return sample_cases(
                self.bundle, self.concept, config, vectors, oracle=self.world.oracle
            )

        with torch.no_grad():
            timed(
                self.device,
                lambda: generate_rows(
                    self.bundle,
                    self.bundle.encode(prompts[:1], self.concept.placeholder, vectors[0]),
                    [2],
                    config,
                ),
            )
            alone_s, alone_peak, _ = measured(self.device, per_case)
            shared_s, shared_peak, _ = measured(self.device, shared)
        self.figures.add(
            "evaluation_sampling", world=self.label, cases=cases,
            images=cases * sum(counts), sample_steps=config.sample_steps,
            sample_batch=self.bundle.config.sample_batch,
            per_case_s=round(alone_s, 3), shared_s=round(shared_s, 3),
            speedup=round(alone_s / shared_s, 2), per_case_peak_mib=alone_peak,
            shared_peak_mib=shared_peak,
        )  # fmt: skip


def agreement(stage: str, alone, grouped) -> list[float | None]:
    """Per case, the largest absolute difference between the sequential and the group run's
    trained weights (the vector in stage 1, the LoRA weights in stage 2); None where either run
    stopped early."""
    diffs: list[float | None] = []
    for a, b in zip(alone, grouped, strict=True):
        if a.status != "ok" or b.status != "ok":
            diffs.append(None)
        elif stage == "inversion":
            diffs.append(float((a.vector - b.vector).abs().max()))
        else:
            ours = dict(b.unet.named_parameters())
            diffs.append(
                max(
                    float((weight.float() - ours[name].float()).abs().max())
                    for name, weight in a.unet.named_parameters()
                    if ".lora_" in name
                )
            )
    return diffs


def section(figures: Figures, name: str, fn) -> None:
    """Run one measurement; a failure is recorded as a figure and does not stop the script."""
    clock = time.perf_counter()
    try:
        fn()
    except Exception as error:  # noqa: BLE001 - any failure is a finding to report, not a crash
        figures.add("error", section=name, error=f"{type(error).__name__}: {error}",
                    where=traceback.format_exc(limit=-3))  # fmt: skip
    figures.add("section_done", section=name, seconds=round(time.perf_counter() - clock, 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=50, help="tiny world steps per run")
    parser.add_argument("--sd15-steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3, help="tiny world grid seeds")
    parser.add_argument("--models", help="where the SD1.5-shaped pipeline is written (DIR/models)")
    parser.add_argument("--toy", action="store_true", help="toy sizes, to check on a CPU")
    parser.add_argument("--skip-sd15", action="store_true")
    parser.add_argument("--skip-sampling", action="store_true")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figures = Figures(out / "gpu_perf.jsonl")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    import diffusers
    import peft
    import transformers

    figures.add(
        "environment", python=platform.python_version(), torch=torch.__version__,
        diffusers=diffusers.__version__, transformers=transformers.__version__,
        peft=peft.__version__, device=str(device),
        device_name=torch.cuda.get_device_name(0) if device.type == "cuda" else platform.machine(),
    )  # fmt: skip
    dense = matmul_tflops(device, 512 if args.toy else 8192)
    figures.add("dense_matmul", device=str(device), tflops=round(dense, 1))

    runs: dict[str, WorldRun] = {}

    def sd15():
        resolution = 64 if args.toy else 512
        models = Path(args.models) if args.models else out / "models"
        world = sd15_world(models, resolution, "bfloat16", full=not args.toy)
        concept = write_noise_concept(models / "concept", resolution)
        register_world(world.name, lambda: world)
        runs["sd15"] = WorldRun("sd15-512-bf16", world, concept, figures, args.sd15_steps, dense)
        runs["sd15"].alone("inversion", 5e-3)
        runs["sd15"].alone("finetune", 1e-4)

    if not args.skip_sd15:
        section(figures, "sd15: steps alone", sd15)
    if "sd15" in runs:
        run = runs["sd15"]
        section(figures, "sd15: inversion grid", lambda: run.grid("inversion", 1))
        section(figures, "sd15: LoRA grid", lambda: run.grid("finetune", 1))
        section(
            figures, "sd15: inversion memory", lambda: run.memory_growth("inversion", (1, 3, 7))
        )
        section(figures, "sd15: LoRA memory", lambda: run.memory_growth("finetune", (1, 3, 6)))

    tiny = resolve_world("tiny-world")
    if device.type == "cuda":
        tiny = replace(tiny, device="cuda")

    def tiny_world():
        runs["tiny"] = WorldRun("tiny-world", tiny, "yellow-ring", figures, args.steps, dense)
        runs["tiny"].alone("inversion", 5e-3)
        runs["tiny"].alone("finetune", 1e-4)

    section(figures, "tiny: steps alone", tiny_world)
    if "tiny" in runs:
        run = runs["tiny"]
        section(figures, "tiny: inversion grid", lambda: run.grid("inversion", args.seeds))
        section(figures, "tiny: LoRA grid", lambda: run.grid("finetune", args.seeds))
        ks = (1, 7, 21) if not args.toy else (1, 3)
        section(figures, "tiny: inversion memory", lambda: run.memory_growth("inversion", ks))
        ks = (1, 6, 18) if not args.toy else (1, 3)
        section(figures, "tiny: LoRA memory", lambda: run.memory_growth("finetune", ks))
        if device.type == "cuda" or args.toy:
            for stage in ("inversion", "finetune"):
                section(figures, f"tiny: {stage} without TF32",
                        lambda st=stage: run.grid_without_tf32(st))  # fmt: skip
        if not args.skip_sampling:
            section(
                figures, "tiny: evaluation sampling", lambda: run.sampling(2 if args.toy else 7)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
