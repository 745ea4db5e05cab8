"""Temporal and fusion models, built by registry name from a system's config entry."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

MODELS: dict[str, Callable[..., torch.nn.Module]] = {}


def register_model(name: str):
    """Class decorator: make a model constructible by `create_model(name, ...)`.

    The contract: ``__init__(input_dims, **params)`` and ``forward(inputs, padding_mask=None)``,
    {name: [B, T, D]} -> [B, T, 2] (or (va, aux)); `padding_mask` [B, T] is True at real steps, and a
    window's real outputs must not depend on its padding (tests/test_system_contract.py)."""

    def add(cls):
        if "padding_mask" not in inspect.signature(cls.forward).parameters:
            raise TypeError(f"model '{name}': forward must take padding_mask (True at real steps; None: all real)")
        MODELS[name] = cls
        return cls

    return add


def create_model(name: str, input_dims: dict[str, int], **params) -> torch.nn.Module:
    """Build model `name` for inputs {modality name: feature dim}, with its config `params`."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](input_dims=input_dims, **params)


# The modules register their models on import.
from vapipe.models import dasp, dresvyanskiy, iaca, mstcn, sage, tcn  # noqa: E402,F401
