"""The methods' default Adam runs foreach kernels over several tensors; the stored baselines were
recorded with torch's one-tensor-at-a-time Adam (its CPU default). The two must agree bit for
bit, or every baseline would need recording again: checked here on tensors shaped like the
stage-1 vector, a LoRA's factors and a conv weight, at lrs across the grids, through steps with
large and tiny gradients."""

from __future__ import annotations

import pytest
import torch

from ptibench.training.methods import get_method

SHAPES = [(128,), (4, 128), (128, 4), (4, 320), (320, 4), (64, 64, 3, 3)]


def trajectory(make_optimizer, lr: float, steps: int = 30) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=gen).requires_grad_() for shape in SHAPES]
    optimizer = make_optimizer(params, lr)
    for step in range(steps):
        scale = 10.0 ** (step % 7 - 3)
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen) * scale
        optimizer.step()
    return [p.detach().clone() for p in params]


def one_by_one(params, lr):
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, foreach=False)


@pytest.mark.parametrize("stage", ["inversion", "finetune", "finetune-full"])
@pytest.mark.parametrize("lr", [3e-5, 1e-3, 1.0])
def test_the_default_optimizer_matches_the_one_tensor_adam_bitwise(stage, lr):
    method = get_method("pti")
    several = [torch.zeros(1, requires_grad=True) for _ in range(2)]
    assert method.optimizer(stage, several, lr).defaults["foreach"] is True
    ours = trajectory(lambda params, lr: method.optimizer(stage, params, lr), lr)
    theirs = trajectory(one_by_one, lr)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
