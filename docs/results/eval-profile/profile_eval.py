"""Where one case's evaluation spends its time: cProfile over `run_case` of a stage-1 case
trained for a couple of steps (its evaluation is the default plan's, whatever the steps), after
a first case has filled the process's caches (the base model's leakage copies, imports), and
the float32 UNet's sampling forward in channels-last memory format against the default.

    python docs/results/eval-profile/profile_eval.py [--threads 1] > profile.md
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time

import torch

from ptibench.models.loading import load_bundle
from ptibench.run.runner import run_case
from ptibench.spec import DEFAULT_WORLD, CaseSpec

SHARES = {
    "UNet forward (sampling and denoise_loss)": "unet_2d_condition.py:978(forward)",
    "conv2d": "<built-in method torch.conv2d>",
    "linear": "<built-in method torch._C._nn.linear>",
    "scaled dot-product attention": "<built-in method torch._C._nn.scaled_dot_product_attention>",
    "group norm": "<built-in method torch.group_norm>",
}


def evaluation_profile() -> None:
    spec = CaseSpec(stage="inversion", lr=1e-3, steps=2)
    with tempfile.TemporaryDirectory() as cache:
        run_case(spec.with_(seed=99), cache_dir=cache, progress=False)
        profile = cProfile.Profile()
        profile.enable()
        result = run_case(spec, cache_dir=cache, progress=False)
        profile.disable()
    stats = pstats.Stats(profile).stats
    cumulative = {f"{k[0].rsplit('/', 1)[-1]}:{k[1]}({k[2]})": v[3] for k, v in stats.items()}
    cumulative.update({k[2]: v[3] for k, v in stats.items() if k[0] == "~"})
    total = result.timings["eval_s"]
    print(f"evaluation of one case: {total:.1f} s\n")
    print("| part | seconds | share of the evaluation |")
    print("|---|---|---|")
    for name, key in SHARES.items():
        seconds = cumulative.get(key, 0.0)
        print(f"| {name} | {seconds:.1f} | {seconds / total:.0%} |")


def channels_last_check(repeats: int = 10) -> None:
    bundle = load_bundle(DEFAULT_WORLD)
    unet = bundle.unet.eval()
    size = unet.config.sample_size
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(64, unet.config.in_channels, size, size, generator=generator)
    hidden = torch.randn(64, 16, unet.config.cross_attention_dim, generator=generator)

    def forward(x):
        with torch.no_grad():
            return unet(x, torch.tensor(500), encoder_hidden_states=hidden).sample

    def timed(x) -> float:
        clock = time.perf_counter()
        forward(x)
        return time.perf_counter() - clock

    packed = latents.contiguous(memory_format=torch.channels_last)
    default = forward(latents)
    unet.to(memory_format=torch.channels_last)
    channels_last = forward(packed)
    default_times, channels_last_times = [], []
    for _ in range(repeats):  # alternated, so both sides see the same machine
        unet.to(memory_format=torch.contiguous_format)
        default_times.append(timed(latents))
        unet.to(memory_format=torch.channels_last)
        channels_last_times.append(timed(packed))
    unet.to(memory_format=torch.contiguous_format)
    default_s, channels_last_s = min(default_times), min(channels_last_times)
    diff = float((default - channels_last).abs().max())
    print(
        f"\nUNet forward, batch 64 at {size}x{size} (best of {repeats}, alternated): "
        f"default {default_s:.3f} s, "
        f"channels-last {channels_last_s:.3f} s ({default_s / channels_last_s:.2f}x); "
        f"outputs differ by {diff:.1e} (bitwise equal: {diff == 0.0})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    evaluation_profile()
    channels_last_check()


if __name__ == "__main__":
    main()
