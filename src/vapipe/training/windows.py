"""Fixed-length windows over sequences, and their gathering from a fold's rows into a batch."""

from __future__ import annotations

import numpy as np
import torch


def window_starts(n_rows: int, window: int, stride: int) -> list[int]:
    """Starts of windows of `window` rows every `stride` rows; the last one ends at the sequence end.

    A sequence shorter than `window` gets one window starting at 0 (the batch pads it).
    """
    if window <= 0 or stride <= 0:
        raise ValueError(f"window ({window}) and stride ({stride}) must be positive")
    if n_rows <= window:
        return [0]
    starts = list(range(0, n_rows - window + 1, stride))
    if starts[-1] + window < n_rows:
        starts.append(n_rows - window)
    return starts


def trial_windows(lengths: list[int], window: int, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(trial index, start, length) of every window of trials of `lengths` rows, trial by trial in
    order; a window is `window` rows long, shorter only when its trial is."""
    trial, start = [], []
    for i, n in enumerate(lengths):
        starts = window_starts(n, window, stride)
        trial += [i] * len(starts)
        start += starts
    trial, start = np.asarray(trial, np.int64), np.asarray(start, np.int64)
    length = np.minimum(window, np.asarray(lengths, np.int64)[trial] - start) if len(trial) else start
    return trial, start, length


def stack_rows(arrays: list[np.ndarray], device: torch.device) -> tuple[torch.Tensor, np.ndarray]:
    """(table [N, D] on `device`, first row of each array in it), dtype kept.

    On the CPU, arrays that are row views of one C-contiguous array (a fold as
    `vapipe.training.data.load_groups` loads it) give that array itself, not a copy; otherwise
    (another device, or arrays of their own) they are copied one by one into a new table."""
    owner = arrays[0]
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    if device.type == "cpu" and owner.ndim == 2 and owner.flags.c_contiguous:
        offsets = [_row_in(a, owner) for a in arrays]
        if all(o is not None for o in offsets):
            return torch.from_numpy(owner), np.asarray(offsets, np.int64)
    lengths = np.array([len(a) for a in arrays], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    dtype = np.result_type(*arrays)
    table = torch.empty((int(lengths.sum()), arrays[0].shape[1]), dtype=TORCH_DTYPES[dtype], device=device)
    for a, o in zip(arrays, offsets):
        table[o : o + len(a)].copy_(torch.from_numpy(np.ascontiguousarray(a, dtype=dtype)))
    return table, offsets


TORCH_DTYPES = {
    np.dtype(np.float16): torch.float16,
    np.dtype(np.float32): torch.float32,
    np.dtype(np.float64): torch.float64,
}


def _row_in(array: np.ndarray, owner: np.ndarray) -> int | None:
    """The row of `owner` where `array` starts, if it is a contiguous run of whole rows of it."""
    if (
        array.dtype != owner.dtype
        or array.ndim != 2
        or array.shape[1] != owner.shape[1]
        or not array.flags.c_contiguous
    ):
        return None
    offset = array.ctypes.data - owner.ctypes.data
    row, rest = divmod(offset, owner.strides[0])
    return row if rest == 0 and 0 <= row and row + len(array) <= len(owner) else None


def gather_windows(
    features: torch.Tensor,
    feature_rows: torch.Tensor,
    valid: torch.Tensor,
    rows: torch.Tensor,
    real: torch.Tensor,
    centre: torch.Tensor,
    scale: torch.Tensor,
    out: torch.Tensor,
    staging: torch.Tensor | None = None,
) -> torch.Tensor:
    """Normalised windows `out` [B, T, D + 1] (float32) gathered where the features live.

    `feature_rows` [B, T] index the rows of `features` [N, D] (any float dtype: a fold stays float16
    and is normalised here, per batch), `rows` [B, T] those of `valid` [M]; `real` [B, T] is False
    at padding. Step t of window b is (features[feature_rows[b, t]] - centre[b]) / scale[b] in
    float32 (centre, scale [B, D]), the valid flag appended as a last channel, and zero at padding.
    `staging` (flat, features' dtype) receives the gathered rows, so that no batch allocates.
    """
    batch, length = rows.shape
    dim = features.shape[1]
    flat = feature_rows.reshape(-1)
    if staging is None:
        picked = features.index_select(0, flat)
    else:
        picked = torch.index_select(features, 0, flat, out=staging[: flat.numel() * dim].view(-1, dim))
    body = out[..., :dim]
    body.copy_(picked.view(batch, length, dim))
    body.sub_(centre.unsqueeze(1)).div_(scale.unsqueeze(1))
    out[..., dim] = valid[rows]
    out.masked_fill_(~real.unsqueeze(-1), 0.0)
    return out
