"""One Stage 2 job: train a system on one fold, save it, predict held-out and test trials."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import torch

from vapipe.data.folds import split_fold
from vapipe.training.data import load_trials
from vapipe.training.trainer import SystemTrainer, TrainConfig

log = logging.getLogger(__name__)


def trainer_for(system: dict) -> SystemTrainer:
    """A trainer configured by a config entry under ``systems:``."""
    train = dict(system.get("train", {}))
    known = {k: train.pop(k) for k in list(train) if k in TrainConfig.__dataclass_fields__}
    return SystemTrainer(
        model_name=system["model"],
        model_params=dict(system.get("params", {})),
        window=int(system.get("window", 300)),
        stride=int(system.get("stride", 200)),
        train=TrainConfig(**known, extra=train),
    )


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
) -> dict:
    """Train `system` on `fold`; writes checkpoint, raw predictions and the training history."""
    train, heldout, test = split_fold(folds, fold)
    if skip:
        log.warning("leaving out %d trials skipped during extraction: %s", len(skip), sorted(skip))
        train, heldout, test = ([t for t in trials if t not in skip] for trials in (train, heldout, test))
    features = list(system["features"])
    log.info("%s fold %s: %d train, %d held-out, %d test trials; features %s",
             system_name, fold, len(train), len(heldout), len(test), features)
    train_data = load_trials(manifest, train, features, feature_root)
    heldout_data = load_trials(manifest, heldout, features, feature_root)
    test_data = load_trials(manifest, test, features, feature_root)
    trainer = trainer_for(system)
    history = trainer.fit(train_data, monitor=heldout_data)
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
