"""Model bundles: the text-to-image pipeline and the metric models of a world, loaded once.

A world is described by a WorldConfig (where the pipeline is, which CLIP and LPIPS to measure
with, at what resolution, on which device). The tiny world is the built-in one; other worlds
(Stable Diffusion checkpoints by path or hub id, pretrained open_clip / LPIPS by name) are added
through `register_world` or by building a WorldConfig directly. Loading is cached per process
and keyed by the world's file version, so a pipeline replaced on disk is reloaded.

Nothing here reaches a network: the Hugging Face offline switches are set on import.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from .errors import PtibenchError  # noqa: E402

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


_WORLDS: dict[str, Callable[[], WorldConfig]] = {}


def register_world(name: str, factory: Callable[[], WorldConfig]) -> None:
    """Make `name` usable as CaseSpec.world (e.g. 'sd15' -> a WorldConfig for a checkpoint)."""
    _WORLDS[name] = factory


def _tiny_world() -> WorldConfig:
    from .world.assets import tiny_world_path

    return tiny_world_config(tiny_world_path())


register_world("tiny-world", _tiny_world)


def resolve_world(world: str | WorldConfig) -> WorldConfig:
    """A registered world name, or a folder with the tiny world's layout."""
    if isinstance(world, WorldConfig):
        return world
    if world in _WORLDS:
        return _WORLDS[world]()
    path = Path(world).expanduser()
    if (path / "pipeline" / "model_index.json").is_file():
        return tiny_world_config(path, name=str(path))
    from .world_config import resolve_model_world

    model = resolve_model_world(str(world))
    if model is not None:
        return model
    if (path / "model_index.json").is_file():
        raise PtibenchError(
            f"{path} is a bare diffusers pipeline: give it a WorldConfig (metric models, "
            "templates) through ptibench.backends.register_world"
        )
    if path.is_dir():
        raise PtibenchError(
            f"world folder {path} is not a diffusers pipeline world (no pipeline/model_index.json)"
        )
    if "/" in str(world) or str(world).startswith("."):
        raise PtibenchError(f"world path {path} does not exist")
    known = ", ".join(sorted(_WORLDS))
    raise PtibenchError(
        f"unknown world {world!r}: not one of ({known}) nor a folder with pipeline/model_index.json"
    )


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
        from .pipelines import placeholder_token_ids

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
            return torch.where(mask[..., None], vector.to(output.dtype), output)

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
            return type(self.pipe)(**components, requires_safety_checker=False)


@contextlib.contextmanager
def _quiet():
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


def _load_pipeline(config: WorldConfig):
    from .pipelines import enable_cuda_speedups, pipeline_class, pipeline_kwargs

    path = Path(config.pipeline)
    if not path.exists():
        raise PtibenchError(f"model path {path} does not exist")
    if not (path / "model_index.json").is_file():
        raise PtibenchError(f"model path {path} is not a diffusers pipeline (no model_index.json)")
    try:
        with _quiet():
            pipe = pipeline_class(config.kind).from_pretrained(
                str(path),
                dtype=config.torch_dtype(),
                local_files_only=True,
                **pipeline_kwargs(config.kind),
            )
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PtibenchError(f"cannot load the pipeline at {path}: {first}") from error
    pipe = pipe.to(config.torch_device())
    enable_cuda_speedups(pipe, config)
    return pipe


@functools.lru_cache(maxsize=2)
def _bundle(config: WorldConfig, version: str) -> ModelBundle:
    from .pipelines import bundle_class

    return bundle_class(config.kind)(config, _load_pipeline(config), version)


def load_bundle(world: str | WorldConfig) -> ModelBundle:
    """The world's pipeline bundle, loaded once per process per version of its files."""
    config = resolve_world(world)
    return _bundle(config, world_version(config))


@dataclass
class MetricModels:
    """CLIP and LPIPS, with the preprocessing their inputs need (from [-1, 1] NCHW)."""

    clip: torch.nn.Module
    clip_tokenizer: Callable
    lpips: torch.nn.Module
    clip_size: int
    clip_mean: torch.Tensor
    clip_std: torch.Tensor
    lpips_resolution: int | None
    device: torch.device

    def clip_input(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.to(self.device).float() + 1) / 2
        if x.shape[-1] != self.clip_size or x.shape[-2] != self.clip_size:
            x = F.interpolate(x, size=self.clip_size, mode="bicubic", antialias=True)
        return (x - self.clip_mean) / self.clip_std

    def lpips_input(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device).float()
        if self.lpips_resolution and x.shape[-1] != self.lpips_resolution:
            x = F.interpolate(x, size=self.lpips_resolution, mode="bilinear")
        return x


