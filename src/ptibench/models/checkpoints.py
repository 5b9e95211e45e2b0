"""Worlds of real models: a Stable Diffusion checkpoint (hub id or local diffusers folder) with
pretrained metric models, given as `--world`/`--model` or as a world config file (JSON/TOML).

Everything loads from local files only: a hub id is looked up in the Hugging Face cache
(`local_files_only=True`), open_clip weights in the Hugging Face cache (or a local file), the
LPIPS backbone in torchvision's cache. A missing file is one PtibenchError line saying which
file, for which id, and where it was looked for; nothing is downloaded.

A world config file (keys as ModelWorldConfig's fields; relative paths from the file):

    pipeline = "runwayml/stable-diffusion-v1-5"   # hub id or diffusers folder
    kind = "auto"                                 # sd | sdxl | auto (from model_index.json)
    resolution = 512                              # default: the UNet's sample size x 8
    clip_arch = "ViT-L-14"                        # open_clip architecture
    clip_pretrained = "openai"                    # a pretrained tag, or a .pt/.safetensors file
    lpips_net = "alex"                            # alex | vgg | squeeze (torchvision backbone)
    device = "cuda"                               # default: cuda if available, else cpu
    dtype = "bfloat16"                            # default: bfloat16 on cuda, float32 on cpu
    compile = false                               # torch.compile the UNet (training.compiling)
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from ptibench.errors import PtibenchError
from ptibench.models.config import DTYPES, WorldConfig
from ptibench.models.kinds import detect_kind

PHOTO_TEMPLATES = (
    "a photo of a {}",
    "a rendering of a {}",
    "a cropped photo of the {}",
    "the photo of a {}",
    "a photo of a clean {}",
    "a close-up photo of a {}",
    "a bright photo of the {}",
    "a good photo of a {}",
)
"""Training captions for real photos (the textual-inversion paper's object templates)."""


LPIPS_NETS = ("alex", "vgg", "squeeze")


HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


CONFIG_SUFFIXES = (".json", ".toml")


@dataclass(frozen=True)
class ModelWorldConfig(WorldConfig):
    """A WorldConfig for real checkpoints. `source` is what the user gave (hub id or folder);
    `pipeline` is the local folder it resolved to. Extra fields live here, not in WorldConfig,
    so the tiny world's version (a hash of its settings) is unchanged."""

    source: str = ""
    compile: bool = False


def hub_cache_dir() -> Path:
    from huggingface_hub.constants import HF_HUB_CACHE

    return Path(HF_HUB_CACHE)


def snapshot_folder(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot folder of a hub id, from the Hugging Face cache only."""
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo_id, revision=revision, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - LocalEntryNotFoundError and friends
        raise PtibenchError(
            f"model {repo_id!r} is neither a local folder nor in the local Hugging Face cache "
            f"(looked in {hub_cache_dir()}; offline: set HF_HOME/HF_HUB_CACHE or pass a folder)"
        ) from error
    return Path(path)


WEIGHT_SUFFIXES = (".safetensors", ".bin")


def check_pipeline_folder(folder: Path, source: str) -> None:
    """Every component model_index.json names must have its config (and, for models, weights)."""
    index = folder / "model_index.json"
    try:
        data = json.loads(index.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PtibenchError(f"cannot read {index} (model {source}): {error}") from error
    required = ["unet", "vae", "text_encoder", "tokenizer", "scheduler"]
    if "XL" in str(data.get("_class_name", "")):
        required += ["text_encoder_2", "tokenizer_2"]
    missing = [n for n in required if not isinstance(data.get(n), list) or data[n][0] is None]
    if missing:
        raise PtibenchError(
            f"model folder {folder} is a bare diffusers pipeline: model_index.json names no "
            f"{', '.join(missing)} (model {source})"
        )
    for name, value in data.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        if name in ("safety_checker", "feature_extractor", "image_encoder"):
            continue
        sub = folder / name
        if name.startswith("tokenizer") or name == "scheduler":
            if not sub.is_dir():
                raise PtibenchError(f"model {source}: missing folder {sub}")
            continue
        if not (sub / "config.json").is_file():
            raise PtibenchError(f"model {source}: missing {sub / 'config.json'}")
        weights = [p for p in sub.iterdir() if p.name.endswith(WEIGHT_SUFFIXES)]
        if not weights:
            raise PtibenchError(
                f"model {source}: no weights for {name} (looked for *.safetensors/*.bin in {sub})"
            )
        for weight in weights:
            if not weight.exists():  # a dangling symlink of a half-downloaded cache
                raise PtibenchError(
                    f"model {source}: weight file {weight} is missing (broken link)"
                )


def resolve_pipeline(source: str) -> Path:
    """A local diffusers folder for a folder path or a hub id (from the local cache)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise PtibenchError(
                f"model folder {path} is not a diffusers pipeline (no model_index.json)"
            )
        folder = path.resolve()
    elif HUB_ID.match(source) and not source.startswith("."):
        folder = snapshot_folder(source)
        if not (folder / "model_index.json").is_file():
            raise PtibenchError(
                f"model {source!r} in the Hugging Face cache ({folder}) has no model_index.json"
            )
    else:
        raise PtibenchError(f"model {source!r} is neither a diffusers folder nor a hub id")
    check_pipeline_folder(folder, source)
    return folder


def default_device(device: str | None) -> str:
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PtibenchError(f"device {device!r} asked for but CUDA is not available here")
    return device


def default_dtype(dtype: str | None, device: str) -> str:
    if dtype in (None, "", "auto"):
        if device.startswith("cuda"):
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "float32"
    if dtype not in DTYPES:
        raise PtibenchError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return dtype


def model_world(source: str, **settings) -> ModelWorldConfig:
    """A world for a Stable Diffusion checkpoint (hub id or folder) and metric models."""

    folder = resolve_pipeline(source)
    kind = settings.pop("kind", "auto") or "auto"
    if kind == "auto":
        kind = detect_kind(folder)
    elif kind not in ("sd", "sdxl"):
        raise PtibenchError(f"kind {kind!r} is not one of sd, sdxl, auto")
    device = default_device(settings.pop("device", None))
    dtype = default_dtype(settings.pop("dtype", None), device)
    net = settings.get("lpips_net", "alex")
    if net not in LPIPS_NETS:
        raise PtibenchError(f"lpips_net {net!r} is not one of {', '.join(LPIPS_NETS)}")
    if "templates" in settings:
        settings["templates"] = tuple(settings["templates"])
    settings.setdefault("templates", PHOTO_TEMPLATES)
    settings.setdefault("sample_batch", 8)
    settings.setdefault("name", source)
    return ModelWorldConfig(
        pipeline=str(folder),
        source=source,
        kind=kind,
        device=device,
        dtype=dtype,
        oracle=False,
        **settings,
    )


_FIELDS = {f.name for f in fields(ModelWorldConfig)} - {"pipeline", "source", "oracle"}


_PATH_FIELDS = ("clip_pretrained", "clip_config", "lpips_weights")


def read_world_file(path: Path) -> ModelWorldConfig:
    """A world config file (JSON or TOML; see the module docstring)."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise PtibenchError(f"cannot read world config {path}: {error}") from error
    if not isinstance(data, dict):
        raise PtibenchError(f"world config {path}: expected a table/object")
    if "pipeline" not in data or not isinstance(data["pipeline"], str):
        raise PtibenchError(f"world config {path}: missing 'pipeline' (hub id or folder)")
    unknown = sorted(set(data) - _FIELDS - {"pipeline"})
    if unknown:
        raise PtibenchError(
            f"world config {path}: unknown key(s) {', '.join(unknown)} "
            f"(known: pipeline, {', '.join(sorted(_FIELDS))})"
        )
    base = path.parent

    def local(value: str) -> str:
        candidate = Path(value).expanduser()
        if not candidate.is_absolute() and (
            value.startswith(".")
            or os.sep in value
            or value.endswith((".pt", ".bin", ".safetensors", ".json"))
        ):
            candidate = base / candidate
        return str(candidate) if candidate.exists() else value

    settings = {k: v for k, v in data.items() if k != "pipeline"}
    for key in _PATH_FIELDS:
        if isinstance(settings.get(key), str):
            settings[key] = local(settings[key])
    source = data["pipeline"]
    relative = base / source
    if not Path(source).expanduser().is_absolute() and relative.is_dir():
        source = str(relative)
    settings.setdefault("name", str(path))
    return model_world(source, **settings)


def resolve_model_world(text: str) -> WorldConfig | None:
    """A world from `--world`/`--model` text that is not a registered world nor a tiny-world
    folder: a config file, a diffusers folder, or a hub id. None when it is none of these."""
    path = Path(text).expanduser()
    if path.suffix in CONFIG_SUFFIXES and path.is_file():
        return read_world_file(path)
    if (path / "model_index.json").is_file():
        return model_world(text)
    if not path.exists() and HUB_ID.match(text) and not text.startswith("."):
        return model_world(text)
    return None


TORCHVISION_WEIGHTS = {
    "alex": ("AlexNet_Weights", "IMAGENET1K_V1"),
    "vgg": ("VGG16_Weights", "IMAGENET1K_V1"),
    "squeeze": ("SqueezeNet1_1_Weights", "IMAGENET1K_V1"),
}


def check_lpips_backbone(net: str) -> None:
    """lpips's pretrained backbones come from torchvision's cache ($TORCH_HOME/hub/checkpoints)."""
    import torchvision

    enum_name, member = TORCHVISION_WEIGHTS[net]
    url = getattr(getattr(torchvision.models, enum_name), member).url
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not target.is_file():
        raise PtibenchError(
            f"LPIPS {net} backbone weights not found: {target} "
            f"(offline; copy {os.path.basename(url)} there, or set TORCH_HOME)"
        )


def check_open_clip_weights(arch: str, pretrained: str | None) -> None:
    """A pretrained tag must have its weights in the Hugging Face cache (or open_clip's own)."""
    if (
        not pretrained
        or os.sep in pretrained
        or pretrained.endswith((".pt", ".bin", ".safetensors"))
    ):
        return
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not cfg:
        tags = ", ".join(t for a, t in open_clip.list_pretrained() if a == arch) or "none"
        raise PtibenchError(
            f"open_clip {arch!r} has no pretrained tag {pretrained!r} (known: {tags})"
        )
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = (
            os.path.split(hub.rstrip("/"))
            if hub.endswith((".bin", ".pt", ".safetensors"))
            else (hub.rstrip("/"), "")
        )
        names = (
            [filename]
            if filename
            else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        )
        for name in names:
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str) and Path(found).is_file():
                return
        raise PtibenchError(
            f"open_clip {arch} ({pretrained}) weights not found: {repo}/{'|'.join(names)} "
            f"is not in the Hugging Face cache ({hub_cache_dir()})"
        )
    url = cfg.get("url", "")
    target = Path("~/.cache/clip").expanduser() / os.path.basename(url)
    if not target.is_file():
        raise PtibenchError(f"open_clip {arch} ({pretrained}) weights not found: {target}")
