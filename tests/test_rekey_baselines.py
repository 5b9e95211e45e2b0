"""tools/rekey_baselines.py moves baselines to a new world version only when the two pipeline
folders load to the same tensors bit for bit; one changed weight and nothing is written."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ptibench.assets import tiny_world_path
from ptibench.results import baselines
from ptibench.spec import CaseResult, CaseSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import rekey_baselines  # noqa: E402

SPECS = [CaseSpec(stage="inversion", lr=1e-2), CaseSpec(stage="finetune", lr=1e-4, seed=1)]
PIPELINE = tiny_world_path() / "pipeline"


def store(root: Path) -> None:
    for spec in SPECS:
        result = CaseResult(spec=spec, status="ok", metrics={"clip_i": 0.61, "lpips": 5.25})
        baselines.update(root, result, {"world_version": "aaaa0000"})


def packaged_as_before(tmp_path: Path) -> Path:
    """The shipped folder as it was packaged before it loaded in plain diffusers: the UNet named
    by ptibench's module path, the text encoder's config in float16, no code in the folder."""
    old = tmp_path / "old-pipeline"
    shutil.copytree(PIPELINE, old)
    (old / "unet" / "layout_unet.py").unlink()
    index = json.loads((old / "model_index.json").read_text())
    index["unet"][0] = "ptibench.world.layout_unet"
    (old / "model_index.json").write_text(json.dumps(index))
    config = json.loads((old / "text_encoder" / "config.json").read_text())
    (old / "text_encoder" / "config.json").write_text(json.dumps({**config, "dtype": "float16"}))
    return old


def recorded_versions(root: Path) -> list[str]:
    versions = []
    for path in sorted(root.rglob("*.json")):
        for seeds in json.loads(path.read_text())["entries"].values():
            for variants in seeds.values():
                versions += [e["recorded"]["world_version"] for e in variants.values()]
    return versions


def rekey(root: Path, old: Path) -> int:
    return rekey_baselines.main(
        [
            *("--old-pipeline", str(old), "--baselines", str(root)),
            *("--old", "aaaa0000", "--new", "bbbb1111"),
        ]
    )


def test_a_repackaged_folder_moves_every_entry_to_the_new_version(tmp_path, capsys):
    store(tmp_path / "baselines")
    assert rekey(tmp_path / "baselines", packaged_as_before(tmp_path)) == 0
    assert recorded_versions(tmp_path / "baselines") == ["bbbb1111", "bbbb1111"]
    assert "tensors bitwise equal" in capsys.readouterr().out


def test_one_changed_weight_changes_nothing(tmp_path, capsys):
    store(tmp_path / "baselines")
    before = {p: p.read_bytes() for p in (tmp_path / "baselines").rglob("*.json")}
    old = packaged_as_before(tmp_path)
    weights = old / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    flat = tensors[name].flatten().clone()
    flat[0] = torch.nextafter(flat[0], flat[0] + 1)
    tensors[name] = flat.view_as(tensors[name])
    save_file(tensors, weights)
    assert rekey(tmp_path / "baselines", old) == 1
    assert {p: p.read_bytes() for p in before} == before
    assert f"vae.{name}: differs" in capsys.readouterr().err
