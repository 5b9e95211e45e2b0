"""How much of the UNet's cross-attention the learnt token gets, in the bare prompt and in the
edits that name a background: does a world that loses the concept in those edits pass over the
token there?

The tiny world's text encoder is causal, so the token's own state in "a {} on a green
background" is the state it has in "a {}"; what changes with the context is the states after it
and how the UNet's cross-attention shares itself between them. For every stage-1 case of a grid
run (its `learned_embeds.safetensors`), this samples the reconstruction prompt and the three
background edits of `yellow-ring` (five), 8 samples each (sample j seeded as the evaluation's), and
records per sample the conditional branch's attention to each of the 16 token slots, averaged
over the 7 cross-attention layers, their heads, the image positions and the 20 sampling steps,
with the oracle's reading of whether the sample keeps the concept.

    python docs/results/token-attention/token_attention.py measure --world W --out OUT_W --into DIR
    python docs/results/token-attention/token_attention.py table NAME=DIR [NAME=DIR ...]
    python docs/results/token-attention/token_attention.py kept NAME=DIR [NAME=DIR ...]
    python docs/results/token-attention/token_attention.py slots NAME=DIR [NAME=DIR ...]
    python docs/results/token-attention/token_attention.py carry --world W --out OUT_W --into DIR
    python docs/results/token-attention/token_attention.py carry-table NAME=DIR [NAME=DIR ...]

`table` pairs each world's cases with the first world's by (lr, grid seed); `kept` compares the
token's share in the background-edit samples that keep the concept with those that lose it;
`slots` gives each world's mean share of every slot of the background edits. `carry` (no
sampling) measures how much of the learnt vector the causal text encoder carries into the states
after the token in the background edits, against the initializer word in its place.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from ptibench.concept import load_concept
from ptibench.evaluation.sampling import generate_rows
from ptibench.models.artifacts import load_embedding
from ptibench.models.loading import load_bundle
from ptibench.spec import EvalConfig
from ptibench.world import oracle

CONCEPT = Path("src/ptibench/fixtures/concepts/yellow-ring")
SAMPLES = 8
CASE = re.compile(r"inversion-pti-lr=(.+)-seed(\d+)$")


class AttentionRecorder:
    """Cross-attention processor that computes attention as diffusers' AttnProcessor does and
    adds the conditional half's attention per token slot (mean over heads and image positions)
    to a running sum per sample."""

    def __init__(self) -> None:
        self.sums: torch.Tensor | None = None
        self.calls = 0

    def reset(self) -> None:
        self.sums, self.calls = None, 0

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **_):
        if hidden_states.ndim != 3 or attn.residual_connection or attn.norm_cross:
            raise ValueError("the recorder handles the tiny world's plain cross-attention only")
        batch = hidden_states.shape[0]
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(query, key, attention_mask)
        out = attn.to_out[1](attn.to_out[0](attn.batch_to_head_dim(torch.bmm(probs, value))))
        per_slot = probs.view(batch, attn.heads, query.shape[1], -1).mean(dim=(1, 2))
        cond = per_slot[batch // 2 :].double()
        self.sums = cond if self.sums is None else self.sums + cond
        self.calls += 1
        return out / attn.rescale_output_factor


def learnt_vectors(out_dir: Path):
    """(lr, grid seed, learnt vector) for every stage-1 case a grid run saved."""
    for folder in sorted((out_dir / "artifacts").iterdir()):
        match = CASE.search(folder.name)
        if match:
            vector = load_embedding(folder / "learned_embeds.safetensors")
            yield float(match.group(1)), int(match.group(2)), vector


def prompts(concept) -> list[tuple[str, dict]]:
    """The reconstruction prompt, then the edits that name a background."""
    rows = [(concept.reconstruction_prompt, {})]
    return rows + [
        (e.prompt, dict(e.expect)) for e in concept.edit_prompts if "background" in (e.expect or {})
    ]


def measure(world: Path, out_dir: Path, into: Path) -> None:
    bundle = load_bundle(str(world))
    concept = load_concept(CONCEPT)
    config = EvalConfig()
    if config.guidance_scale <= 1 or SAMPLES > bundle.config.sample_batch:
        raise SystemExit("the recorder needs guided sampling and one batch a prompt")
    recorder = AttentionRecorder()
    bundle.unet.set_attn_processor(
        {
            name: recorder if name.endswith("attn2.processor") else proc
            for name, proc in bundle.unet.attn_processors.items()
        }
    )
    rows = prompts(concept)
    texts = [concept.with_placeholder(t) for t, _ in rows]
    _, masks = bundle.prompt_ids(texts, concept.placeholder)
    appearance = {k: v for k, v in concept.appearance.items() if k in ("shape", "colour")}
    started = time.perf_counter()
    cases = []
    for lr, seed, vector in learnt_vectors(out_dir):
        embeds = bundle.encode(texts, concept.placeholder, vector)
        case = {"lr": lr, "seed": seed, "prompts": []}
        for i, (template, expect) in enumerate(rows):
            recorder.reset()
            with torch.no_grad():
                (images,) = generate_rows(bundle, embeds[i : i + 1], [SAMPLES], config)
            attention = (recorder.sums / recorder.calls).float().numpy()
            wanted = {k: v for k, v in appearance.items() if k not in expect}
            readings = [oracle.read(image) for image in images]
            case["prompts"].append(
                {
                    "template": template,
                    "token_slots": masks[i].nonzero().flatten().tolist(),
                    "kept": [r.matches(wanted) for r in readings],
                    "attention": attention.round(6).tolist(),
                }
            )
        cases.append(case)
    into.mkdir(parents=True, exist_ok=True)
    report = {"world": str(world), "grid": str(out_dir), "samples": SAMPLES}
    report["seconds"] = round(time.perf_counter() - started, 1)
    with gzip.open(into / "attention.json.gz", "wt") as f:
        json.dump({**report, "cases": cases}, f, separators=(",", ":"))


def load(folder: Path) -> dict[tuple[float, int], dict]:
    with gzip.open(folder / "attention.json.gz", "rt") as f:
        return {(c["lr"], c["seed"]): c for c in json.load(f)["cases"]}


def token_share(prompt: dict) -> np.ndarray:
    """Per sample, the attention the token's slots get."""
    return np.asarray(prompt["attention"])[:, prompt["token_slots"]].sum(axis=1)


