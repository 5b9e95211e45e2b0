"""diffusers' examples/textual_inversion/textual_inversion.py, per-step work, on a ptibench world.

What the reference loop does every step, reproduced here on the same pipeline, batch size,
images, captions, timesteps and noise as ptibench's stage 1 (the same BatchStream, seeded by the
spec's seed):

- the placeholder is a NEW token: the tokenizer's vocabulary + 1, the text encoder's token
  embedding resized and the new row set to the initializer's embedding;
- the whole nn.Embedding weight is trainable (49k x d gradient and AdamW state), the rest of
  the text encoder frozen, the text encoder in train() mode;
- the batch's images are VAE-encoded every step (`latent_dist.sample()`, times the scaling
  factor): no latent cache;
- the text encoder runs once per sample (B captions, no de-duplication);
- noisy latents via the scheduler's add_noise, v or epsilon target via get_velocity / noise,
  MSE, backward, AdamW (betas 0.9/0.999, weight_decay 1e-2, eps 1e-8, constant lr), zero_grad;
- then every row except the placeholder's is restored from the original matrix.

Differences that are the reference's own and kept on purpose: weight decay 1e-2 (ptibench's
default method uses Adam without decay: AdamW shrinks the placeholder row by lr*1e-2 per step)
and the VAE posterior *sample* (ptibench encodes the posterior mean once). Neither changes the
objective's expectation much; both are visible in the final losses printed side by side.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ptibench.stages import BatchStream, TrainingData

WEIGHT_DECAY = 1e-2


class ReferenceLoop:
    """One reference textual-inversion run; `step()` does one optimisation step."""

    def __init__(self, bundle, concept, pixels, data: TrainingData, spec, posterior="sample"):
        self.posterior = posterior  # "sample" as the reference does; "mean" to compare losses
        self.bundle = bundle
        self.spec = spec
        tokenizer = bundle.tokenizer
        self.text_encoder = copy.deepcopy(bundle.text_encoder)
        self.placeholder_id = len(tokenizer)
        self.text_encoder.resize_token_embeddings(self.placeholder_id + 1, mean_resizing=False)
        embedding = self.text_encoder.get_input_embeddings()
        with torch.no_grad():
            embedding.weight[self.placeholder_id] = bundle.word_embedding(concept.initializer)
        self.text_encoder.requires_grad_(False)
        embedding.weight.requires_grad_(True)
        self.text_encoder.train()
        self.weight = embedding.weight
        self.optimizer = torch.optim.AdamW(
            [self.weight],
            lr=spec.lr,
            betas=(0.9, 0.999),
            weight_decay=WEIGHT_DECAY,
            eps=1e-8,
        )
        self.original = self.weight.detach().clone()
        self.keep = torch.ones(len(self.weight), dtype=torch.bool)
        self.keep[self.placeholder_id] = False
        self.ids = torch.where(data.mask, self.placeholder_id, data.ids)
        self.pixels = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)).to(
            bundle.device, bundle.dtype
        )
        scheduler = bundle.train_scheduler
        self.scheduler = scheduler
        self.stream = BatchStream(data, spec.batch_size, spec.seed, scheduler.num_train_timesteps)
        self.vae_generator = torch.Generator().manual_seed(spec.seed + 1)
        self.losses: list[float] = []

    def step(self) -> float:
        bundle, scheduler = self.bundle, self.scheduler
        batch = self.stream.next()
        with torch.no_grad():
            posterior = bundle.vae.encode(self.pixels[batch.images]).latent_dist
            if self.posterior == "mean":
                latents = posterior.mean.float()
            else:
                latents = posterior.sample(generator=self.vae_generator).float()
            latents = latents * bundle.vae.config.scaling_factor
        noise = batch.noise.to(latents.device)
        timesteps = batch.timesteps.to(latents.device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        hidden = self.text_encoder(self.ids[batch.templates])[0]
        pred = bundle.unet(noisy, timesteps, encoder_hidden_states=hidden).sample
        if scheduler.config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        with torch.no_grad():
            self.weight[self.keep] = self.original[self.keep]
        value = float(loss.detach())
        self.losses.append(value)
        return value

    @property
    def vector(self) -> torch.Tensor:
        return self.weight[self.placeholder_id].detach().clone()

    def run(self, steps: int) -> list[float]:
        for _ in range(steps):
            self.step()
        return self.losses
