"""run_case end to end on a random-weight world of the tiny world's shape: caching, artifacts
in ecosystem formats, divergence, methods, determinism across processes, the shared pivot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from ptibench.assets import tiny_world_path
from ptibench.errors import PtibenchError
from ptibench.models.loading import load_bundle
from ptibench.run.runner import run_case, run_cases
from ptibench.spec import METRICS, CaseSpec, EvalConfig
from ptibench.training.methods import Method, available_methods, get_method, register_method

QUICK = EvalConfig(samples_per_prompt=1, sample_steps=2)
SRC = Path(__file__).resolve().parents[1] / "src"


def quick(config, stage="inversion", **changes):
    spec = CaseSpec(stage=stage, lr=1e-3, world=config.name, steps=6, eval=QUICK)
    return spec.with_(**changes)


def test_inversion_case_runs_and_caches(world, tmp_path):
    spec = quick(world)
    first = run_case(spec, cache_dir=tmp_path, progress=False)
    assert first.status == "ok" and not first.from_cache
    expected = set(METRICS) - {"pivot_distance"}  # stage 2 only
    assert set(first.metrics) == expected
    assert first.metrics["distance"] > 0 and first.metrics["cosine_to_init"] < 1
    assert {"train_s", "eval_s", "total_s", "load_s"} <= set(first.timings)
    assert first.peak_memory_mb and first.environment["seed"] == 0
    assert set(first.environment["versions"]) >= {"torch", "diffusers", "peft", "open_clip_torch"}
    second = run_case(spec, cache_dir=tmp_path, progress=False)
    assert second.from_cache and second.metrics == first.metrics
    assert Path(second.artifacts["samples"]).is_file()
    staging = list((tmp_path / ".staging").glob("*"))
    assert staging == []


def test_zero_lr_moves_nothing(world, tmp_path):
    inversion = run_case(quick(world, lr=0.0), cache_dir=tmp_path, progress=False)
    assert inversion.metrics["distance"] == 0.0
    assert inversion.metrics["cosine_to_init"] == pytest.approx(1.0)
    lora = run_case(quick(world, "finetune", lr=0.0), cache_dir=tmp_path, progress=False)
    assert lora.metrics["distance"] == 0.0
    # the pivot it started from: the stage-1 vector at the default pivot lr, which did move
    assert lora.metrics["pivot_distance"] > 0


def test_artifacts_load_into_the_pipeline_and_generate(world, tmp_path):
    """The saved embedding and LoRA, loaded the ecosystem way, redraw the case's own first
    sample (reconstruction prompt, first seed) to the uint8 level; without the LoRA the same
    call draws something else, so the adapter is what the samples show."""
    spec = quick(world, "finetune", steps=3, lr=1e-2)
    result = run_case(spec, cache_dir=tmp_path / "cache", artifacts_dir=tmp_path / "out")
    assert Path(result.artifacts["lora"]).parent == tmp_path / "out" / spec.key()
    from diffusers import StableDiffusionPipeline
    from PIL import Image

    from ptibench.concept import load_concept
    from ptibench.evaluation.sampling import to_uint8

    ring = load_concept(spec.concept)
    from ptibench.evaluation import sample_sheet

    sheet = np.asarray(Image.open(result.artifacts["samples"]).convert("RGB"))
    edge = sample_sheet.thumb_size(32)  # 32 px samples are enlarged by an integer factor
    top = sample_sheet.FONT_SIZE * 2 + 2 * sample_sheet.PAD + edge + sample_sheet.PAD
    left = sample_sheet.LABEL_WIDTH  # row 0: the training images; row 1: the first prompt
    step = edge // 32
    first = sheet[top : top + edge : step, left : left + edge : step]  # its first sample

    def draw(pipe, prompt):
        out = pipe(
            prompt,
            num_inference_steps=spec.eval.sample_steps,
            guidance_scale=spec.eval.guidance_scale,
            generator=torch.Generator().manual_seed(spec.eval.seed),
            output_type="pt",
        )
        return to_uint8(out.images)[0].astype(int)

    folders = [Path(world.pipeline)]
    if (tiny_world_path() / "pipeline" / "model_index.json").is_file():
        folders.append(tiny_world_path() / "pipeline")
    for folder in folders:
        pipe = StableDiffusionPipeline.from_pretrained(
            folder, dtype=torch.float32, trust_remote_code=True
        )
        pipe.set_progress_bar_config(disable=True)
        pipe.load_textual_inversion(result.artifacts["learned_embeds"])
        prompt = ring.with_placeholder(ring.reconstruction_prompt)
        without = draw(pipe, prompt)
        pipe.load_lora_weights(result.artifacts["lora"])
        image = draw(pipe, prompt)
        assert image.shape == (32, 32, 3)
        assert np.abs(image - without).max() > 8, "the LoRA does not change the image"
        if folder == Path(world.pipeline):  # the world the case ran on
            assert np.abs(image - first.astype(int)).max() <= 1


def test_loaded_embedding_matches_ours(world, tmp_path):
    """The saved embedding, loaded the ecosystem way, conditions exactly like our splice."""
    result = run_case(quick(world), cache_dir=tmp_path, progress=False)
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    vector = load_file(result.artifacts["learned_embeds"])["<yellow-ring>"][0]
    pipe = StableDiffusionPipeline.from_pretrained(world.pipeline, dtype=torch.float32)
    pipe.load_textual_inversion(result.artifacts["learned_embeds"])
    ids = pipe.tokenizer(
        "a <yellow-ring> at the top", padding="max_length", max_length=16, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        theirs = pipe.text_encoder(ids)[0]
        ours = load_bundle(world).encode(["a <yellow-ring> at the top"], "<yellow-ring>", vector)
    torch.testing.assert_close(ours, theirs)


def test_finetune_full_and_curves(world, tmp_path):
    spec = quick(world, "finetune-full", steps=4, eval_every=2)
    result = run_case(spec, cache_dir=tmp_path, progress=False)
    assert result.status == "ok" and result.metrics["distance"] > 0
    assert "cosine_to_init" not in result.metrics
    assert [c["step"] for c in result.curves] == [0, 2, 4]
    assert "lpips" in result.curves[1]


def test_eval_checkpoints_do_not_perturb_training(world, tmp_path):
    plain = run_case(quick(world, steps=4), cache_dir=tmp_path, progress=False)
    curved = run_case(quick(world, steps=4, eval_every=2), cache_dir=tmp_path, progress=False)
    assert curved.metrics == plain.metrics and len(curved.curves) == 3


@pytest.mark.parametrize(
    ("stage", "lr"), [("inversion", 1e2), ("inversion", 1e4), ("finetune", 1e4)]
)
def test_divergence_is_a_result(world, tmp_path, stage, lr):
    spec = quick(world, stage, lr=lr, steps=30)
    result = run_case(spec, cache_dir=tmp_path, progress=False)
    assert result.status == "diverged" and 1 <= result.diverged_at <= 30
    assert all(v == v for v in result.metrics.values())
    again = run_case(spec, cache_dir=tmp_path, progress=False)
    assert again.from_cache and again.diverged_at == result.diverged_at


def test_methods_registry(world, tmp_path):
    assert {"pti", "pti-normreg"} <= set(available_methods())
    with pytest.raises(PtibenchError, match="unknown method 'nope'"):
        get_method("nope")
    with pytest.raises(PtibenchError, match="no stage 'finetune'"):
        run_case(quick(world, "finetune", method="pti-normreg"), cache_dir=tmp_path)
    plain = run_case(quick(world, lr=2e-2, steps=10), cache_dir=tmp_path, progress=False)
    pulled = run_case(
        quick(world, lr=2e-2, steps=10, method="pti-normreg"), cache_dir=tmp_path, progress=False
    )
    assert pulled.metrics["distance"] < plain.metrics["distance"], "the pull must pull"

    class Frozen(Method):
        name, version, stages = "frozen-test", "1", ("inversion",)

        def optimizer(self, stage, params, lr):
            return torch.optim.SGD(params, lr=0.0)

    register_method(Frozen)
    frozen = run_case(quick(world, method="frozen-test"), cache_dir=tmp_path, progress=False)
    assert frozen.metrics["distance"] == 0.0


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"stage": "bogus"}, "unknown stage"),
        ({"steps": 0}, "steps"),
        ({"lr": float("nan")}, "lr"),
        ({"world": "no-such-world"}, "unknown world"),
        ({"world": "/no/such/model"}, "does not exist"),
        ({"world": "."}, "not a diffusers pipeline"),
        ({"concept": "no-such-concept"}, "unknown concept"),
    ],
)
def test_bad_specs_are_one_line(world, tmp_path, changes, match):
    with pytest.raises(PtibenchError, match=match) as info:
        run_case(quick(world, **changes), cache_dir=tmp_path)
    assert "\n" not in str(info.value)


def test_run_cases_matches_run_case(world, tmp_path):
    specs = [quick(world, lr=1e-3), quick(world, lr=3e-3)]
    batch = run_cases(specs, cache_dir=tmp_path, progress=False)
    assert [r.spec for r in batch] == specs
    assert run_case(specs[1], cache_dir=tmp_path).metrics == batch[1].metrics


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    from ptibench.run.runner import run_case
    from ptibench.spec import CaseSpec
    out = []
    for blob, cache in zip(sys.argv[1::2], sys.argv[2::2]):
        result = run_case(CaseSpec.from_dict(json.loads(blob)), cache_dir=cache, progress=False)
        out.append({"metrics": result.metrics, "pivot_s": result.timings.get("pivot_s")})
    print(json.dumps(out))
    """
)


def _spawn(*jobs: tuple[CaseSpec, Path]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    args = [a for spec, cache in jobs for a in (json.dumps(spec.to_dict()), str(cache))]
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _collect(process: subprocess.Popen) -> list[dict]:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def test_fresh_processes_agree_bitwise_and_share_one_pivot(world, tmp_path):
    """Two fresh processes run the same inversion spec (separate caches): identical metrics.
    Then each runs a different stage-2 case on one shared cache, at the same time: the pivot
    is trained once, by one of them."""
    spec = quick(world, steps=10)
    shared = tmp_path / "shared"
    first = _spawn((spec, tmp_path / "a"), (quick(world, "finetune", steps=4), shared))
    second = _spawn((spec, tmp_path / "b"), (quick(world, "finetune", steps=4, lr=2e-3), shared))
    (a, f1), (b, f2) = _collect(first), _collect(second)
    assert a["metrics"] == b["metrics"]
    assert sorted(r["pivot_s"] > 0 for r in (f1, f2)) == [False, True]
    assert len(list((shared / "pivots").glob("*/learned_embeds.safetensors"))) == 1
