"""The tiny world's UNet: a stock UNet2DConditionModel plus a text-to-layout path.

Why (measured in docs/results/position/): the world's text encoder is causal and the position
word ends the caption, so "left" lives in one token state of sixteen; the UNet's cross-attention
never learned to turn that into *where* to draw (position following at chance), while given a
clean spatial cue it learns to draw the object there within 200 steps. So the UNet gets that cue
from the prompt: a linear map from the text encoder's token states (all of them, flattened) to
a one-channel map at the latent size, scaled per channel and added to `conv_in`'s output.

Extra tensors in the checkpoint: `layout.weight`, `layout.bias`, `layout_scale`; everything else
is a stock UNet2DConditionModel, so LoRA, textual inversion and the diffusers pipelines work
unchanged. The world's folder carries a copy of this file as a diffusers custom component
(`unet/layout_unet.py`, see `packaging`), so it imports nothing of ptibench.
"""

from __future__ import annotations

import functools

import torch
from diffusers import ModelMixin, UNet2DConditionModel

# diffusers finds a custom component's loading method by looking its base classes up by name in
# the component's own module, so ModelMixin must be visible here.
__all__ = ["LAYOUT_TOKENS", "LayoutUNet2DConditionModel", "ModelMixin", "add_layout"]

LAYOUT_TOKENS = 16
"""Prompt length the layout map reads (the tiny world's text encoder's context)."""


class _CuedConv2d(torch.nn.Conv2d):
    """conv_in, plus whatever cue the UNet's forward sets for this call."""

    cue: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out if self.cue is None else out + self.cue.to(out.dtype)


class LayoutUNet2DConditionModel(UNet2DConditionModel):
    """UNet2DConditionModel whose input features get a layout cue computed from the prompt (same
    config keys as the stock class, so `from_pretrained` / `from_config` read it alike)."""

    @functools.wraps(UNet2DConditionModel.__init__)
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        stock = self.conv_in
        self.conv_in = _CuedConv2d(
            stock.in_channels, stock.out_channels, stock.kernel_size, padding=stock.padding
        )
        size, width = self.config.sample_size, self.config.cross_attention_dim
        self.layout = torch.nn.Linear(LAYOUT_TOKENS * width, size * size)
        self.layout_scale = torch.nn.Parameter(torch.zeros(1, stock.out_channels, 1, 1))

    def layout_map(self, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, 1, size, size): where the prompt puts the object."""
        batch, tokens, _ = encoder_hidden_states.shape
        if tokens != LAYOUT_TOKENS:
            raise ValueError(f"the layout map reads {LAYOUT_TOKENS} token states, got {tokens}")
        size = self.config.sample_size
        flat = encoder_hidden_states.flatten(1).to(self.layout.weight.dtype)
        return self.layout(flat).view(batch, 1, size, size)

    def forward(self, sample, timestep, encoder_hidden_states, *args, **kwargs):
        cue = self.layout_map(encoder_hidden_states) * self.layout_scale
        if cue.shape[-2:] != sample.shape[-2:]:
            cue = torch.nn.functional.interpolate(cue, size=sample.shape[-2:], mode="bilinear")
        self.conv_in.cue = cue
        try:
            return super().forward(sample, timestep, encoder_hidden_states, *args, **kwargs)
        finally:
            self.conv_in.cue = None


def add_layout(unet: UNet2DConditionModel) -> LayoutUNet2DConditionModel:
    """The same network, in float32, with a zero-scaled layout path: its outputs equal `unet`'s
    until `layout_scale` is trained."""
    model = LayoutUNet2DConditionModel.from_config(unet.config)
    missing, unexpected = model.load_state_dict(unet.state_dict(), strict=False)
    if sorted(missing) != ["layout.bias", "layout.weight", "layout_scale"] or unexpected:
        raise ValueError(f"unexpected UNet layout: missing {missing}, unexpected {unexpected}")
    return model