def case_share(case: dict, background: bool) -> float:
    """The token's mean share over the bare prompt's samples, or the background edits'."""
    chosen = case["prompts"][1:] if background else case["prompts"][:1]
    return float(np.mean([token_share(p).mean() for p in chosen]))


def paired(base: list[float], other: list[float]) -> str:
    diff = np.asarray(other) - np.asarray(base)
    p = stats.wilcoxon(diff).pvalue if np.any(diff) else 1.0
    return f"{mean_interval(diff)}, p = {p:.2g}"


def mean_interval(diff: np.ndarray) -> str:
    """The mean with its 95% t interval."""
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    return f"{diff.mean():+.4f} [{diff.mean() - half:+.4f}, {diff.mean() + half:+.4f}]"


def table(runs: list[tuple[str, Path]]) -> str:
    data = {name: load(path) for name, path in runs}
    base_name = runs[0][0]
    keys = sorted(data[base_name])
    lines = [
        "| world | token's share, bare prompt | token's share, background edits "
        f"| bare, against {base_name} | background edits, against {base_name} "
        f"| background minus bare, against {base_name} |",
        "|---|---|---|---|---|---|",
    ]
    base = {b: [case_share(data[base_name][k], b) for k in keys] for b in (False, True)}
    base_drop = [b - a for a, b in zip(base[False], base[True], strict=True)]
    for name, _ in runs:
        if sorted(data[name]) != keys:
            raise SystemExit(f"{name}: its cases are not the first world's")
        own = {b: [case_share(data[name][k], b) for k in keys] for b in (False, True)}
        drop = [b - a for a, b in zip(own[False], own[True], strict=True)]
        cells = [f"{np.mean(own[False]):.4f}", f"{np.mean(own[True]):.4f}"]
        if name == base_name:
            cells += ["", "", ""]
        else:
            cells += [paired(base[False], own[False]), paired(base[True], own[True])]
            cells.append(paired(base_drop, drop))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def kept_table(runs: list[tuple[str, Path]]) -> str:
    """Token's share in kept against lost background-edit samples: pooled over the world's
    cases (Mann-Whitney), and within each (case, edit) that has both, as a mean difference with
    its 95% t interval (the lr and the edit held fixed)."""
    lines = [
        "| world | background-edit samples keeping the concept | token's share, kept "
        "| token's share, lost | Mann-Whitney p | kept minus lost within a case and edit |",
        "|---|---|---|---|---|---|",
    ]
    for name, path in runs:
        shares, kept, within = [], [], []
        for case in load(path).values():
            for prompt in case["prompts"][1:]:
                share, hits = token_share(prompt), np.asarray(prompt["kept"], dtype=bool)
                shares += share.tolist()
                kept += hits.tolist()
                if hits.any() and not hits.all():
                    within.append(share[hits].mean() - share[~hits].mean())
        shares_arr, kept_arr = np.asarray(shares), np.asarray(kept, dtype=bool)
        hit, miss = shares_arr[kept_arr], shares_arr[~kept_arr]
        p = stats.mannwhitneyu(hit, miss).pvalue if len(hit) and len(miss) else float("nan")
        diff = np.asarray(within)
        lines.append(
            f"| {name} | {kept_arr.sum()}/{len(kept_arr)} | {np.mean(hit):.4f} "
            f"| {np.mean(miss):.4f} | {p:.2g} | {mean_interval(diff)} over {len(diff)} |"
        )
    return "\n".join(lines)


