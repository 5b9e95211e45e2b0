"""ModelBundle: a loaded pipeline plus what training and sampling need from it.

The stages and the metrics see one interface: `prompt_ids` -> `encode_ids(ids, mask, vector)` ->
a hidden tensor, `unet_inputs(bundle, hidden)` -> (encoder_hidden_states, extra UNet kwargs),
`pipe_inputs(bundle, cond, uncond)` -> the sampling pipeline's prompt arguments. For SD these are
the identity; ptibench.models.sdxl overrides them for SDXL's two text encoders.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ptibench.case_options import sample_dtype
from ptibench.errors import PtibenchError
from ptibench.models.config import WorldConfig


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed precision on CUDA when the frozen weights are half precision: the trained
    tensors (embedding, LoRA) stay fp32 and autocast mixes them safely. A no-op otherwise,
    so CPU float32 runs are bitwise what they were."""
    if device.type == "cuda" and dtype in (torch.float16, torch.bfloat16):
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def sampling_autocast(device: torch.device, dtype: torch.dtype):
    """The evaluation sampler's precision: the world's own (`autocast`), or bfloat16 autocast
    for a float32 world when asked (case_options.SAMPLE_DTYPE_ENV). Training never uses it."""
    if dtype == torch.float32 and sample_dtype() == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return autocast(device, dtype)


