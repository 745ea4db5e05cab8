"""vapipe: a two-stage feature-cache pipeline for ABAW valence-arousal estimation.

Stage 1 (``vapipe.features``) caches per-frame embeddings of frozen backbones in Zarr stores;
stage 2 (``vapipe.models``, ``vapipe.training``, ``vapipe.post``) trains cheap temporal models on
them and turns their outputs into an ABAW submission (``vapipe.submission``).
"""

__version__ = "0.1.0"

INVALID_LABEL = -5.0
"""Aff-Wild2 marks an unannotated frame with -5 in both columns."""

TARGETS = ("valence", "arousal")
