"""What a world is: WorldConfig (where its pipeline and metric models are, on which device)
and the tiny world's layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch  # noqa: E402

TINY_CLIP_NAME = "ptibench-tiny-clip"


TINY_LPIPS_RESOLUTION = 64


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class WorldConfig:
    """Everything needed to load a world's models; frozen so it can key the load cache.

    pipeline: a local diffusers pipeline folder (or, for later worlds, a hub id in the local cache).
    clip_arch / clip_pretrained: an open_clip model name and a tag or weights file; clip_config: a
    JSON model config to register first (custom architectures such as the tiny world's).
    lpips_net / lpips_weights: the LPIPS backbone and a state dict for `.net` (None = lpips's own
    pretrained weights); lpips_resolution: images are resized to it before LPIPS (None = as is).
    templates: the default training captions ("{}" = the placeholder) when a concept has none.
    oracle: whether the world's attribute oracle can read its images (appearance, edit_success).
    """

    name: str
    pipeline: str
    kind: str = "sd"
    clip_arch: str = "ViT-B-32"
    clip_pretrained: str | None = "openai"
    clip_config: str | None = None
    lpips_net: str = "alex"
    lpips_weights: str | None = None
    lpips_resolution: int | None = None
    templates: tuple[str, ...] = ("a photo of a {}",)
    oracle: bool = False
    device: str | None = None
    dtype: str = "float32"
    sample_batch: int = 32
    resolution: int | None = None

    def torch_device(self) -> torch.device:
        if self.device:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def files(self) -> list[Path]:
        """The local files whose content defines the world's numbers (for its version)."""
        paths = [Path(self.pipeline)]
        for extra in (self.clip_config, self.clip_pretrained, self.lpips_weights):
            if extra and Path(extra).exists():
                paths.append(Path(extra))
        return paths


def is_tiny_world_folder(folder: str | Path) -> bool:
    """Whether `folder` has the tiny world's layout (its pipeline under pipeline/)."""
    return (Path(folder).expanduser() / "pipeline" / "model_index.json").is_file()


def tiny_world_config(folder: Path, name: str = "tiny-world") -> WorldConfig:
    """The tiny world's layout: pipeline/, clip/<name>.json + open_clip_model.pt, lpips/.

    Its captions have no neutral words ("photo", "image"), so its only template is "a {}":
    an unknown word would feed the text encoder an untrained embedding.
    """
    folder = Path(folder)
    return WorldConfig(
        name=name,
        pipeline=str(folder / "pipeline"),
        clip_arch=TINY_CLIP_NAME,
        clip_pretrained=str(folder / "clip" / "open_clip_model.pt"),
        clip_config=str(folder / "clip" / f"{TINY_CLIP_NAME}.json"),
        lpips_net="alex",
        lpips_weights=str(folder / "lpips" / "alex_backbone.safetensors"),
        lpips_resolution=TINY_LPIPS_RESOLUTION,
        templates=("a {}",),
        oracle=True,
        device="cpu",
    )