def placeholder_token_ids(
    tok, prompt: str, placeholder: str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of `prompt` padded to `tok`'s length with its own pad token, and a mask of the
    placeholder's slots (id 0 until the learned row replaces their embedding); every bundle's
    tokenizers go through this one function."""
    pieces = prompt.split(placeholder) if placeholder else [prompt]
    ids: list[int] = [tok.bos_token_id]
    slots: list[bool] = [False]
    for i, piece in enumerate(pieces):
        if i:
            ids.append(0)
            slots.append(True)
        words = tok(piece, add_special_tokens=False).input_ids if piece.strip() else []
        ids += words
        slots += [False] * len(words)
    ids.append(tok.eos_token_id)
    slots.append(False)
    length = tok.model_max_length
    if len(ids) > length:
        raise PtibenchError(f"prompt {prompt!r} is {len(ids)} tokens, over the model's {length}")
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids += [pad] * (length - len(ids))
    slots += [False] * (length - len(slots))
    return torch.tensor(ids), torch.tensor(slots)


class ModelBundle:
    """A loaded pipeline plus what training needs: frozen modules, a training scheduler, and
    prompt encoding with a learned vector spliced in at the placeholder's positions.

    The modules are shared by every case in the process: nothing here mutates them (no token is
    added to the tokenizer, no adapter is injected); stages train on copies or on extra tensors.
    """

    def __init__(self, config: WorldConfig, pipe, version: str):
        from diffusers import DDPMScheduler

        self.config = config
        self.pipe = pipe
        self.version = version
        self.device = config.torch_device()
        self.dtype = config.torch_dtype()
        self.train_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            module.requires_grad_(False)
            module.eval()
        self._uncond: torch.Tensor | None = None

    @property
    def unet(self):
        return self.pipe.unet

    @property
    def vae(self):
        return self.pipe.vae

    @property
    def text_encoder(self):
        return self.pipe.text_encoder

    @property
    def tokenizer(self):
        return self.pipe.tokenizer

    @property
    def resolution(self) -> int:
        if self.config.resolution:
            return self.config.resolution
        return int(self.unet.config.sample_size) * self.pipe.vae_scale_factor

    @property
    def embedding_dim(self) -> int:
        return int(self.text_encoder.get_input_embeddings().weight.shape[1])

    def token_ids(self, prompt: str, placeholder: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids of `prompt` padded to the model length, and a mask of the placeholder slots.

        The placeholder never reaches the tokenizer: the text around it is tokenised and the
        slots hold id 0 until the learned vector replaces their embedding.
        """

        return placeholder_token_ids(self.tokenizer, prompt, placeholder)

    def prompt_ids(
        self, prompts: list[str], placeholder: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked token ids [B, L] and placeholder masks [B, L], on the bundle's device."""
        rows = [self.token_ids(p, placeholder) for p in prompts]
        ids = torch.stack([r[0] for r in rows]).to(self.device)
        return ids, torch.stack([r[1] for r in rows]).to(self.device)

    def encode_ids(
        self, ids: torch.Tensor, mask: torch.Tensor, vector: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Text-encoder hidden states [B, L, D] with `vector` at the masked slots.

        Differentiable in `vector` only: the vector is spliced into the token-embedding output by
        a forward hook, so no gradient or optimizer state ever touches the embedding matrix.
        """
        if not mask.any():
            return self.text_encoder(ids)[0]
        if vector is None:
            raise ValueError("prompts contain the placeholder but no vector was given")
        embedding = self.text_encoder.get_input_embeddings()

        def splice(module, args, output):
            return torch.where(mask[..., None], vector.to(output.device, output.dtype), output)

        handle = embedding.register_forward_hook(splice)
        try:
            return self.text_encoder(ids)[0]
        finally:
            handle.remove()

    def encode(
        self,
        prompts: list[str],
        placeholder: str | None = None,
        vector: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states of `prompts`, the placeholder (if any) standing for `vector`."""
        ids, mask = self.prompt_ids(prompts, placeholder)
        return self.encode_ids(ids, mask, vector)

    def unconditional(self) -> torch.Tensor:
        """The empty prompt's encoding (classifier-free guidance), computed once."""
        if self._uncond is None:
            with torch.no_grad():
                self._uncond = self.encode([""])
        return self._uncond

    def word_embedding(self, word: str) -> torch.Tensor:
        """The input embedding of a word (mean over its tokens if it has several)."""
        ids = self.tokenizer(word, add_special_tokens=False).input_ids
        if not ids:
            raise PtibenchError(f"initializer {word!r} has no tokens")
        weight = self.text_encoder.get_input_embeddings().weight
        return weight[torch.tensor(ids, device=weight.device)].mean(0).detach().float().clone()

    @torch.no_grad()
    def encode_images(self, pixels: np.ndarray, batch: int = 16) -> torch.Tensor:
        """uint8 NxHxWx3 -> scaled VAE latents (posterior mean: deterministic, cached once)."""
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        out = []
        for chunk in x.split(batch):
            dist = self.vae.encode(chunk.to(self.device, self.dtype)).latent_dist
            out.append(dist.mean.float())
        latents = torch.cat(out)
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return (latents - shift) * self.vae.config.scaling_factor

    def sampling_pipeline(self, unet=None):
        """A pipeline over the shared modules (optionally another UNet) with a fresh scheduler,
        so sampling never touches the state of another case's scheduler."""
        components = dict(self.pipe.components)
        components["scheduler"] = type(self.pipe.scheduler).from_config(self.pipe.scheduler.config)
        if unet is not None:
            components["unet"] = unet
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return type(self.pipe)(**components, **self.pipeline_options())

    def pipeline_options(self) -> dict:
        """The pipeline class's own constructor arguments beside its components."""
        return {"requires_safety_checker": False}


def unet_inputs(bundle, hidden: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """(encoder_hidden_states, extra UNet kwargs) for a hidden tensor from `encode_ids`."""
    method = getattr(bundle, "unet_inputs", None)
    if method is not None:
        return method(hidden)
    return hidden.to(bundle.dtype), {}


def pipe_inputs(bundle, cond: torch.Tensor, uncond: torch.Tensor) -> dict:
    method = getattr(bundle, "pipe_inputs", None)
    if method is not None:
        return method(cond, uncond)
    return {
        "prompt_embeds": cond.to(bundle.dtype),
        "negative_prompt_embeds": uncond.to(bundle.dtype),
    }
