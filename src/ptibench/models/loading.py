"""Loading a world's pipeline into a ModelBundle, once per process per version of its files.

A world's version hashes its settings and files (what changes the numbers, not where the files
are), so a pipeline replaced on disk is reloaded and the cache keys change with it. Everything
loads from local files; `offline()` sets the Hugging Face offline switches before any hub
library is used.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path

import torch  # noqa: E402

from ptibench.case_options import deterministic
from ptibench.errors import PtibenchError
from ptibench.models.bundle import ModelBundle
from ptibench.models.config import WorldConfig
from ptibench.models.kinds import pipeline_class, pipeline_kwargs
from ptibench.models.registry import resolve_world
from ptibench.models.sdxl import SDXLBundle
from ptibench.world.packaging import own_components


@functools.lru_cache(maxsize=64)
def _hash_file(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_signature(path: Path) -> list[tuple[str, str]]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out = []
    for item in files:
        stat = item.stat()
        if stat.st_size > 256 << 20:
            content = f"{stat.st_size}:{stat.st_mtime_ns}"
        else:
            content = _hash_file(str(item), stat.st_size, stat.st_mtime_ns)
        out.append((item.relative_to(path).as_posix() if path.is_dir() else item.name, content))
    return out


def _version_once(config: WorldConfig) -> str:
    files = {"pipeline", "clip_pretrained", "clip_config", "lpips_weights"}
    settings = {
        k: v
        for k, v in asdict(config).items()
        if k != "name" and not (k in files and v and Path(v).exists())
    }
    settings["device"] = config.torch_device().type
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in config.files():
        if path.exists():
            for name, content in _file_signature(path):
                digest.update(f"{path.name}/{name}={content};".encode())
    return digest.hexdigest()[:8]


def offline() -> None:
    """Nothing here reaches a network: the Hugging Face offline switches, set before any hub
    library reads them (a value the user set is kept)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(name, "1")


def world_version(config: WorldConfig) -> str:
    """8 hex digits over the world's settings and files (content hashes; size+mtime for files
    over 256 MB): what changes the numbers, not where the files are.

    Retried when a file vanishes mid-walk: a world being trained replaces its pipeline folder
    atomically, and a walk can straddle the swap."""
    for _ in range(2):
        try:
            return _version_once(config)
        except FileNotFoundError:
            continue
    return _version_once(config)


@contextlib.contextmanager
def quiet_loading():
    """No loading bars or library deprecation chatter: a benchmark's output is its results."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()


def enable_cuda_speedups(pipe, config: WorldConfig) -> None:
    """TF32 matmuls/convolutions, SDPA attention, and (opt-in) torch.compile of the UNet;
    cuDNN's per-process algorithm search unless runs must be deterministic."""
    if config.torch_device().type != "cuda":
        return
    from diffusers.models.attention_processor import AttnProcessor2_0

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if deterministic():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    pipe.vae.set_attn_processor(AttnProcessor2_0())
    if getattr(config, "compile", False):
        pipe.unet.compile(mode="max-autotune-no-cudagraphs", dynamic=False)


def bundle_class(kind: str) -> type[ModelBundle]:
    return SDXLBundle if kind == "sdxl" else ModelBundle


def _load_pipeline(config: WorldConfig):
    offline()

    path = Path(config.pipeline)
    if not path.exists():
        raise PtibenchError(f"model path {path} does not exist")
    if not (path / "model_index.json").is_file():
        raise PtibenchError(f"model path {path} is not a diffusers pipeline (no model_index.json)")
    try:
        with quiet_loading():
            pipe = pipeline_class(config.kind).from_pretrained(
                str(path),
                dtype=config.torch_dtype(),
                local_files_only=True,
                **pipeline_kwargs(config.kind),
                **own_components(path, config.torch_dtype()),
            )
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PtibenchError(f"cannot load the pipeline at {path}: {first}") from error
    pipe = pipe.to(config.torch_device())
    enable_cuda_speedups(pipe, config)
    return pipe


@functools.lru_cache(maxsize=2)
def _bundle(config: WorldConfig, version: str) -> ModelBundle:

    return bundle_class(config.kind)(config, _load_pipeline(config), version)


def load_bundle(world: str | WorldConfig) -> ModelBundle:
    """The world's pipeline bundle, loaded once per process per version of its files."""
    config = resolve_world(world)
    return _bundle(config, world_version(config))
