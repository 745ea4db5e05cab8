"""Checks shared by the model tests: a model learns a function of both of its inputs."""

from __future__ import annotations

import torch


def learns_a_function_of(
    model: torch.nn.Module, x: dict[str, torch.Tensor], visual: str, audio: str, steps: int = 30, lr: float = 1e-2
) -> tuple[float, float]:
    """(final MSE, target variance) after `steps` Adam steps on tanh of sums/differences of both inputs."""
    face, voice = x[visual], x[audio]
    target = torch.tanh(torch.stack([face[..., 0] + voice[..., 0], face[..., 1] - voice[..., 1]], dim=-1))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item(), target.var().item()
