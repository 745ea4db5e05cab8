"""One Stage 2 job: train a system on one fold, save it, predict held-out and test trials."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vapipe.data.folds import split_fold
from vapipe.training.data import load_trials
from vapipe.training.kelm_system import KELMSystem
from vapipe.training.trainer import SystemTrainer, TrainConfig

log = logging.getLogger(__name__)


NON_NEURAL_MODELS = ("kelm",)


def train_config(system: dict) -> TrainConfig:
    """The `train:` settings of a system (unknown keys kept in `extra`)."""
    train = dict(system.get("train", {}))
    known = {k: train.pop(k) for k in list(train) if k in TrainConfig.__dataclass_fields__}
    return TrainConfig(**known, extra=train)


def trainer_for(system: dict) -> SystemTrainer | KELMSystem:
    """A trainer configured by a config entry under ``systems:``."""
    if system["model"] == "kelm":
        return KELMSystem(dict(system.get("params", {})))
    return SystemTrainer(
        model_name=system["model"],
        model_params=dict(system.get("params", {})),
        window=int(system.get("window", 300)),
        stride=int(system.get("stride", 200)),
        train=train_config(system),
    )


def load_checkpoint_system(state: dict, device: str = "cpu") -> SystemTrainer | KELMSystem:
    """A trained system from its checkpoint, ready to predict."""
    if state["model_name"] == "kelm":
        return KELMSystem.from_checkpoint(state, device)
    return SystemTrainer.from_checkpoint(state, device)


def inner_validation_split(trials: list[str], manifest: pd.DataFrame, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(training, validation) trials: `fraction` of the training videos (at least one, never all),
    drawn with `seed`, so early stopping and model selection never see the held-out fold."""
    video_of = manifest.set_index("trial")["video"]
    videos = sorted({video_of[t] for t in trials})
    if len(videos) < 2:
        raise ValueError("early stopping / model selection needs at least two training videos")
    n = min(len(videos) - 1, max(1, round(fraction * len(videos))))
    chosen = set(np.random.default_rng(seed).permutation(videos)[:n])
    return [t for t in trials if video_of[t] not in chosen], [t for t in trials if video_of[t] in chosen]


def skipped_in_shards(summaries: list[str | Path]) -> set[str]:
    """Trials an extraction shard skipped (``on_bad_trial: skip``), read from its summary tables."""
    skipped = set()
    for path in summaries:
        table = pd.read_csv(path, sep="\t", keep_default_na=False)
        if "status" in table:
            skipped |= set(table.loc[table["status"] == "skipped", "trial"])
    return skipped


def train_fold(
    system_name: str,
    system: dict,
    backbones: dict,
    fold: str,
    manifest: pd.DataFrame,
    folds: pd.DataFrame,
    feature_root: str | Path,
    checkpoint_path: str | Path,
    predictions_path: str | Path,
    history_path: str | Path,
    skip: set[str] = frozenset(),
    mask_root: str | Path | None = None,
) -> dict:
    """Train `system` on `fold`; writes checkpoint, raw predictions and the training history.

    With early stopping (or a KELM's model selection), part of the training videos is held out
    as validation (`inner_validation_split`); the held-out fold only ever monitors and scores.
    `mask_root` (voice activity and mouth-open stores) is needed when training on speech only.
    """
    train, heldout, test = split_fold(folds, fold)
    if skip:
        log.warning("leaving out %d trials skipped during extraction: %s", len(skip), sorted(skip))
        train, heldout, test = ([t for t in trials if t not in skip] for trials in (train, heldout, test))
    features = list(system["features"])
    log.info("%s fold %s: %d train, %d held-out, %d test trials; features %s",
             system_name, fold, len(train), len(heldout), len(test), features)
    config = train_config(system)
    inner: list[str] = []
    if config.early_stopping_patience or system["model"] in NON_NEURAL_MODELS:
        train, inner = inner_validation_split(train, manifest, config.validation_fraction, config.seed)
        log.info("validation (early stopping / selection): %d trials of the training videos", len(inner))
    masks = mask_root if config.train_on == "speech" else None
    train_data = load_trials(manifest, train, features, feature_root, masks)
    inner_data = load_trials(manifest, inner, features, feature_root)
    heldout_data = load_trials(manifest, heldout, features, feature_root)
    test_data = load_trials(manifest, test, features, feature_root)
    trainer = trainer_for(system)
    history = trainer.fit(train_data, monitor=heldout_data, validation=inner_data or None)
    scores = trainer.score(heldout_data)
    log.info("%s fold %s: held-out CCC valence %.4f arousal %.4f mean %.4f", system_name, fold,
             scores["valence"], scores["arousal"], scores["mean"])
    torch.save(
        {**trainer.state_dict(), "system": system_name, "fold": fold, "config": system, "backbones": backbones},
        checkpoint_path,
    )
    predictions = pd.concat(
        [trainer.predictions_table(heldout_data, "heldout")]
        + ([trainer.predictions_table(test_data, "test")] if test_data else []),
        ignore_index=True,
    )
    predictions.to_csv(predictions_path, sep="\t", index=False, float_format="%.6f")
    Path(history_path).write_text(json.dumps({"history": history, "heldout_raw": scores}, indent=1))
    return scores
