"""Stage 2 (LoRA) for K cases in one run: K adapters over one frozen UNet, one forward and one
backward per step.

The K cases differ only in their lr and training seed. Each starts from the adapter its own
`finetune.train` run starts from: a per-case copy of the UNet gets a peft adapter after
`torch.manual_seed(spec.seed)`, exactly as there, so peft's own init rule and RNG draws decide the
weights. Those copies are not run; their adapter weights become slices of one stacked tensor per
adapted layer (A: K x r x in, B: K x out x r), held by a StackedLoraLinear that replaces the
layer in one shared-weight copy of the frozen UNet. A step stacks the K sub-batches (each drawn
by the case's own BatchStream) into one batch of K*B samples; the stacked layer adds adapter k's
update to group k only, and the loss is the SUM of the K sub-batch means, so the gradient
reaching adapter k is the one its own run computes. Nothing else in the UNet mixes samples.

Each case keeps its own optimizer (the method's `optimizer` hook, its lr, its Adam state) over
parameters that are views into the stacked tensors and are the LoRA weights of that case's peft
copy, so an optimizer step updates the stacked layer in place and the peft copy comes out
trained: the existing save_lora / evaluation path reads it unchanged.

A case stops where `finetune.train` would stop it (a non-finite loss before the update, or the
explosion rule every 25 steps and at the last) and leaves the batch; the others continue.
Results agree with K sequential runs to float rounding (batched matmuls, a per-sample loss
mean), not bitwise. The stacked UNet runs eager: the stacked layer has not been checked under
torch.compile.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn
from torch.nn import functional as F

from ptibench.models.diffusion import diffusion_loss
from ptibench.training.finetune import lora_distance, pivot_distance
from ptibench.training.loop import (
    EXPLOSION_FACTOR,
    BatchStream,
    StageContext,
    TrainingData,
    TrainOutcome,
    is_finite,
    progress_bar,
    sound_total,
)
from ptibench.training.methods import joins_group_run

STAGE = "finetune"


class NotStackable(ValueError):
    """The method's adapter is not one the stacked layer reproduces: its cases train alone."""


def stackable(spec, method) -> bool:
    """Whether `spec` can be trained in a stacked run (methods.joins_group_run). Whether its
    adapter is plain shows only on the UNet (NotStackable)."""
    return joins_group_run(spec, method, STAGE)