def _load_clip(config: WorldConfig, device: torch.device):
    import open_clip

    if config.clip_config:
        if not Path(config.clip_config).is_file():
            raise PtibenchError(
                f"CLIP config for world {config.name!r} not found: {config.clip_config}"
            )
        open_clip.add_model_config(config.clip_config)
    pretrained = config.clip_pretrained
    if pretrained and (
        os.sep in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors"))
    ):
        if not Path(pretrained).is_file():
            raise PtibenchError(
                f"CLIP weights for world {config.name!r} not found: {pretrained} "
                "(a world still training writes them last)"
            )
    from .world_config import check_open_clip_weights

    check_open_clip_weights(config.clip_arch, pretrained)
    try:
        model = open_clip.create_model(config.clip_arch, pretrained=pretrained, device=device)
    except (RuntimeError, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PtibenchError(
            f"cannot load CLIP {config.clip_arch!r} ({pretrained}) "
            f"for world {config.name!r}: {first}"
        ) from error
    model.eval().requires_grad_(False)
    return model, open_clip.get_tokenizer(config.clip_arch)


def _load_lpips(config: WorldConfig, device: torch.device):
    import lpips

    weights = config.lpips_weights
    if weights == "random":  # offline tests: random backbone, lpips's shipped linear heads
        metric = lpips.LPIPS(net=config.lpips_net, pnet_rand=True, verbose=False)
    elif weights is None:
        from .world_config import check_lpips_backbone

        check_lpips_backbone(config.lpips_net)
        metric = lpips.LPIPS(net=config.lpips_net, verbose=False)
    else:
        from safetensors.torch import load_file

        if not Path(weights).is_file():
            raise PtibenchError(
                f"LPIPS weights for world {config.name!r} not found: {weights} "
                "(a world still training writes them last)"
            )
        metric = lpips.LPIPS(
            net=config.lpips_net, lpips=False, pretrained=False, pnet_rand=True, verbose=False
        )
        state = {k: v.float() for k, v in load_file(weights).items()}
        metric.net.load_state_dict(state)
    return metric.to(device).eval().requires_grad_(False)


@functools.lru_cache(maxsize=2)
def _metric_models(config: WorldConfig, version: str) -> MetricModels:
    device = config.torch_device()
    with _quiet():
        clip, tokenizer = _load_clip(config, device)
        lpips_model = _load_lpips(config, device)
    image_size = clip.visual.image_size
    size = image_size[0] if isinstance(image_size, tuple | list) else int(image_size)
    cfg = getattr(clip.visual, "preprocess_cfg", {}) or {}
    mean = torch.tensor(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), device=device)
    std = torch.tensor(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)), device=device)
    return MetricModels(
        clip=clip,
        clip_tokenizer=tokenizer,
        lpips=lpips_model,
        clip_size=size,
        clip_mean=mean.view(1, 3, 1, 1),
        clip_std=std.view(1, 3, 1, 1),
        lpips_resolution=config.lpips_resolution,
        device=device,
    )


def load_metric_models(world: str | WorldConfig) -> MetricModels:
    config = resolve_world(world)
    return _metric_models(config, world_version(config))


def write_random_world(folder: Path, seed: int = 0) -> WorldConfig:
    """A tiny-world-shaped world with random weights: for tests and for timing code paths
    without waiting for (or depending on) the trained world. Written once per folder (under a
    lock, so parallel test workers share it)."""
    from .io import file_lock

    folder = Path(folder)
    with file_lock(folder.with_name(folder.name + ".lock")):
        if not (folder / "lpips" / "alex_backbone.safetensors").is_file():
            with _quiet():
                _write_random_world(folder, seed)
    return replace(tiny_world_config(folder), name=str(folder))


def _write_random_world(folder: Path, seed: int) -> None:
    import lpips
    import open_clip
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    from .world import components
    from .world.train import CLIP_CONFIG

    folder = Path(folder)
    torch.manual_seed(seed)
    pipe = StableDiffusionPipeline(
        vae=components.build_vae(),
        text_encoder=components.build_text_encoder(),
        tokenizer=components.build_tokenizer(folder / "tokenizer-src"),
        unet=components.build_unet(),
        scheduler=components.build_sample_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder / "pipeline", safe_serialization=True)
    shutil.rmtree(folder / "tokenizer-src", ignore_errors=True)
    clip_dir = folder / "clip"
    clip_dir.mkdir(parents=True, exist_ok=True)
    (clip_dir / f"{TINY_CLIP_NAME}.json").write_text(json.dumps(CLIP_CONFIG))
    open_clip.add_model_config(clip_dir / f"{TINY_CLIP_NAME}.json")
    clip = open_clip.create_model(TINY_CLIP_NAME)
    torch.save({"state_dict": clip.state_dict()}, clip_dir / "open_clip_model.pt")
    metric = lpips.LPIPS(net="alex", lpips=False, pretrained=False, pnet_rand=True, verbose=False)
    (folder / "lpips").mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in metric.net.state_dict().items()},
        str(folder / "lpips" / "alex_backbone.safetensors"),
    )
