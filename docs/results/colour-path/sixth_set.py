"""A sixth set of held-out phrasings, written before any world with a last-state colour path was
trained or read, and before any further caption language was tried against the earlier sets.
Its words are banned from training captions and from the noise-word pool."""

SIXTH_PHRASINGS = (
    "the {shape} is {colour} and {size}, the rest is {background}, put it {position}",
    "{background} page, {position} half, {size} {colour} {shape}",
    "icon: {size} {colour} {shape} at {position} over {background} paper",
    "a {size} {shape} filled with {colour}, sitting {position} in a {background} room",
    "set against {background}, a {colour} {shape} ({size}) on the {position}",
    "{position} placement; {background} everywhere; {size} {shape}, {colour} tone",
)

SIXTH_CONSTRUCTIONS = (
    r"\b(rest|put|page|half|icon|paper|filled|room|set|tone|placement|everywhere)\b",
)
"""Words of SIXTH_PHRASINGS no training caption may use."""