def carry(world: Path, out_dir: Path, into: Path) -> None:
    """Per case and background edit, how far each slot's encoder state moves when the learnt
    vector replaces the initializer word's embedding, relative to the slot's state with the word:
    the token's slot moves by what the vector is; the slots after it by what the causal encoder
    carries of it forward."""
    bundle = load_bundle(str(world))
    concept = load_concept(CONCEPT)
    texts = [concept.with_placeholder(t) for t, _ in prompts(concept)[1:]]
    word = bundle.word_embedding(concept.initializer)
    with torch.no_grad():
        with_word = bundle.encode(texts, concept.placeholder, word)
        cases = []
        for lr, seed, vector in learnt_vectors(out_dir):
            moved = bundle.encode(texts, concept.placeholder, vector) - with_word
            relative = moved.norm(dim=-1) / with_word.norm(dim=-1)
            cases.append(
                {"lr": lr, "seed": seed, "relative": relative.double().numpy().round(6).tolist()}
            )
    into.mkdir(parents=True, exist_ok=True)
    with gzip.open(into / "carry.json.gz", "wt") as f:
        json.dump({"world": str(world), "grid": str(out_dir), "cases": cases}, f)


def carried(case: dict) -> float:
    """Mean relative move of the slots after the token (3-15) over the token slot's own, over
    the background edits."""
    relative = np.asarray(case["relative"])
    return float((relative[:, 3:].mean(axis=1) / relative[:, 2]).mean())


def carry_table(runs: list[tuple[str, Path]]) -> str:
    data = {}
    for name, path in runs:
        with gzip.open(path / "carry.json.gz", "rt") as f:
            data[name] = {(c["lr"], c["seed"]): c for c in json.load(f)["cases"]}
    base_name = runs[0][0]
    keys = sorted(data[base_name])
    base = [carried(data[base_name][k]) for k in keys]
    lines = [
        "| world | token slot's relative move | slots after it, over the token slot's "
        f"| against {base_name} |",
        "|---|---|---|---|",
    ]
    for name, _ in runs:
        own = [carried(data[name][k]) for k in keys]
        token = np.mean([np.asarray(data[name][k]["relative"])[:, 2].mean() for k in keys])
        cell = "" if name == base_name else paired(base, own)
        lines.append(f"| {name} | {token:.3f} | {np.mean(own):.3f} | {cell} |")
    return "\n".join(lines)


SLOTS = ("start", "a", "token", "on", "a", "colour", "background")
"""The first seven slots of every background edit ("a {} on a <colour> background ...")."""


def slots_table(runs: list[tuple[str, Path]]) -> str:
    """Per world, the mean share of each of the background edits' first seven slots and of the
    rest (the end token and padding, and "at the <position>" in two edits)."""
    lines = [
        "| world | " + " | ".join(f"{i}: {w}" for i, w in enumerate(SLOTS)) + " | 7-15: rest |",
        "|---|" + "---|" * (len(SLOTS) + 1),
    ]
    for name, path in runs:
        rows = [np.asarray(p["attention"]) for c in load(path).values() for p in c["prompts"][1:]]
        mean = np.concatenate(rows).mean(axis=0)
        cells = [f"{v:.3f}" for v in mean[: len(SLOTS)]] + [f"{mean[len(SLOTS) :].sum():.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def named(items: list[str]) -> list[tuple[str, Path]]:
    return [(item.split("=", 1)[0], Path(item.split("=", 1)[1])) for item in items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    me = sub.add_parser("measure")
    me.add_argument("--world", type=Path, required=True)
    me.add_argument("--out", type=Path, required=True, help="the grid's --ptibench-out folder")
    me.add_argument("--into", type=Path, required=True)
    me.add_argument("--threads", type=int, default=1)
    ca = sub.add_parser("carry")
    ca.add_argument("--world", type=Path, required=True)
    ca.add_argument("--out", type=Path, required=True, help="the grid's --ptibench-out folder")
    ca.add_argument("--into", type=Path, required=True)
    for command in ("table", "kept", "slots", "carry-table"):
        sub.add_parser(command).add_argument("runs", nargs="+", help="NAME=DIR")
    args = parser.parse_args()
    if args.command in ("measure", "carry"):
        if not (args.out / "artifacts").is_dir():
            parser.error(f"{args.out} holds no artifacts/ folder of a grid run")
        if args.command == "carry":
            carry(args.world, args.out, args.into)
            return
        torch.set_num_threads(args.threads)
        measure(args.world, args.out, args.into)
    elif args.command == "table":
        print(table(named(args.runs)))
    elif args.command == "carry-table":
        print(carry_table(named(args.runs)))
    elif args.command == "kept":
        print(kept_table(named(args.runs)))
    else:
        print(slots_table(named(args.runs)))


if __name__ == "__main__":
    main()
