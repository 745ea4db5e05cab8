"""Augmented audio copies in training (Dresvyanskiy et al., sec. 4.2.1): Stage 2's half.

Stage 1 (`vapipe.features.augment`) caches N augmented copies of a training trial's audio
features (polarity inversion, white noise, volume, applied to the waveform before the frozen
backbone). Here a system with ``train.augment_copies: N`` attaches them to its training trials
only (`attach_augmented`), normalises each copy with the statistics fitted on the plain features
(`normalised_copies`), and `CopySampler` gives every training window, in every epoch, one copy
drawn from a seeded generator, as the authors' data loader augments every training window with
one randomly chosen transform. Held-out, validation and test trials are never augmented.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vapipe.data.affwild2 import DatasetError
from vapipe.features.cache import read_extra, read_store, store_path
from vapipe.training.data import Standardizer, TrialData, fill_invalid


def augmented_name(backbone: str, copies: int) -> str:
    """The cache folder of a backbone's `copies` augmented copies (as `vapipe.features.augment`)."""
    return f"{backbone}@augmented{copies}"


def read_copies(feature_root: str | Path, backbone: str, trial: TrialData, copies: int) -> np.ndarray:
    """float32 [copies, n_rows, D]: a trial's augmented copies of one backbone, invalid rows filled
    as the plain features are (`fill_invalid` with the plain store's valid mask)."""
    path = store_path(feature_root, augmented_name(backbone, copies), trial.trial)
    store = read_store(path)
    arrays = [store.features] + [read_extra(path, f"copy{k}") for k in range(1, copies)]
    out = np.stack([fill_invalid(a, trial.valid[backbone]) for a in arrays]).astype(np.float32)
    if out.shape[1:] != trial.inputs[backbone].shape:
        raise DatasetError(
            f"{path}: copies of shape {out.shape[1:]}, the plain features are {trial.inputs[backbone].shape}"
        )
    return out


def attach_augmented(
    trials: list[TrialData], features: list[str], feature_root: str | Path, copies: int
) -> list[TrialData]:
    """The training trials with ``augmented`` {backbone: [copies, T, D]} for each of `features` whose
    copies Stage 1 cached (the audio ones: the workflow makes them for a system's audio backbones)."""
    cached = [name for name in features if (Path(feature_root) / augmented_name(name, copies)).is_dir()]
    if not cached:
        raise DatasetError(
            f"augment_copies is {copies} but {feature_root} holds no augmented copies of {', '.join(features)}"
        )
    for trial in trials:
        trial.augmented = {name: read_copies(feature_root, name, trial, copies) for name in cached}
    return trials


def normalised_copies(standardizer: Standardizer, trial: TrialData) -> dict[str, np.ndarray] | None:
    """{backbone: float16 [copies, n_rows, D + 1]}: each copy as the model sees it (the plain
    features' normalisation, their valid mask appended), or None for a trial without copies."""
    if not trial.augmented:
        return None
    statistics = standardizer.statistics(trial)
    out = {}
    for name, copies in trial.augmented.items():
        centre, scale = statistics[name]
        valid = np.broadcast_to(trial.valid[name][None, :, None], (*copies.shape[:2], 1))
        out[name] = np.concatenate([(copies - centre) / scale, valid], axis=2).astype(np.float16)
    return out


class CopySampler:
    """Gives every training window, each time a batch holds it, one of its trial's augmented copies
    (drawn from a generator seeded once): the window's rows of those features are the copy's.

    Rows are numbered as the trainer's window source numbers them: the trials' rows end to end, in
    order. Without copies (no trial has any) it leaves every batch as it is.
    """

    def __init__(self, trials: list[TrialData], standardizer: Standardizer, seed: int, device: torch.device):
        per_trial = [normalised_copies(standardizer, t) for t in trials]
        self.active = any(c is not None for c in per_trial)
        self.tables: dict[str, torch.Tensor] = {}
        self.rng = np.random.default_rng(seed)
        if not self.active:
            return
        if any(c is None for c in per_trial):
            missing = next(t.trial for t, c in zip(trials, per_trial) if c is None)
            raise ValueError(f"trial {missing}: no augmented copies while other training trials have them")
        for name in per_trial[0]:
            self.tables[name] = torch.from_numpy(np.concatenate([c[name] for c in per_trial], axis=1)).to(device)
        self.n_copies = next(iter(self.tables.values())).shape[0]

    def window_inputs(
        self, inputs: dict[str, torch.Tensor], rows: torch.Tensor, real: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """`inputs` {name: [B, T, D + 1]} with the augmented names' windows taken from one random copy
        each; `rows` [B, T] the windows' rows, `real` [B, T] False at padded steps (zeroed)."""
        if not self.active:
            return inputs
        copy = torch.from_numpy(self.rng.integers(self.n_copies, size=rows.shape[0])).to(rows.device)
        out = dict(inputs)
        for name, table in self.tables.items():
            window = table[copy.unsqueeze(1), rows].float()
            out[name] = window if real is None else window.masked_fill_(~real.unsqueeze(-1), 0.0)
        return out
