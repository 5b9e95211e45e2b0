"""Real-model worlds offline: SD1.5- and SDXL-shaped random-init pipelines (real classes, real
tokenizer, reduced widths, 64x64) loaded through the user's path (folder / config file), the
two-encoder inversion and its artifact, LoRA steps, the metric path with an open_clip ViT-B-32
and an LPIPS alexnet without weights, missing-weight messages, one GPU per xdist worker."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ptibench.concept import load_concept
from ptibench.edit_prompts import DEFAULT_EDIT_PROMPTS
from ptibench.errors import PtibenchError
from ptibench.harness.workers import assign_worker_gpu
from ptibench.models import random_weights as random_models
from ptibench.models.artifacts import embedding_tensors, save_learned_embeds
from ptibench.models.checkpoints import (
    ModelWorldConfig,
    check_lpips_backbone,
    check_open_clip_weights,
    resolve_model_world,
)
from ptibench.models.loading import load_bundle
from ptibench.models.registry import register_world, resolve_world
from ptibench.models.sdxl import SDXLBundle
from ptibench.run.runner import run_case
from ptibench.spec import CaseSpec, EvalConfig
from ptibench.training.loop import StageContext, TrainingData
from ptibench.training.methods import get_method

QUICK = EvalConfig(samples_per_prompt=1, sample_steps=2)
METRIC_MODELS = {"clip_arch": "ViT-B-32", "clip_pretrained": None, "lpips_weights": "random"}


@pytest.fixture(scope="module", autouse=True)
def _threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("real-models")
    return {
        "sd15": random_models.sd15_pipeline(root / "sd15"),
        "sdxl": random_models.sdxl_pipeline(root / "sdxl"),
    }


def world_file(folder: Path, pipeline: Path, suffix: str = ".json") -> Path:
    path = folder / f"world{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"pipeline": str(pipeline), "resolution": 64, **METRIC_MODELS}))
    else:
        path.write_text(
            f'pipeline = "{pipeline}"\nkind = "auto"\nresolution = 64\n'
            'clip_arch = "ViT-B-32"\nlpips_weights = "random"\nlpips_net = "alex"\n'
            'dtype = "float32"\n'
        )
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A user's concept: a few photos of different sizes and a concept.json with no edits."""
    folder = tmp_path_factory.mktemp("photos") / "my-mug"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate(((80, 60), (64, 64), (50, 90))):
        pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo{i}.jpg")
    (folder / "concept.json").write_text(
        json.dumps(
            {
                "name": "my-mug",
                "placeholder": "<my-mug>",
                "class_noun": "mug",
                "initializer": "mug",
                "reconstruction_prompt": "a photo of a {}",
            }
        )
    )
    return folder


@pytest.fixture(scope="module")
def quick_photos(photos, tmp_path_factory) -> Path:
    """The same photos with two edit prompts: CLIP ViT-B-32 on CPU is the slow part."""
    folder = tmp_path_factory.mktemp("quick") / "my-mug"
    shutil.copytree(photos, folder)
    meta = json.loads((folder / "concept.json").read_text())
    meta["edit_prompts"] = ["a {} in the snow", "a red {}"]
    (folder / "concept.json").write_text(json.dumps(meta))
    return folder


def test_worlds_from_folder_and_config_files(models, tmp_path):
    sd = resolve_world(str(models["sd15"]))
    assert isinstance(sd, ModelWorldConfig) and sd.kind == "sd" and sd.device == "cpu"
    assert sd.dtype == "float32" and not sd.oracle and "a photo of a {}" in sd.templates
    from_json = resolve_world(str(world_file(tmp_path, models["sdxl"])))
    assert from_json.kind == "sdxl" and from_json.resolution == 64
    assert from_json.clip_pretrained is None and from_json.lpips_weights == "random"
    toml_dir = tmp_path / "t"
    toml_dir.mkdir()
    from_toml = resolve_world(str(world_file(toml_dir, models["sd15"], ".toml")))
    assert from_toml.kind == "sd" and from_toml.clip_arch == "ViT-B-32"
    assert resolve_world(str(models["sd15"])) == sd  # equal configs share the load cache
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"pipeline": str(models["sd15"]), "colour": "red"}))
    with pytest.raises(PtibenchError, match="unknown key.*colour"):
        resolve_world(str(bad))


def test_missing_models_say_what_and_where(models, tmp_path, monkeypatch):
    with pytest.raises(PtibenchError) as error:
        resolve_world("nobody-here/no-such-model")
    text = str(error.value)
    assert "\n" not in text and "no-such-model" in text and "Hugging Face cache" in text
    broken = tmp_path / "broken"
    shutil.copytree(models["sd15"], broken)
    for weight in (broken / "unet").glob("*.safetensors"):
        weight.unlink()
    with pytest.raises(PtibenchError, match=r"no weights for unet .*broken/unet"):
        resolve_model_world(str(broken))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(PtibenchError, match="alexnet-owt-7be5be79.pth"):
        check_lpips_backbone("alex")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(PtibenchError, match="ViT-B-32 .openai. weights not found"):
        check_open_clip_weights("ViT-B-32", "openai")
    with pytest.raises(PtibenchError, match="no pretrained tag"):
        check_open_clip_weights("ViT-B-32", "no-such-tag")


