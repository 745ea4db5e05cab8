"""Padding masks: which steps of a batch of right-padded windows are real.

Every model's ``forward(inputs, padding_mask=None)`` takes a bool [B, T] mask, True at real steps
(None: every step is real). The trainer pads windows shorter than the batch's at their end, so a
mask is a prefix of real steps per element. Models use it so that each element's outputs on its
real steps are the ones it gets alone, unpadded: convolutions see zeros past the real steps (their
own zero padding), softmaxes over time leave padded keys out, GRUs stop at the last real step, and
anything pooled over time divides by the real length.
"""

from __future__ import annotations

import torch
from torch import nn


def real_steps(padding_mask: torch.Tensor | None, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The checked bool [B, T] mask of real steps, or None when every step is real.

    None for an all-real mask, so that unpadded batches run exactly the code they ran without a mask.
    """
    if padding_mask is None:
        return None
    shapes = {tuple(x.shape[:2]) for x in inputs.values()}
    if len(shapes) != 1 or tuple(padding_mask.shape) != shapes.pop():
        raise ValueError(
            f"padding_mask of shape {tuple(padding_mask.shape)} does not match the inputs' [B, T] "
            f"{sorted({tuple(x.shape[:2]) for x in inputs.values()})}"
        )
    mask = padding_mask.bool()
    if mask.all():
        return None
    if not mask[:, 0].all():
        raise ValueError("padding_mask: every window needs at least one real step, at its start")
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        raise ValueError("padding_mask: padding must be at the end of each window (right padding)")
    return mask


def zero_padding(inputs: dict[str, torch.Tensor], mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The inputs with their padded steps set to zero (whatever they held: nothing to overflow or leak)."""
    if mask is None:
        return inputs
    return {name: x.masked_fill(~mask[..., None], 0.0) for name, x in inputs.items()}


def lengths(mask: torch.Tensor) -> torch.Tensor:
    """[B] number of real steps of each element of a [B, T] mask."""
    return mask.sum(dim=1)


def run_gru(gru: nn.GRU, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """A batch-first GRU's [B, T, H] outputs; with a mask the sequence is packed so that each element
    stops (and a backward direction starts) at its last real step. Padded outputs are zero."""
    if mask is None:
        return gru(x)[0]
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths(mask).cpu(), batch_first=True, enforce_sorted=False)
    return nn.utils.rnn.pad_packed_sequence(gru(packed)[0], batch_first=True, total_length=x.shape[1])[0]


def masked_batch_norm(norm: nn.BatchNorm1d, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``norm`` on [B, C, T]; in training mode with a mask, the batch statistics (and the running ones
    they update) are over the real steps only. Evaluation uses the running statistics per step."""
    if mask is None or not norm.training:
        return norm(x)
    dtype, x = x.dtype, x.float()  # statistics in full precision, also under autocast
    real = mask[:, None, :].to(x.dtype)  # [B, 1, T]
    count = real.sum()
    mean = (x * real).sum(dim=(0, 2)) / count
    var = (((x - mean[None, :, None]) ** 2) * real).sum(dim=(0, 2)) / count
    if norm.track_running_stats and norm.running_mean is not None:
        with torch.no_grad():
            norm.num_batches_tracked += 1
            momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
            unbiased = var * count / (count - 1).clamp(min=1)
            norm.running_mean.mul_(1 - momentum).add_(momentum * mean)
            norm.running_var.mul_(1 - momentum).add_(momentum * unbiased)
    out = (x - mean[None, :, None]) / torch.sqrt(var[None, :, None] + norm.eps)
    if norm.affine:
        out = out * norm.weight[None, :, None] + norm.bias[None, :, None]
    return out.to(dtype)
