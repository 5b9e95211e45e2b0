"""torch.compile for the training UNet: opt-in, because it pays only once compiled.

On CPU, inductor fuses the UNet's many small element-wise kernels (GroupNorm, SiLU, GELU, the
residual adds) between its convolutions and matmuls into single loops, so a step costs less
(the README's performance section has the figures). The first compile on a machine builds C++
kernels and takes minutes; later processes find them in inductor's on-disk cache and pay
seconds, mostly tracing. So it is off by default, and worth turning on where the same graphs
train many steps.

Turned on by PTIBENCH_COMPILE=1 (the pytest flag --compile sets it) or by a world config's
`compile = true` (which on CUDA also compiles the sampling UNet, see
models.loading.enable_cuda_speedups). Compiled and eager steps agree to float rounding, not bitwise;
near divergence (the tiny world's LoRA lrs 3e-3 and 1e-2) 1000 steps grow that into different
metrics, so compiled runs have cache entries of their own (run.cache.ResultCache.entry) and a
baseline mismatch names `compiled` among what changed.

Only the training forward and backward go through the compiled module; evaluation samples with
the eager UNet, whose batch shapes differ per case and would each need a graph of their own.
Copies of a module (stage 2 trains a deepcopy per case) reuse the compiled graph: dynamo treats
parameters as inputs, so a new copy does not recompile.
"""

from __future__ import annotations

from ptibench.case_options import env_switch

COMPILE_ENV = "PTIBENCH_COMPILE"


def enabled(config=None) -> bool:
    """Whether training compiles its UNet: the environment switch or the world's `compile`."""
    return env_switch(COMPILE_ENV) or bool(getattr(config, "compile", False))


def training_unet(bundle, unet):
    """`unet` as the training loop should call it: compiled when enabled, else itself.

    A module already compiled in place (the CUDA path of a world with `compile = true`) is
    returned as it is. Shapes may change between calls (a batched grid drops diverged cases),
    so dynamo marks a dimension dynamic after the first change instead of recompiling per size.
    """
    if not enabled(bundle.config) or getattr(unet, "_compiled_call_impl", None) is not None:
        return unet
    import torch  # here, not at the top: the pytest plugin reads COMPILE_ENV without torch

    return torch.compile(unet, dynamic=None)
