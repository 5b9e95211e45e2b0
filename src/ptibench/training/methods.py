"""Methods: what is trained in each stage, and how. A registry maps names to Method objects.

A method overrides hooks rather than copying training loops: `optimizer` (which optimizer and
settings), `regulariser` (an extra loss term), `lora_config` (the adapter of stage 2), or `train`
itself for a different loop. Third-party methods register through `register_method` (e.g. in a
conftest) or the entry-point group "ptibench.methods" (an entry point yields a Method instance
or class). `version` is part of the cache key: bump it when a change alters the numbers.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import torch

from ptibench.errors import PtibenchError
from ptibench.spec import STAGES
from ptibench.training import finetune, inversion

LORA_RANK = 4
LORA_ALPHA = 4
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
NORMREG_WEIGHT = 1e-2


class Method:
    """Base class. Defaults: Adam without weight decay, no regulariser, rank-4 attention LoRA.

    Adam rather than AdamW with decay: decay on the token pulls it toward zero, not toward its
    initializer, which would bend the distance axis the benchmark plots; a method that wants a
    pull says so explicitly through `regulariser` (see pti-normreg).
    """

    name: str = "method"
    version: str = "1"
    stages: tuple[str, ...] = ()
    group_stages: tuple[str, ...] = ("inversion", "finetune")
    """Stages whose cases of one grid may train together in one group run (stage 1 batched,
    stage-2 LoRA stacked: the same numbers to float rounding); a stage left out trains each
    case alone (for a method whose hooks must see one case per process, say)."""

    def optimizer(self, stage: str, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
        """Adam; over several tensors (a LoRA's factors) in one pass of foreach kernels, torch's
        default on CUDA, where on CPU it would update them one by one. The same numbers bit for
        bit as the one-by-one update (tests/test_optimizer_foreach.py), in less time; a single
        tensor (the stage-1 vector) keeps the plain path, which costs less per step."""
        return torch.optim.Adam(
            params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, foreach=len(params) > 1
        )

    def regulariser(
        self, stage: str, *, vector: torch.Tensor | None = None, initial: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        return None

    def lora_config(self):
        """Rank 4, alpha = rank (scale 1, which is also what load_lora_weights assumes when no
        alpha is stored), on every attention projection of the UNet (self and cross)."""
        from peft import LoraConfig

        return LoraConfig(
            r=LORA_RANK,
            lora_alpha=LORA_ALPHA,
            init_lora_weights="gaussian",
            target_modules=list(LORA_TARGETS),
            lora_dropout=0.0,
        )

    def train(self, stage: str, ctx: Any):
        """Run `stage` and return a TrainOutcome."""

        if stage == "inversion":
            return inversion.train(ctx, self)
        if stage == "finetune":
            return finetune.train(ctx, self, full=False)
        if stage == "finetune-full":
            return finetune.train(ctx, self, full=True)
        raise PtibenchError(f"method {self.name!r} has no stage {stage!r}")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "stages": list(self.stages)}


def joins_group_run(spec, method: Method, stage: str) -> bool:
    """Whether `spec` can train in a group run of `stage`: a case of that stage, without
    in-training checkpoints (eval_every), of a method that keeps the default training loop (its
    optimizer, regulariser and lora_config hooks are honoured; an overridden `train` is not) and
    lets the stage train in groups."""
    return (
        spec.stage == stage
        and spec.eval_every is None
        and getattr(type(method), "train", None) is Method.train
        and stage in method.stages
        and stage in method.group_stages
    )


class PTI(Method):
    """Pivotal tuning: textual inversion, then a LoRA (or the whole UNet) around the pivot."""

    name = "pti"
    version = "1"
    stages = STAGES


class PTINormReg(PTI):
    """Textual inversion with an L2 pull of the embedding toward its initializer:
    loss += NORMREG_WEIGHT * ||e - e0||^2 (the original TI paper's optional regulariser)."""

    name = "pti-normreg"
    version = "1"
    stages = ("inversion",)
    weight = NORMREG_WEIGHT

    def regulariser(self, stage, *, vector=None, initial=None):
        if stage != "inversion" or vector is None or initial is None:
            return None
        return self.weight * (vector - initial).pow(2).sum()


_REGISTRY: dict[str, Method] = {}
_entry_points_loaded = False


def register_method(method: Method | type[Method]) -> Method:
    """Add (or replace) a method under its `name`; returns the instance."""
    instance = method() if isinstance(method, type) else method
    if not isinstance(instance, Method):
        raise PtibenchError(f"{method!r} is not a ptibench Method")
    unknown = [s for s in instance.stages if s not in STAGES]
    if unknown:
        raise PtibenchError(f"method {instance.name!r} declares unknown stage(s) {unknown}")
    _REGISTRY[instance.name] = instance
    return instance


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in entry_points(group="ptibench.methods"):
        try:
            register_method(point.load())
        except Exception as error:  # a broken plugin: one clear line, not a traceback
            raise PtibenchError(
                f"cannot load method entry point {point.name!r}: {error}"
            ) from error


def available_methods() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def get_method(name: str) -> Method:
    _load_entry_points()
    if name not in _REGISTRY:
        raise PtibenchError(f"unknown method {name!r} (available: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]


register_method(PTI)
register_method(PTINormReg)
