"""The shipped world loads like any diffusers pipeline: the README's block runs in a process that
never imports ptibench and samples what ptibench samples; a standard diffusers textual-inversion
loop on the folder has a finite loss; the folder's UNet code is ptibench's."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ptibench.world import layout_unet, packaging

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "src" / "ptibench" / "fixtures" / "tiny-world" / "pipeline"
CONCEPT = ROOT / "src" / "ptibench" / "fixtures" / "concepts" / "yellow-ring"

NO_PTIBENCH = """
import sys
leaked = sorted(m for m in sys.modules if m == "ptibench" or m.startswith("ptibench."))
assert not leaked, f"ptibench was imported: {leaked}"
print("no ptibench imported")
"""

TRAINING_LOOP = """
import sys
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pathlib import Path
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

folder, concept, steps = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder")
vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
noise_scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
print("dtypes", text_encoder.dtype, unet.dtype, vae.dtype)

tokenizer.add_tokens(["<concept>"])
token_id = tokenizer.convert_tokens_to_ids("<concept>")
init_id = tokenizer.encode("ring", add_special_tokens=False)[0]
text_encoder.resize_token_embeddings(len(tokenizer))
embeddings = text_encoder.get_input_embeddings().weight
with torch.no_grad():
    embeddings[token_id] = embeddings[init_id].clone()
before = embeddings[token_id].detach().clone()
vae.requires_grad_(False)
unet.requires_grad_(False)
text_encoder.requires_grad_(False)
text_encoder.get_input_embeddings().requires_grad_(True)
optimizer = torch.optim.AdamW(text_encoder.get_input_embeddings().parameters(), lr=5e-3)

pixels = torch.stack([
    torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 127.5 - 1.0)
    .permute(2, 0, 1)
    for p in sorted(concept.glob("*.png"))
])
ids = tokenizer(
    ["a photo of a <concept>"] * len(pixels), padding="max_length", truncation=True,
    max_length=tokenizer.model_max_length, return_tensors="pt",
).input_ids
losses = []
for step in range(steps):
    latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
    noise = torch.randn_like(latents)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),))
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    states = text_encoder(ids)[0]
    pred = unet(noisy, timesteps, states).sample
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    loss = F.mse_loss(pred.float(), target.float())
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    losses.append(loss.item())
moved = (text_encoder.get_input_embeddings().weight[token_id] - before).norm().item()
print("losses", " ".join(f"{v:.6g}" for v in losses))
print("moved", f"{moved:.6g}")
"""


def plain_python(code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter that has diffusers but is never handed ptibench."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "PYTHONPATH" and not key.startswith("PTIBENCH")
    }
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### The tiny world in plain diffusers") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_folder_ships_the_unet_code_ptibench_runs():
    index = json.loads((PIPELINE / "model_index.json").read_text())
    assert index["unet"] == [packaging.FOLDER_MODULE, packaging.UNET_CLASS]
    shipped = PIPELINE / "unet" / f"{packaging.FOLDER_MODULE}.py"
    assert shipped.read_text() == Path(layout_unet.__file__).read_text()
    assert "ptibench" not in {
        line.split()[1].split(".")[0]
        for line in shipped.read_text().splitlines()
        if line.startswith(("import ", "from "))
    }
    assert json.loads((PIPELINE / "text_encoder" / "config.json").read_text())["dtype"] == "float32"


def test_the_readme_block_samples_in_plain_diffusers_as_ptibench_does(tmp_path):
    """As a user copies it: default dtype, no ptibench; the image is ptibench's own sample."""
    code = readme_block()
    assert "trust_remote_code=True" in code and "torch_dtype" not in code
    (tmp_path / "src").symlink_to(ROOT / "src")
    done = plain_python(code + NO_PTIBENCH, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no ptibench imported" in done.stdout
    plain = np.asarray(Image.open(tmp_path / "tiny-world-sample.png").convert("RGB"))

    call = re.search(r"pipe\(\n(.*?)\)\.images", code, re.S).group(1)
    prompt = re.search(r'"([^"]+)"', call).group(1)
    pipe = packaging.load_pipeline(PIPELINE)
    pipe.set_progress_bar_config(disable=True)
    ours = pipe(
        prompt,
        num_inference_steps=int(re.search(r"num_inference_steps=(\d+)", call).group(1)),
        guidance_scale=float(re.search(r"guidance_scale=([\d.]+)", call).group(1)),
        generator=torch.Generator().manual_seed(
            int(re.search(r"manual_seed\((\d+)", call).group(1))
        ),
    ).images[0]
    difference = np.abs(plain.astype(int) - np.asarray(ours.convert("RGB")).astype(int))
    assert plain.std() > 10, "the plain-diffusers image is flat"
    assert difference.max() <= 2, f"plain diffusers and ptibench differ by {difference.max()}"


def test_a_standard_diffusers_training_loop_has_a_finite_loss(tmp_path):
    """The components as diffusers' textual-inversion example loads them (no dtype given, the stock
    UNet class) train the new token with a finite loss."""
    done = plain_python(TRAINING_LOOP + NO_PTIBENCH, tmp_path, str(PIPELINE), str(CONCEPT), "6")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dtypes torch.float32 torch.float32 torch.float32" in done.stdout
    losses = [float(v) for v in re.search(r"^losses (.*)$", done.stdout, re.M).group(1).split()]
    assert len(losses) == 6
    assert all(np.isfinite(losses)), losses
    moved = float(re.search(r"^moved (.*)$", done.stdout, re.M).group(1))
    assert np.isfinite(moved) and moved > 0
