"""A text encoder that attends both ways, for worlds whose encoder config says so.

A world's `text_encoder/config.json` with `"attend_both_ways": true` is read with a full
attention mask instead of CLIP's causal one; every other CLIP text tower in the process (the
world's own CLIP metric among them) stays causal. Installed by `attend_both_ways()`, or in a
pytest run (the grid, its xdist workers too) by

    PYTHONPATH=docs/results/bidirectional PYTEST_PLUGINS=both_ways pytest benchmark/ ...

(A flagged world's encoder attends both ways in `-n 2` workers with the plugin and one way
without it: checked with a throwaway test; the grid itself has not run on these worlds.)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers.models.clip import modeling_clip

FLAG = "attend_both_ways"
"""The text encoder config's key that asks for the full mask."""

_causal_mask = modeling_clip.create_causal_mask


def full_or_causal_mask(config, inputs_embeds, attention_mask=None, **kwargs):
    """For a flagged config an additive (B, 1, T, T) mask that hides only the padding the caller
    marks (none, as the pipelines call the encoder); given to SDPA instead of the causal mask, it
    also turns off SDPA's causal flag. Otherwise CLIP's own causal mask."""
    if not getattr(config, FLAG, False):
        return _causal_mask(
            config=config, inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs
        )
    b, t = inputs_embeds.shape[:2]
    mask = inputs_embeds.new_zeros(b, 1, t, t)
    if attention_mask is not None:
        hidden = ~attention_mask.bool()[:, None, None, :]
        mask = mask.masked_fill(hidden, torch.finfo(mask.dtype).min)
    return mask


def attend_both_ways() -> None:
    """Flagged CLIP text encoders in this process attend both ways from now on."""
    modeling_clip.create_causal_mask = full_or_causal_mask


def flag_world(world: Path) -> None:
    """Mark `world`'s text encoder as one that attends both ways."""
    path = world / "pipeline" / "text_encoder" / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, FLAG: True}, indent=2) + "\n")


def first_state_sees_last_word(text_encoder, tokenizer) -> bool:
    """Whether changing a prompt's last word changes its first word's state."""
    ids = tokenizer(
        ["a black ring", "a black star"],
        padding="max_length",
        max_length=tokenizer.model_max_length,
        return_tensors="pt",
    ).input_ids
    with torch.no_grad():
        states = text_encoder(ids)[0]
    return not torch.allclose(states[0, 1], states[1, 1])


def pytest_configure(config) -> None:
    """As a pytest plugin: install the mask in every process of the run."""
    attend_both_ways()
