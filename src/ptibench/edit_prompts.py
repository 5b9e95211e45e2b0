"""The default edit prompts for a concept of real photos (used when concept.json gives none).

DreamBench-style (Ruiz et al., DreamBooth, 2023): recontextualisation, property change,
accessorisation and style, 25 prompts; "{}" stands for the placeholder (for CLIP-T, the class
noun). No prompt has an `expect`: there is no oracle for real photos, so editability is CLIP-T
only (edit_success exists on the tiny world alone).
"""

from __future__ import annotations

RECONTEXTUALISATION = (
    "a {} in the jungle",
    "a {} in the snow",
    "a {} on the beach",
    "a {} on a cobblestone street",
    "a {} on top of pink fabric",
    "a {} on top of a wooden floor",
    "a {} with a city in the background",
    "a {} with a mountain in the background",
    "a {} with the Eiffel Tower in the background",
    "a {} floating on top of water",
)
PROPERTY_CHANGE = (
    "a red {}",
    "a purple {}",
    "a shiny {}",
    "a wet {}",
    "a cube shaped {}",
)
ACCESSORISATION = (
    "a {} wearing a red hat",
    "a {} wearing a santa hat",
    "a {} wearing sunglasses",
    "a {} with a rainbow scarf",
    "a {} next to a cup of coffee",
)
STYLE = (
    "a painting of a {} in the style of Van Gogh",
    "a watercolor painting of a {}",
    "a pencil sketch of a {}",
    "a {} in the style of a cartoon",
    "a low-poly 3D render of a {}",
)

DEFAULT_EDIT_PROMPTS: tuple[str, ...] = (
    RECONTEXTUALISATION + PROPERTY_CHANGE + ACCESSORISATION + STYLE
)
CATEGORIES = {
    "recontextualisation": RECONTEXTUALISATION,
    "property_change": PROPERTY_CHANGE,
    "accessorisation": ACCESSORISATION,
    "style": STYLE,
}
