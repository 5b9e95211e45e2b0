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
- then every row except the placeholder's is restored from the original matrix;
- the data pipeline of its TextualInversionDataset, per sample: the image file opened, resized
  (bicubic), passed through the flip transform and scaled to [-1, 1]; the caption tokenised with
  the placeholder added to (a copy of) the tokenizer; then collated. `flip_p` is 0 here, as
  ptibench trains without flips: this world's images carry their position (see
  ptibench.training.inversion). The construction checks that these token ids are exactly, and
  these pixels to float32 rounding, the ones ptibench trains on.

Each step's time is split into phases (`phase_seconds`) so the perf suite can say how much of
the reference's step is work ptibench does not do at all.

Differences that are the reference's own and kept on purpose: weight decay 1e-2 (ptibench's
default method uses Adam without decay: AdamW shrinks the placeholder row by lr*1e-2 per step)
and the VAE posterior *sample* (ptibench encodes the posterior mean once). Neither changes the
objective's expectation much; both are visible in the final losses printed side by side.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import default_collate
from torchvision import transforms

from ptibench.training.loop import BatchStream, TrainingData

WEIGHT_DECAY = 1e-2


class ReferenceDataset:
    """The per-sample work of the reference's TextualInversionDataset, on ptibench's indices."""

    def __init__(self, files, prompts, tokenizer, size: int):
        self.files = list(files)
        self.prompts = list(prompts)
        self.tokenizer = tokenizer
        self.size = size
        self.flip = transforms.RandomHorizontalFlip(p=0.0)

    def item(self, image_index: int, prompt_index: int) -> dict[str, torch.Tensor]:
        image = Image.open(self.files[image_index])
        if image.mode != "RGB":
            image = image.convert("RGB")
        image = Image.fromarray(np.array(image).astype(np.uint8))
        image = image.resize((self.size, self.size), resample=Image.Resampling.BICUBIC)
        image = self.flip(image)
        array = (np.array(image).astype(np.uint8) / 127.5 - 1.0).astype(np.float32)
        ids = self.tokenizer(
            self.prompts[prompt_index],
            padding="max_length",
            truncation=True,
            max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        ).input_ids[0]
        return {"pixel_values": torch.from_numpy(array).permute(2, 0, 1), "input_ids": ids}

    def collate(self, images: torch.Tensor, prompts: torch.Tensor) -> dict[str, torch.Tensor]:
        items = [self.item(int(i), int(t)) for i, t in zip(images, prompts, strict=True)]
        return default_collate(items)


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
        ids = torch.where(data.mask, self.placeholder_id, data.ids)
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.add_tokens([concept.placeholder])
        self.dataset = ReferenceDataset(
            [image.file for image in concept.images], data.prompts, tokenizer, bundle.resolution
        )
        for index in range(len(data.prompts)):
            if not torch.equal(self.dataset.item(0, index)["input_ids"], ids[index].cpu()):
                raise AssertionError(f"reference tokenises {data.prompts[index]!r} differently")
        expected = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        for index in range(len(pixels)):
            # equal up to float32 rounding: the reference scales in float64, then casts
            read = self.dataset.item(index, 0)["pixel_values"]
            if not torch.allclose(read, expected[index], rtol=0, atol=1e-6):
                raise AssertionError(f"reference reads {concept.images[index].file} differently")
        scheduler = bundle.train_scheduler
        self.scheduler = scheduler
        self.stream = BatchStream(
            data, spec.batch_size, spec.seed, scheduler.config.num_train_timesteps
        )
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _: 1.0)
        self.vae_generator = torch.Generator().manual_seed(spec.seed + 1)
        self.losses: list[float] = []
        self.phase_seconds: dict[str, float] = defaultdict(float)

    def step(self) -> float:
        bundle, scheduler, clock = self.bundle, self.scheduler, time.perf_counter()
        batch = self.stream.next()
        loaded = self.dataset.collate(batch.images, batch.templates)
        clock = self._lap("data", clock)
        with torch.no_grad():
            pixels = loaded["pixel_values"].to(bundle.device, bundle.dtype)
            posterior = bundle.vae.encode(pixels).latent_dist
            if self.posterior == "mean":
                latents = posterior.mean.float()
            else:
                latents = posterior.sample(generator=self.vae_generator).float()
            latents = latents * bundle.vae.config.scaling_factor
        clock = self._lap("vae_encode", clock)
        noise = batch.noise.to(latents.device)
        timesteps = batch.timesteps.to(latents.device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        hidden = self.text_encoder(loaded["input_ids"].to(bundle.device))[0]
        pred = bundle.unet(noisy, timesteps, encoder_hidden_states=hidden).sample
        if scheduler.config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        loss = F.mse_loss(pred.float(), target.float(), reduction="mean")
        loss.backward()
        clock = self._lap("forward_backward", clock)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad()
        clock = self._lap("optimizer", clock)
        with torch.no_grad():
            self.weight[self.keep] = self.original[self.keep]
        self._lap("restore_rows", clock)
        value = float(loss.detach())
        self.losses.append(value)
        return value

    def _lap(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.phase_seconds[phase] += now - since
        return now

    @property
    def vector(self) -> torch.Tensor:
        return self.weight[self.placeholder_id].detach().clone()

    def run(self, steps: int) -> list[float]:
        for _ in range(steps):
            self.step()
        return self.losses