class StackedLoraLinear(nn.Module):
    """A frozen nn.Linear with K LoRA adapters, in one of two modes.

    Training: the input's leading dimension holds the active adapters' groups in order, and
    group k gets only adapter k's update scale * B_k A_k x. `active` lists the adapters whose
    groups the input holds (None: all K), so a case that has left the batch costs nothing and
    gets no gradient.

    Routed (sampling, `rows` set): sample i gets adapter rows[i]'s update, computed on the
    samples of that adapter as peft's own layer computes it; a batch that is a whole multiple of
    `rows` repeats it (classifier-free guidance stacks the unconditional half first)."""

    def __init__(self, base: nn.Linear, lora_A: torch.Tensor, lora_B: torch.Tensor, scaling):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(lora_A)
        self.lora_B = nn.Parameter(lora_B)
        self.scaling = scaling
        self.active: torch.Tensor | None = None
        self.rows: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rows is not None:
            return self.routed(x)
        result = self.base(x)
        down, up = self.lora_A, self.lora_B
        if self.active is not None:
            down, up = down[self.active], up[self.active]
        groups = down.shape[0]
        if x.shape[0] % groups:
            raise ValueError(f"a batch of {x.shape[0]} does not split into {groups} groups")
        grouped = x.to(down.dtype).reshape(groups, -1, x.shape[-1])
        delta = torch.bmm(torch.bmm(grouped, down.transpose(1, 2)), up.transpose(1, 2))
        return (result + delta.reshape(result.shape) * self.scaling).to(result.dtype)

    def routed(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        rows = self.rows
        if x.shape[0] % len(rows):
            raise ValueError(f"a batch of {x.shape[0]} does not repeat {len(rows)} routed rows")
        rows = rows.repeat(x.shape[0] // len(rows))
        out = result.clone()
        for k in torch.unique(rows).tolist():
            picked = torch.nonzero(rows == k).squeeze(1)
            part = x[picked].to(self.lora_A.dtype)
            update = F.linear(F.linear(part, self.lora_A[k]), self.lora_B[k])
            out[picked] = (result[picked] + update * self.scaling).to(result.dtype)
        return out


def check_stackable(specs) -> None:
    """Stacked cases share everything but lr and seed: the pivot, data, steps, batch size."""
    first = specs[0]
    if first.stage != STAGE:
        raise ValueError(f"train_stacked trains stage {STAGE!r}, not {first.stage!r}")
    if first.eval_every is not None:
        raise ValueError("train_stacked has no in-training checkpoints (eval_every)")
    shape = first.with_(lr=0.0, seed=0).key()
    if any(s.with_(lr=0.0, seed=0).key() != shape for s in specs):
        raise ValueError("train_stacked needs specs that differ only in lr and seed")


def train_stacked(
    bundle, concept, data: TrainingData, specs, method, pivot: torch.Tensor, *, progress=False
) -> list[TrainOutcome]:
    """Train the LoRA of every spec in `specs` (stage 2 around `pivot`, same everything but lr
    and seed) in one stacked run.

    Returns one TrainOutcome per spec, in order, as `finetune.train` would return it. Like
    `finetune.train`, it seeds the global RNG (once per case, for peft's init); callers that
    care fork it."""
    if not specs:
        return []
    check_stackable(specs)
    pivot = pivot.to(bundle.device)
    run = _StackedRun(bundle, data, specs, method, pivot)
    bar = progress_bar(specs[0].steps, f"{STAGE} stack x{len(specs)}", progress)
    for step in bar:
        if not run.active:
            break
        run.step(step)
    bar.close()
    outcomes = run.finish()
    ctx = StageContext(specs[0], concept, bundle, data, pivot=pivot)
    for outcome in outcomes:
        if outcome.status == "ok":
            outcome.metrics = {
                "distance": lora_distance(outcome.unet),
                "pivot_distance": pivot_distance(ctx),
            }
    return outcomes


def adapted_unet(bundle, spec, method):
    """The UNet copy `finetune.train` would train for `spec`, its adapter freshly initialised
    (and cast to float32) the same way, so the stacked run starts where the sequential one does.
    The copy shares the frozen weights with the bundle's UNet and owns only its adapter: K cases
    cost K adapters, not K UNets."""
    unet = shared_weight_copy(bundle.unet)
    torch.manual_seed(spec.seed)
    unet.add_adapter(method.lora_config())
    for p in unet.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return unet


def adapter_weights(unet) -> dict[str, torch.Tensor]:
    """The trained LoRA tensors of a case's UNet copy, by parameter name (what a cache slot keeps
    to rebuild the copy bitwise)."""
    return {n: p.detach().contiguous() for n, p in unet.named_parameters() if ".lora_" in n}


def restore_adapted_unet(bundle, spec, method, weights: dict[str, torch.Tensor]):
    """The UNet copy `train_stacked` trained for `spec`, rebuilt from its `adapter_weights`."""
    unet = adapted_unet(bundle, spec, method)
    own = adapter_weights(unet)
    if set(own) != set(weights):
        raise ValueError("the stored adapter does not match the method's lora_config")
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if name in weights:
                param.copy_(weights[name])
    unet.requires_grad_(False)
    return unet


def plain_lora_layers(unet) -> list[tuple[str, nn.Module]]:
    """(name, peft LoRA layer) of every adapted module, checked to be what the stacked layer
    reproduces: one adapter on an nn.Linear, no dropout, bias, DoRA or fan-in-fan-out."""
    from peft.tuners.lora import Linear, LoraLayer

    layers = [(n, m) for n, m in unet.named_modules() if isinstance(m, LoraLayer)]
    for name, layer in layers:
        plain = (
            isinstance(layer, Linear)
            and isinstance(layer.get_base_layer(), nn.Linear)
            and len(layer.lora_A) == 1
            and all(isinstance(d, nn.Identity) for d in layer.lora_dropout.values())
            and not any(layer.lora_bias.values())
            and not layer.lora_variant
            and not layer.fan_in_fan_out
        )
        if not plain:
            raise NotStackable(
                f"train_stacked supports plain LoRA on nn.Linear only, not at {name}"
            )
    if not layers:
        raise NotStackable("the method's lora_config adapts no layer of this UNet")
    return layers


def stack_adapters(bundle, unets):
    """A shared-weight copy of the bundle's UNet whose adapted layers are StackedLoraLinear,
    holding the K peft copies' adapter weights (copied, in order); with, per stacked layer, the
    K copies' peft layers and their adapter's name."""
    per_case = [plain_lora_layers(u) for u in unets]
    unet = shared_weight_copy(bundle.unet)
    stacked = []
    for index, (name, first) in enumerate(per_case[0]):
        adapter = next(iter(first.lora_A))
        cases = [layers[index][1] for layers in per_case]
        if any(c.scaling[adapter] != first.scaling[adapter] for c in cases):
            raise NotStackable(f"the adapters at {name} differ in their scaling")
        layer = StackedLoraLinear(
            unet.get_submodule(name),
            torch.stack([c.lora_A[adapter].weight.detach() for c in cases]),
            torch.stack([c.lora_B[adapter].weight.detach() for c in cases]),
            first.scaling[adapter],
        )
        parent, _, child = name.rpartition(".")
        unet.get_submodule(parent).register_module(child, layer)
        stacked.append((layer, cases, adapter))
    return unet, stacked


class AdapterRouter:
    """K cases' trained LoRA adapters over one shared-weight UNet, for sampling them in shared
    batches: `route(labels)` before a pipeline call gives sample i adapter labels[i]."""

    def __init__(self, bundle, unets):
        self.unet, stacked = stack_adapters(bundle, unets)
        self.unet.requires_grad_(False)
        self.layers = [layer for layer, _, _ in stacked]

    def route(self, labels) -> None:
        rows = torch.as_tensor(list(labels), device=self.layers[0].lora_A.device)
        for layer in self.layers:
            layer.rows = rows


def shared_weight_copy(unet):
    """A copy of `unet`'s modules that shares its (frozen) parameters and buffers."""
    memo = {id(t): t for t in itertools.chain(unet.parameters(), unet.buffers())}
    return copy.deepcopy(unet, memo)


class _StackedRun:
    """The per-case peft copies, the stacked UNet, the per-case optimizers, streams and
    outcomes, and the cases still active."""

    def __init__(self, bundle, data: TrainingData, specs, method, pivot: torch.Tensor):
        self.bundle, self.data, self.method, self.specs = bundle, data, method, specs
        self.size = specs[0].batch_size
        with torch.no_grad():
            self.hidden_all = bundle.encode_ids(data.ids, data.mask, pivot)
        self.unets = [adapted_unet(bundle, s, method) for s in specs]
        self.unet, stacked = stack_adapters(bundle, self.unets)
        self.layers: list[StackedLoraLinear] = []
        self.views: list[list[tuple[nn.Parameter, nn.Parameter]]] = [[] for _ in specs]
        for layer, cases, adapter in stacked:
            for k, case in enumerate(cases):
                down = nn.Parameter(layer.lora_A.data[k])
                up = nn.Parameter(layer.lora_B.data[k])
                case.lora_A[adapter].weight, case.lora_B[adapter].weight = down, up
                self.views[k].append((down, up))
            self.layers.append(layer)
        self.params = [[p for p in u.parameters() if p.requires_grad] for u in self.unets]
        for params, views in zip(self.params, self.views, strict=True):
            if {id(p) for p in params} != {id(p) for pair in views for p in pair}:
                raise NotStackable("the adapter trains parameters the stacked layers do not hold")
        self.optimizers = [
            method.optimizer(STAGE, params, s.lr)
            for params, s in zip(self.params, specs, strict=True)
        ]
        timesteps = bundle.train_scheduler.config.num_train_timesteps
        self.streams = [BatchStream(data, self.size, s.seed, timesteps) for s in specs]
        self.scale = max(sum(float(p.detach().norm()) for p in bundle.unet.parameters()), 1e-6)
        self.outcomes = [
            TrainOutcome(status="ok", vector=pivot, initial=pivot, losses=[], unet=u, lora=True)
            for u in self.unets
        ]
        self.active = list(range(len(specs)))

    def losses(self) -> torch.Tensor:
        """Each active case's own mean loss on its own batch, from one stacked forward pass."""
        index = torch.tensor(self.active, device=self.layers[0].lora_A.device)
        whole = len(self.active) == len(self.specs)
        for layer in self.layers:
            layer.active = None if whole else index
        latents, noise, timesteps, hidden = [], [], [], []
        for k in self.active:
            batch = self.streams[k].next()
            latents.append(self.data.latents[batch.images])
            noise.append(batch.noise)
            timesteps.append(batch.timesteps)
            hidden.append(self.hidden_all[batch.templates.to(self.hidden_all.device)])
        x0 = torch.cat(latents)
        per_sample = diffusion_loss(
            self.bundle,
            self.unet,
            x0,
            torch.cat(noise).to(x0.device),
            torch.cat(timesteps),
            torch.cat(hidden),
            reduction="none",
        )
        return per_sample.view(len(self.active), self.size).mean(1)

    def step(self, step: int) -> None:
        """One step of every active case; a case whose loss or weights are not sound stops."""
        losses = self.losses()
        terms, live = [], []
        for row, k in enumerate(self.active):
            sound = sound_total(losses[row], self.method.regulariser(STAGE), self.outcomes[k], step)
            if sound is not None:
                terms.append(sound[0])
                live.append((k, sound[1]))
        if terms:
            for layer in self.layers:
                layer.lora_A.grad = layer.lora_B.grad = None
            torch.stack(terms).sum().backward()
        still = []
        for k, value in live:
            self.optimizers[k].zero_grad(set_to_none=True)
            self.hand_gradients(k)
            self.optimizers[k].step()
            self.outcomes[k].losses.append(value)
            if step % 25 == 0 or step == self.specs[k].steps:
                with torch.no_grad():
                    moved = sum(float(p.detach().norm()) for p in self.params[k])
                if not is_finite(moved) or moved > EXPLOSION_FACTOR * self.scale:
                    self.outcomes[k].mark_diverged(step)
                    continue
            still.append(k)
        self.active = still

    def hand_gradients(self, k: int) -> None:
        """Case k's slices of the stacked gradients, onto its optimizer's (view) parameters."""
        for layer, (down, up) in zip(self.layers, self.views[k], strict=True):
            down.grad, up.grad = layer.lora_A.grad[k], layer.lora_B.grad[k]

    def finish(self) -> list[TrainOutcome]:
        """The outcomes, each peft copy's weights cut loose from the stacked tensors."""
        for unet in self.unets:
            for p in unet.parameters():
                if p.requires_grad:
                    p.grad = None
                    p.data = p.data.clone()
            unet.requires_grad_(False)
        return self.outcomes
