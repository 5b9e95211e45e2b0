"""Quality checks of the shipped world: does the pipeline follow prompts, does the CLIP see the
attributes, does the LPIPS backbone grow with perturbation? Used by the tests and the manifest.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ptibench.world import oracle, packaging
from ptibench.world.components import CLIP_MODEL_NAME
from ptibench.world.dataset import render_set, to_model_range
from ptibench.world.render import (
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Attributes,
    describe,
    is_held_out,
    render,
    sample_attributes,
)
from ptibench.world.train_clip import clip_normalise
from ptibench.world.train_lpips import LPIPS_RESOLUTION

SAMPLE_STEPS = 20
GUIDANCE = 4.0


@dataclass(frozen=True)
class PromptFollowing:
    """Share of samples in which the oracle reads back what the prompt asked."""

    prompts: int
    background: float
    colour: float
    position: float
    size: float
    shape: float


def load_pipeline(world: Path):
    pipe = packaging.load_pipeline(world / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def held_out_combinations() -> list[Attributes]:
    """Every full combination never rendered for training (object and background differ)."""
    every = itertools.product(SHAPES, COLOURS, COLOURS, POSITIONS, SIZES)
    combos = [Attributes(*values) for values in every]
    return [a for a in combos if a.colour != a.background and is_held_out(a)]


def held_out_prompts(n: int, seed: int = 123) -> list[Attributes]:
    """n distinct full combinations never rendered for training."""
    available = len(held_out_combinations())
    if not 0 <= n <= available:
        raise ValueError(f"{n} held-out combinations asked for; the world has {available}")
    rng = np.random.default_rng(seed)
    seen: dict[Attributes, None] = {}
    while len(seen) < n:
        seen[sample_attributes(rng, held_out=True)] = None
    return list(seen)


def full_prompt(attrs: Attributes) -> str:
    """The caption that names every attribute (what prompt following is measured on)."""
    return describe(
        attrs.shape,
        size=attrs.size,
        colour=attrs.colour,
        background=attrs.background,
        position=attrs.position,
    )


HELD_OUT_PHRASINGS = (
    "{background} background, {size} {colour} {shape} on the {position}",
    "on the {position} side: a {size} {colour} {shape} against {background}",
    "there is a {size} {colour} {shape} to the {position} of a {background} picture",
    "a {background} background with a {size} {colour} {shape} in the {position}",
    "{position}: {colour} {shape}, {size}, on {background}",
    "{size} {shape} in {colour}, {position} side, {background} backdrop",
)
"""Phrasings and word orders no training caption uses (training captions are `render.caption`:
"a [size] [colour] shape [on a B background] [at the P]", the last two in either order): prompt
following under rewording, as a user words a prompt. Never used to train the world."""

CONFIRMATION_PHRASINGS = (
    "{size} {colour} {shape}, {position} area, {background} surround",
    "a {background} canvas showing a {size} {colour} {shape} toward {position}",
    "{colour}-tinted {shape} of {size} size, {position} part, {background} field",
    "the {position} region holds a {size} {shape} of colour {colour}; {background} elsewhere",
    "{background} scene. {size} {colour} {shape}. {position}.",
    "{shape}, {colour} and {size}, found {position}, {background} ground",
)
"""A second held-out set, for worlds whose training was chosen by reading HELD_OUT_PHRASINGS
(the `language` phase's layout map was): a check on phrasings no choice was made on."""

_COLOUR_WORD = "(" + "|".join(COLOURS) + ")"
HELD_OUT_CONSTRUCTIONS = (
    r"\bon the\b",
    r"\bside\b",
    r"\bto the \w+ of\b",
    r"\bin the\b",
    r":",
    r"\bagainst\b",
    r"\bbackdrop\b",
    r"\bpicture\b",
    r"\bthere is\b",
    rf"\bin {_COLOUR_WORD}\b",
    rf"\bon {_COLOUR_WORD}\b",
    rf"^{_COLOUR_WORD} background\b",
    rf"^a {_COLOUR_WORD} background with\b",
    r"\b(area|surround|canvas|showing|toward|tinted|size|part|field|region|holds|elsewhere)\b",
    r"\b(scene|found|ground)\b",
    r"\bof colour\b",
    r"\.",
)
"""Regular expressions for the constructions and words of both held-out sets that a training
caption must not use."""

THIRD_PHRASINGS = (
    "{background} everywhere but for a {size} {colour} {shape}, {position}",
    "a {size} {shape}, {colour}, sits {position} over {background} paper",
    "with {position} placement, a {size} {colour} {shape} rests upon {background}",
    "{background} surface; {colour} {shape}; {size}; {position}",
    "a {colour} {shape} ({size}) drawn {position} on a plain {background} page",
    "imagine {background}, then a {size} {colour} {shape} at {position}",
)
"""A third held-out set, written after the first two had been read and before the caption
variants that were chosen from them were trained (docs/results/2026-12-02-caption-language.md)."""

THIRD_CONSTRUCTIONS = (
    r"\b(everywhere|but for|paper|placement|rests|upon|surface|drawn|page|imagine|then)\b",
    r"\bsits (left|right|top|bottom|center)\b",
    r"\(",
)

FOURTH_PHRASINGS = (
    "{background} wallpaper with one {size} {colour} {shape} off to the {position}",
    "over {background} tiles, a {colour} {size} {shape} lies {position}",
    "{size} {colour} {shape} located {position}, {background} backing",
    "my drawing: {background} fills it, {colour} {shape}, {size}, {position}",
    "{background}! {colour} {shape}! {size}! {position}!",
    "in {background} light, a {shape} that is {colour} and {size}, {position} most",
)
"""Written before any noise-word world was trained or read
(docs/results/2026-12-02-noise-words.md)."""

FOURTH_CONSTRUCTIONS = (
    r"\b(wallpaper|off|tiles|lies|located|backing|my|drawing|fills|light|most)\b",
    r"!",
)

FIFTH_PHRASINGS = (
    "{size} {colour} {shape} on {background}, {position} of frame",
    "picture of a {size} {shape} colored {colour} at {position}, {background} bg",
    "{background} color fill; one {colour} {shape}; size {size}; position {position}",
    "a {shape} ({colour}, {size}) placed {position} against a {background} wall",
    "on {background}, {position}, a {size} {shape} of {colour} hue",
    "minimal {background} composition with a {size} {colour} {shape} on its {position}",
)
"""Written before any role-word world was trained or read
(docs/results/2026-12-04-role-words.md)."""

FIFTH_CONSTRUCTIONS = (
    r"\b(frame|colored|bg|color|fill|size|position|wall|hue|minimal|composition|its \w+$)\b",
)

SIXTH_PHRASINGS = (
    "the {shape} is {colour} and {size}, the rest is {background}, put it {position}",
    "{background} page, {position} half, {size} {colour} {shape}",
    "icon: {size} {colour} {shape} at {position} over {background} paper",
    "a {size} {shape} filled with {colour}, sitting {position} in a {background} room",
    "set against {background}, a {colour} {shape} ({size}) on the {position}",
    "{position} placement; {background} everywhere; {size} {shape}, {colour} tone",
)
"""Written before any world was read on it (docs/results/2026-12-04-colour-path.md)."""

SIXTH_CONSTRUCTIONS = (
    r"\b(rest|put|page|half|icon|paper|filled|room|set|tone|placement|everywhere)\b",
)

HELD_OUT_SETS = {
    "first": HELD_OUT_PHRASINGS,
    "confirmation": CONFIRMATION_PHRASINGS,
    "third": THIRD_PHRASINGS,
    "fourth": FOURTH_PHRASINGS,
    "fifth": FIFTH_PHRASINGS,
    "sixth": SIXTH_PHRASINGS,
}
"""Every held-out phrasing set, in the order they were written."""

ALL_HELD_OUT_CONSTRUCTIONS = (
    *HELD_OUT_CONSTRUCTIONS,
    *THIRD_CONSTRUCTIONS,
    *FOURTH_CONSTRUCTIONS,
    *FIFTH_CONSTRUCTIONS,
    *SIXTH_CONSTRUCTIONS,
)
"""What no caption of the role-word language (`role_language`) may use: every set's words."""


def phrased_prompt(attrs: Attributes, template: str) -> str:
    """`attrs` in a held-out phrasing (a HELD_OUT_PHRASINGS template)."""
    return template.format(
        shape=attrs.shape,
        size=attrs.size,
        colour=attrs.colour,
        background=attrs.background,
        position=attrs.position,
    )


def score_images(images, combos: list[Attributes]) -> PromptFollowing:
    """Share of images in which the oracle reads back each attribute of its prompt."""
    readings = [oracle.read(img) for img in images]
    score = {
        key: float(
            np.mean(
                [getattr(r, key) == getattr(a, key) for r, a in zip(readings, combos, strict=True)]
            )
        )
        for key in ("background", "colour", "position", "size", "shape")
    }
    return PromptFollowing(prompts=len(combos), **score)


def measure_prompt_following(
    pipe, n_prompts: int = 64, seed: int = 0, batch: int = 64, template: str | None = None
) -> PromptFollowing:
    """Oracle readings of one sample per held-out combination, worded as in training (`template`
    None) or in a held-out phrasing."""
    combos = held_out_prompts(n_prompts)
    if template is None:
        prompts = [full_prompt(a) for a in combos]
    else:
        prompts = [phrased_prompt(a, template) for a in combos]
    return score_images(sample(pipe, prompts, seed, batch), combos)


def sample(
    pipe,
    prompts: list[str],
    seed: int = 0,
    batch: int = 64,
    output_type: str = "np",
    steps: int = SAMPLE_STEPS,
    guidance: float = GUIDANCE,
):
    """One sample per prompt, prompt i seeded `seed + i`, at the quality checks' settings unless
    `steps` / `guidance` say otherwise (probes of the sampler): images, or the final latents with
    `output_type="latent"`."""
    out = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        generators = [torch.Generator().manual_seed(seed + start + i) for i in range(len(chunk))]
        images = pipe(
            chunk,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generators,
            output_type=output_type,
        ).images
        out.extend(images)
    return torch.stack(out) if output_type == "latent" else out


def measure_phrasings(pipe, templates: tuple[str, ...], n_prompts: int = 32) -> PromptFollowing:
    """Prompt following pooled over held-out phrasings: `n_prompts` held-out combinations in
    each template, one sample each (the rewording bars are read on this pooled share)."""
    scores = [measure_prompt_following(pipe, n_prompts, template=t) for t in templates]
    total = sum(s.prompts for s in scores)
    pooled = {
        key: sum(getattr(s, key) * s.prompts for s in scores) / total
        for key in ("background", "colour", "position", "size", "shape")
    }
    return PromptFollowing(prompts=total, **pooled)


def prompt_ids(pipe, prompts: list[str]) -> torch.Tensor:
    """Token ids [B, L] of `prompts`, padded to the text encoder's length."""
    return pipe.tokenizer(
        prompts,
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


@torch.no_grad()
def word_sensitivity(
    pipe, template: str, words: list[str], timestep: int = 999, seed: int = 0
) -> float:
    """How far the UNet's output at `timestep` moves when one word of the prompt changes: the
    mean L2 distance between the predictions for `template.format(word)` over pairs of `words`,
    on the same starting noise. At t = T the input is pure noise, so the prediction is the
    prompt's mean image: a word the model follows must move it (the shipped world: colour words
    by ~26, position words by ~0.2, see README "Known gap")."""
    hidden = pipe.text_encoder(prompt_ids(pipe, [template.format(word) for word in words]))[0]
    size = pipe.unet.config.sample_size
    channels = pipe.unet.config.in_channels
    noise = torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(seed))
    timesteps = torch.full((len(words),), timestep)
    out = pipe.unet(noise.expand(len(words), -1, -1, -1), timesteps, hidden).sample.flatten(1)
    pairs = [(i, j) for i in range(len(words)) for j in range(i + 1, len(words))]
    return float(torch.stack([(out[i] - out[j]).norm() for i, j in pairs]).mean())


def load_clip(world: Path):
    import open_clip

    folder = world / "clip"
    open_clip.add_model_config(folder / f"{CLIP_MODEL_NAME}.json")
    model = open_clip.create_model(CLIP_MODEL_NAME, pretrained=str(folder / "open_clip_model.pt"))
    return model.eval(), open_clip.get_tokenizer(CLIP_MODEL_NAME)


@torch.no_grad()
def clip_zero_shot(model, tokenizer, n: int = 300, seed: int = 77) -> dict[str, float]:
    """Zero-shot accuracy on held-out rendered images for background and object colour."""
    data = render_set(n, seed, held_out=True)
    image_f = F.normalize(model.encode_image(clip_normalise(data.pixels)), dim=-1)
    colours = list(COLOURS)
    queries = {
        "background": [f"an object on a {c} background" for c in colours],
        "colour": [f"a {c} object" for c in colours],
    }
    result = {}
    for key, texts in queries.items():
        text_f = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
        predicted = (image_f @ text_f.T).argmax(1)
        truth = torch.tensor([colours.index(getattr(a, key)) for a in data.attributes])
        result[key] = float((predicted == truth).float().mean())
    captions = tokenizer(
        [describe(a.shape, colour=a.colour, background=a.background) for a in data.attributes]
    )
    sims = image_f @ F.normalize(model.encode_text(captions), dim=-1).T
    result["matching_cosine"] = float(sims.diag().mean())
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    result["mismatched_cosine"] = float(sims[off_diagonal].mean())
    return result


def load_lpips(world: Path):
    import lpips
    from safetensors.torch import load_file

    metric = lpips.LPIPS(net="alex", lpips=False, pretrained=False, pnet_rand=True, verbose=False)
    metric.net.load_state_dict(load_file(str(world / "lpips" / "alex_backbone.safetensors")))
    return metric.eval()


@torch.no_grad()
def lpips_distance(metric, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS between two [-1, 1] batches, compared at the backbone's training resolution."""
    a = F.interpolate(a, size=LPIPS_RESOLUTION, mode="bilinear")
    b = F.interpolate(b, size=LPIPS_RESOLUTION, mode="bilinear")
    return metric(a, b).flatten()


def lpips_contrasts(metric, n: int = 32, seed: int = 1) -> dict[str, float]:
    """Mean LPIPS from `n` held-out renderings to a re-render of the same attributes (jittered
    by under a pixel and 5% in size), to one with another shape, and to one with another
    background: a metric that sees the object puts the shape change far above the re-render
    although the object covers a small part of the image."""
    rng = np.random.default_rng(seed)
    base = [sample_attributes(rng, held_out=True) for _ in range(n)]
    shapes = [
        a.with_(shape=SHAPES[(SHAPES.index(a.shape) + 1 + int(rng.integers(4))) % len(SHAPES)])
        for a in base
    ]
    backgrounds = [
        a.with_(background=[c for c in COLOURS if c not in (a.background, a.colour)][0])
        for a in base
    ]

    def jittered(attrs_list: list[Attributes], jitter_seed: int) -> torch.Tensor:
        jitter = np.random.default_rng(jitter_seed)
        return to_model_range(np.stack([render(a, jitter) for a in attrs_list]))

    first = jittered(base, 10)
    return {
        name: float(lpips_distance(metric, first, jittered(attrs_list, 11)).mean())
        for name, attrs_list in (("rerender", base), ("shape", shapes), ("background", backgrounds))
    }


def perturbations(images: torch.Tensor, kind: str, strength: float) -> torch.Tensor:
    """Noise (std), blur (sigma in px) or shift (px) of a [-1, 1] batch; deterministic."""
    if kind == "noise":
        gen = torch.Generator().manual_seed(0)
        return images + strength * torch.randn(images.shape, generator=gen)
    if kind == "blur":
        radius = 3
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(x**2) / (2 * max(strength, 1e-3) ** 2))
        kernel = kernel / kernel.sum()
        c = images.shape[1]
        padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
        out = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    if kind == "shift":
        return torch.roll(images, shifts=int(strength), dims=3)
    raise ValueError(f"unknown perturbation {kind!r}")


def rendered(attrs_list: list[Attributes]) -> torch.Tensor:
    return to_model_range(np.stack([render(a) for a in attrs_list]))