def test_sdxl_inverts_the_token_in_both_encoders(models, photos, tmp_path):
    world = replace(resolve_world(str(models["sdxl"])), resolution=64)
    bundle = load_bundle(world)
    assert isinstance(bundle, SDXLBundle)
    assert bundle.row_dims == (32, 64) and bundle.embedding_dim == 96
    concept = load_concept(photos)
    pixels, _ = concept.pixels(bundle.resolution)
    data = TrainingData.build(bundle, concept, pixels)
    assert data.ids.shape == (len(world.templates), 2, 77) and data.latents.shape[-1] == 8
    assert data.ids[0, 1, -1] == 0 and data.ids[0, 0, -1] == 49407  # each tokenizer's pad
    spec = CaseSpec(stage="inversion", lr=5e-2, world=world.name, concept=str(photos), steps=2)
    ctx = StageContext(spec, concept, bundle, data)
    outcome = get_method("pti").train("inversion", ctx)
    assert outcome.status == "ok" and len(outcome.losses) == 2
    moved = (outcome.vector - outcome.initial).abs()
    assert moved[:32].sum() > 0 and moved[32:].sum() > 0  # clip_l and clip_g rows both learn

    path = tmp_path / "learned_embeds.safetensors"
    save_learned_embeds(bundle, path, concept.placeholder, outcome.vector)
    tensors = embedding_tensors(bundle, concept.placeholder, outcome.vector)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {
        "clip_l": (1, 32),
        "clip_g": (1, 64),
    }
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import load_file

    pipe = StableDiffusionXLPipeline.from_pretrained(
        str(models["sdxl"]), dtype=torch.float32, local_files_only=True, add_watermarker=False
    )
    state = load_file(str(path))
    for key, encoder, tokenizer in (
        ("clip_l", pipe.text_encoder, pipe.tokenizer),
        ("clip_g", pipe.text_encoder_2, pipe.tokenizer_2),
    ):
        pipe.load_textual_inversion(
            state[key], token=concept.placeholder, text_encoder=encoder, tokenizer=tokenizer
        )
    token = pipe.tokenizer.convert_tokens_to_ids(concept.placeholder)
    row = pipe.text_encoder_2.get_input_embeddings().weight[token]
    assert torch.allclose(row, outcome.vector[32:])

    # the spliced encoding equals the pipeline's own with the loaded token (both encoders)
    with torch.no_grad():
        ours = bundle.encode(["a photo of a <my-mug>"], concept.placeholder, outcome.vector)
        theirs, _, pooled, _ = pipe.encode_prompt(
            "a photo of a <my-mug>", do_classifier_free_guidance=False
        )
    assert torch.allclose(ours[:, :-1], theirs, atol=1e-5)
    assert torch.allclose(ours[:, -1, :32], pooled, atol=1e-5)

    lora_ctx = StageContext(spec.with_(stage="finetune"), concept, bundle, data)
    lora_ctx.pivot = outcome.vector
    tuned = get_method("pti").train("finetune", lora_ctx)
    assert tuned.status == "ok" and len(tuned.losses) == 2 and tuned.metrics["distance"] > 0


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_run_case_end_to_end(models, quick_photos, tmp_path, kind):
    world = replace(resolve_world(str(models[kind])), resolution=64, **METRIC_MODELS)
    register_world(f"real-test-{kind}", lambda: world)
    spec = CaseSpec(
        stage="finetune" if kind == "sdxl" else "inversion",
        lr=1e-3,
        world=f"real-test-{kind}",
        concept=str(quick_photos),
        steps=2,
        batch_size=2,
        eval=QUICK,
    )
    result = run_case(spec, cache_dir=tmp_path / "cache", progress=False)
    assert result.status == "ok"
    assert {"lpips", "clip_i", "clip_t", "denoise_loss", "distance"} <= set(result.metrics)
    assert "edit_success" not in result.metrics and "appearance" not in result.metrics
    rows = json.loads((Path(result.artifacts["samples"]).parent / "samples.json").read_text())
    assert rows["rows"] == ["a photo of a <my-mug>", "a <my-mug> in the snow", "a red <my-mug>"]
    assert result.environment["world"] == world.name
    if kind == "sdxl":
        from safetensors.torch import load_file

        assert set(load_file(result.artifacts["learned_embeds"])) == {"clip_l", "clip_g"}
        assert Path(result.artifacts["lora"]).is_file()


def test_default_edit_prompts_for_photos(photos):
    concept = load_concept(photos)
    assert [e.prompt for e in concept.edit_prompts] == list(DEFAULT_EDIT_PROMPTS)
    assert len(DEFAULT_EDIT_PROMPTS) == 25 and all(e.expect is None for e in concept.edit_prompts)
    assert all("{}" in p for p in DEFAULT_EDIT_PROMPTS)


@pytest.mark.parametrize(
    ("env", "expected", "visible"),
    [
        ({"PYTEST_XDIST_WORKER": "gw0", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}, "0", "0"),
        ({"PYTEST_XDIST_WORKER": "gw3", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}, "3", "3"),
        ({"PYTEST_XDIST_WORKER": "gw5", "CUDA_VISIBLE_DEVICES": "4,6"}, "6", "6"),
        ({"PYTEST_XDIST_WORKER": "gw1", "CUDA_VISIBLE_DEVICES": ""}, None, ""),
        ({"PYTEST_XDIST_WORKER": "gw1", "CUDA_VISIBLE_DEVICES": "-1"}, None, "-1"),
        ({"CUDA_VISIBLE_DEVICES": "0,1"}, None, "0,1"),  # the controller keeps every GPU
        ({"PYTEST_XDIST_WORKER": "master", "CUDA_VISIBLE_DEVICES": "0,1"}, None, "0,1"),
    ],
)
def test_one_gpu_per_xdist_worker(env, expected, visible):
    environ = dict(env)
    assert assign_worker_gpu(environ) == expected
    assert environ.get("CUDA_VISIBLE_DEVICES") == visible
