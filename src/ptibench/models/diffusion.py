"""The noise-prediction loss of a world's parameterisation: what training minimises and what the
`denoise_loss` metric reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ptibench.models.bundle import ModelBundle, autocast, unet_inputs


def diffusion_loss(
    bundle: ModelBundle,
    unet,
    latents: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    hidden: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """The noise-prediction loss of the world's parameterisation (v, epsilon or sample).

    Computed from alphas_cumprod directly rather than through the scheduler, whose add_noise
    caches tensors on itself: this stays a pure function of its inputs.
    """
    config = bundle.train_scheduler.config
    device = latents.device
    alphas = bundle.train_scheduler.alphas_cumprod.to(device)[timesteps.to(device)]
    alphas = alphas.float().view(-1, *([1] * (latents.dim() - 1)))
    signal, sigma = alphas.sqrt(), (1 - alphas).sqrt()
    noisy = signal * latents + sigma * noise
    if config.prediction_type == "v_prediction":
        target = signal * noise - sigma * latents
    elif config.prediction_type == "epsilon":
        target = noise
    else:
        target = latents
    states, extra = unet_inputs(bundle, hidden)
    with autocast(bundle.device, bundle.dtype):
        pred = unet(
            noisy.to(bundle.dtype), timesteps.to(device), encoder_hidden_states=states, **extra
        ).sample
    if reduction == "none":
        return F.mse_loss(pred.float(), target, reduction="none").flatten(1).mean(1)
    return F.mse_loss(pred.float(), target)
