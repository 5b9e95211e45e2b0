"""Probe: which colour is the object's and which the background's, read from the text encoder's
last token state, under held-out phrasings.

`readout` fits a ridge probe (one-hot targets, argmax) on the last state of 8,000 captions of the
shipped caption language that name both colours, with the world's encoder as it is. `train`
trains the encoder alone with a linear head on its last state (cross-entropy on the caption's
named colours) on a caption language, then reads the held-out sets with that head: can the
encoder learn to carry both colours there, and from which language?

    python docs/results/colour-path/encoder_probe.py readout --world DIR
    python docs/results/colour-path/encoder_probe.py train --world DIR --language role|plain
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import colour_path  # noqa: E402
import role_words  # noqa: E402

from ptibench.world import quality  # noqa: E402
from ptibench.world.dataset import render_set  # noqa: E402
from ptibench.world.language import CaptionLanguage  # noqa: E402
from ptibench.world.packaging import load_pipeline  # noqa: E402
from ptibench.world.train_layout import caption_states, ridge  # noqa: E402
from ptibench.world.train_t2i import CaptionTokens  # noqa: E402

COLOURS = colour_path.COLOUR_NAMES
CLASSES = colour_path.CLASSES


def read_sets(predict, encoder, tokens, sets) -> dict:
    """Per set and phrasing, the share of 64 held-out prompts whose object and background
    colour `predict(last_states)` reads right (object, background)."""
    combos = quality.held_out_prompts(64)
    obj_true = torch.tensor([COLOURS.index(c.colour) for c in combos])
    bg_true = torch.tensor([COLOURS.index(c.background) for c in combos])
    out = {}
    for name in sets:
        rows = {}
        for template in colour_path.SETS[name]:
            prompts = [quality.phrased_prompt(c, template) for c in combos]
            obj, bg = predict(caption_states(encoder, tokens, prompts)[:, -1])
            rows[template] = [
                round(float((obj == obj_true).float().mean()), 3),
                round(float((bg == bg_true).float().mean()), 3),
            ]
        mean = np.mean(list(rows.values()), axis=0)
        out[name] = {"mean": [round(float(m), 3) for m in mean], "rows": rows}
        print(name, out[name]["mean"], flush=True)
    return out


def readout(world: Path, sets) -> dict:
    pipe = load_pipeline(world / "pipeline")
    tokens = CaptionTokens(pipe.tokenizer)
    language = CaptionLanguage(pipe.tokenizer)
    attributes = render_set(2000, 0).attributes
    rng = np.random.default_rng(5)
    texts, obj, bg = [], [], []
    while len(texts) < 8000:
        attrs = attributes[rng.integers(len(attributes))]
        text = language(attrs, rng)
        if attrs.colour != attrs.background and attrs.colour in text and attrs.background in text:
            texts.append(text)
            obj.append(COLOURS.index(attrs.colour))
            bg.append(COLOURS.index(attrs.background))
    states = caption_states(pipe.text_encoder, tokens, texts)[:, -1]
    one_hot = torch.nn.functional.one_hot
    wo, bo, _ = ridge(states, one_hot(torch.tensor(obj), len(COLOURS)).float())
    wb, bb, _ = ridge(states, one_hot(torch.tensor(bg), len(COLOURS)).float())

    def predict(x):
        return (x @ wo.T + bo).argmax(1), (x @ wb.T + bb).argmax(1)

    fitted = predict(states)
    train_share = [
        round(float((fitted[0] == torch.tensor(obj)).float().mean()), 3),
        round(float((fitted[1] == torch.tensor(bg)).float().mean()), 3),
    ]
    return {"training_captions": train_share, **read_sets(predict, pipe.text_encoder, tokens, sets)}


def fresh_encoder(like, layers: int, width: int):
    """A newly initialised CLIP text encoder shaped like `like` but `layers` deep, `width` wide."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        **{
            **like.config.to_dict(),
            "num_hidden_layers": layers,
            "hidden_size": width,
            "intermediate_size": 4 * width,
            "num_attention_heads": width // 32,
            "projection_dim": width,
        }
    )
    return CLIPTextModel(config)


def train(world: Path, kind: str, steps: int, seed: int, sets, fresh=None) -> dict:
    torch.manual_seed(seed)
    pipe = load_pipeline(world / "pipeline")
    encoder = pipe.text_encoder if fresh is None else fresh_encoder(pipe.text_encoder, *fresh)
    encoder.train()
    tokens = CaptionTokens(pipe.tokenizer)
    language = role_words.LANGUAGES[kind](pipe.tokenizer)
    attributes = render_set(2000, 0).attributes
    rng = np.random.default_rng(seed + 5)
    head = torch.nn.Linear(encoder.config.hidden_size, 2 * CLASSES)
    optimizer = torch.optim.AdamW(
        [{"params": encoder.parameters(), "lr": 2e-4}, {"params": head.parameters(), "lr": 1e-3}]
    )
    start, losses = time.time(), []
    for _ in range(steps):
        batch = [attributes[i] for i in rng.integers(len(attributes), size=128)]
        texts = [language(attrs, rng) for attrs in batch]
        obj, bg = colour_path.colour_labels(texts, batch)
        logits = head(encoder(tokens(texts))[0][:, -1])
        ce = torch.nn.functional.cross_entropy
        loss = ce(logits[:, :CLASSES], obj) + ce(logits[:, CLASSES:], bg)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    encoder.eval()

    def predict(x):
        with torch.no_grad():
            logits = head(x)
        return logits[:, : len(COLOURS)].argmax(1), logits[
            :, CLASSES : CLASSES + len(COLOURS)
        ].argmax(1)

    return {
        "encoder": "the world's" if fresh is None else {"layers": fresh[0], "width": fresh[1]},
        "language": kind,
        "steps": steps,
        "seed": seed,
        "loss_last_100": float(np.mean(losses[-100:])),
        "seconds": round(time.time() - start, 1),
        **read_sets(predict, encoder, tokens, sets),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("readout", "train"))
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--language", choices=sorted(role_words.LANGUAGES), default="role")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fresh", type=int, nargs=2, metavar=("LAYERS", "WIDTH"), help="a new encoder, untrained"
    )
    parser.add_argument("--sets", default=",".join(colour_path.SETS))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sets = args.sets.split(",")
    if args.command == "readout":
        result = readout(args.world, sets)
    else:
        result = train(args.world, args.language, args.steps, args.seed, sets, args.fresh)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
