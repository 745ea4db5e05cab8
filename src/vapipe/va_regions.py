"""DASP's 3 x 3 grid of valence-arousal regions (paper 004, sec. 3.3), shared by Stage 1 (the text
prototypes, `vapipe.features.text_prototypes`) and Stage 2 (the soft labels, `vapipe.models.dasp`)."""

from __future__ import annotations

import numpy as np

GRID_VALUES = (-0.66, 0.0, 0.66)
"""Grid centres on each axis (DASP sec. 4.4: the 'localised' grid that beat +-0.60 / sigma 0.60)."""

REGIONS: tuple[tuple[float, float, str], ...] = (
    (-0.66, -0.66, "depressed"),
    (-0.66, 0.0, "uncomfortable"),  # named in the paper (sec. 3.3)
    (-0.66, 0.66, "distressed"),
    (0.0, -0.66, "low-energy"),  # named in the paper
    (0.0, 0.0, "neutral"),
    (0.0, 0.66, "highly-aroused"),  # named in the paper
    (0.66, -0.66, "relaxed"),
    (0.66, 0.0, "pleased"),
    (0.66, 0.66, "excited"),
)
"""(valence centre, arousal centre, description) per region, in prototype row order."""


def region_centres() -> np.ndarray:
    """[9, 2] (valence, arousal) centres of the regions, in prototype row order."""
    return np.array([(v, a) for v, a, _ in REGIONS], dtype=np.float32)


def region_descriptions() -> list[str]:
    """The nine region descriptions, in prototype row order."""
    return [text for _, _, text in REGIONS]
