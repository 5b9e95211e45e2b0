"""SDXLBundle: ModelBundle for StableDiffusionXLPipeline.

SDXL has two tokenizers and two text encoders. The placeholder is inverted in both, as the
advanced PTI trainers do: the learned vector is the concatenation of a CLIP-L row and a CLIP-G row
([d_l + d_g]); `word_embedding` concatenates the initializer's rows of both encoders, and the
artifact is saved as {"clip_l": ..., "clip_g": ...}. The pooled text embedding (CLIP-G's
projection) rides along in the hidden tensor as one extra last row (zero-padded to the hidden
width), so every stage can index, expand and batch `hidden` as one tensor; `unet_inputs` /
`pipe_inputs` unpack it into `added_cond_kwargs` / the pooled prompt embeds, with SDXL's
add_time_ids for a square image at the bundle's resolution, no crop.
"""

from __future__ import annotations

import torch

from ptibench.errors import PtibenchError
from ptibench.models.bundle import ModelBundle, autocast, placeholder_token_ids
from ptibench.models.config import WorldConfig


class SDXLBundle(ModelBundle):
    """ModelBundle for StableDiffusionXLPipeline (see the module docstring)."""

    def __init__(self, config: WorldConfig, pipe, version: str):
        super().__init__(config, pipe, version)
        pipe.text_encoder_2.requires_grad_(False)
        pipe.text_encoder_2.eval()
        self.encoders = (
            (pipe.tokenizer, pipe.text_encoder),
            (pipe.tokenizer_2, pipe.text_encoder_2),
        )
        self.row_dims = tuple(
            int(enc.get_input_embeddings().weight.shape[1]) for _, enc in self.encoders
        )
        self.hidden_width = sum(int(enc.config.hidden_size) for _, enc in self.encoders)
        self.pooled_dim = int(pipe.text_encoder_2.config.projection_dim)
        if self.pooled_dim > self.hidden_width:
            raise PtibenchError(
                f"SDXL pooled width {self.pooled_dim} exceeds the hidden width {self.hidden_width}"
            )
        size = self.resolution
        self.time_ids = torch.tensor(
            [[size, size, 0, 0, size, size]], dtype=self.dtype, device=self.device
        )

    @property
    def embedding_dim(self) -> int:
        return sum(self.row_dims)

    def token_ids(self, prompt: str, placeholder: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids [2, L] (one row per tokenizer, each with its own padding) and the slot mask [L]."""
        rows = [placeholder_token_ids(tok, prompt, placeholder) for tok, _ in self.encoders]
        if rows[0][0].shape != rows[1][0].shape or not torch.equal(rows[0][1], rows[1][1]):
            raise PtibenchError("the two SDXL tokenizers split the prompt differently")
        return torch.stack([rows[0][0], rows[1][0]]), rows[0][1]

    def _split(self, vector: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = self.row_dims[0]
        return vector[..., :first], vector[..., first:]

    def encode_ids(
        self, ids: torch.Tensor, mask: torch.Tensor, vector: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Packed [B, L + 1, C]: both encoders' penultimate hidden states side by side
        (C = d_l + d_g, what SDXL's UNet cross-attends to), then the pooled CLIP-G embedding."""
        if mask.any() and vector is None:
            raise ValueError("prompts contain the placeholder but no vector was given")
        parts = self._split(vector) if vector is not None else (None, None)
        hidden, pooled = [], None
        for i, ((_, encoder), part) in enumerate(zip(self.encoders, parts, strict=True)):
            handle = None
            if mask.any():
                row = part

                def splice(module, args, output, row=row):
                    return torch.where(mask[..., None], row.to(output.dtype), output)

                handle = encoder.get_input_embeddings().register_forward_hook(splice)
            try:
                with autocast(self.device, self.dtype):
                    out = encoder(ids[:, i], output_hidden_states=True)
            finally:
                if handle is not None:
                    handle.remove()
            hidden.append(out.hidden_states[-2])
            if i == 1:
                pooled = out[0]
        states = torch.cat(hidden, dim=-1)
        row = torch.zeros(
            states.shape[0], 1, states.shape[-1], dtype=states.dtype, device=states.device
        )
        row[:, 0, : self.pooled_dim] = pooled.to(states.dtype)
        return torch.cat([states, row], dim=1)

    def unconditional(self) -> torch.Tensor:
        """SDXL's negative prompt: zeros (force_zeros_for_empty_prompt) or the empty prompt."""
        if self._uncond is None:
            if self.pipe.config.get("force_zeros_for_empty_prompt", True):
                length = self.pipe.tokenizer.model_max_length
                self._uncond = torch.zeros(
                    1, length + 1, self.hidden_width, dtype=self.dtype, device=self.device
                )
            else:
                with torch.no_grad():
                    self._uncond = self.encode([""])
        return self._uncond

    def unet_inputs(self, hidden: torch.Tensor) -> tuple[torch.Tensor, dict]:
        pooled = hidden[:, -1, : self.pooled_dim].to(self.dtype)
        extra = {
            "added_cond_kwargs": {
                "text_embeds": pooled,
                "time_ids": self.time_ids.expand(len(hidden), -1),
            }
        }
        return hidden[:, :-1].to(self.dtype), extra

    def pipe_inputs(self, cond: torch.Tensor, uncond: torch.Tensor) -> dict:
        return {
            "prompt_embeds": cond[:, :-1].to(self.dtype),
            "pooled_prompt_embeds": cond[:, -1, : self.pooled_dim].to(self.dtype),
            "negative_prompt_embeds": uncond[:, :-1].to(self.dtype),
            "negative_pooled_prompt_embeds": uncond[:, -1, : self.pooled_dim].to(self.dtype),
        }

    def word_embedding(self, word: str) -> torch.Tensor:
        rows = []
        for tok, encoder in self.encoders:
            ids = tok(word, add_special_tokens=False).input_ids
            if not ids:
                raise PtibenchError(f"initializer {word!r} has no tokens")
            weight = encoder.get_input_embeddings().weight
            rows.append(weight[torch.tensor(ids, device=weight.device)].mean(0).float())
        return torch.cat(rows).detach().clone()

    @torch.no_grad()
    def encode_images(self, pixels, batch: int = 16) -> torch.Tensor:
        """SDXL's VAE overflows in fp16 (config force_upcast): encode in fp32 then."""
        upcast = self.dtype == torch.float16 and self.vae.config.get("force_upcast", False)
        if not upcast:
            return super().encode_images(pixels, batch)
        self.vae.to(torch.float32)
        dtype, self.dtype = self.dtype, torch.float32
        try:
            return super().encode_images(pixels, batch)
        finally:
            self.dtype = dtype
            self.vae.to(dtype)

    def pipeline_options(self) -> dict:
        return {
            "force_zeros_for_empty_prompt": self.pipe.config.get(
                "force_zeros_for_empty_prompt", True
            ),
            "add_watermarker": False,
        }

    def embedding_tensors(self, placeholder: str, vector: torch.Tensor) -> dict:
        first, second = self._split(vector.detach().float().cpu().reshape(-1))
        return {
            "clip_l": first.reshape(1, -1).contiguous(),
            "clip_g": second.reshape(1, -1).contiguous(),
        }
