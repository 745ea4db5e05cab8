"""Losses on [B, T, 2] predictions with a frame mask (-5 frames and padding excluded)."""

from __future__ import annotations

import torch


def ccc_torch(prediction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Differentiable CCC of two 1-D tensors (population moments)."""
    mx, my = prediction.mean(), truth.mean()
    cov = ((prediction - mx) * (truth - my)).mean()
    var_x = ((prediction - mx) ** 2).mean()
    var_y = ((truth - my) ** 2).mean()
    return 2 * cov / (var_x + var_y + (mx - my) ** 2 + 1e-8)


def ccc_loss(prediction: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over valence and arousal of 1 - CCC, over the batch's masked-in frames."""
    keep = mask.bool()
    return sum(1 - ccc_torch(prediction[..., i][keep], truth[..., i][keep]) for i in range(2))
