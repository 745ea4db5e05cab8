"""One Stage 2 job: train a system on one fold, save it, predict held-out and test trials."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from vapipe.data.folds import split_fold
from vapipe.specs import SystemSpec
from vapipe.training.augmented import attach_augmented
from vapipe.training.data import load_groups, load_trials
from vapipe.training.system import create_system, system_class

log = logging.getLogger(__name__)


def inner_validation_split(
    trials: list[str], manifest: pd.DataFrame, fraction: float, seed: int
) -> tuple[list[str], list[str]]:
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
    system: SystemSpec,
    fold: str,
    manifest: pd.DataFrame,
    folds: pd.DataFrame,
    feature_root: str | Path,
    checkpoint_dir: str | Path,
    predictions_path: str | Path,
    history_path: str | Path,
    metadata: dict | None = None,
    skip: set[str] = frozenset(),
    mask_root: str | Path | None = None,
) -> dict:
    """Train `system` on `fold`; writes the checkpoint folder, raw predictions and the history.

    With early stopping (or a kind that selects on validation, KELM), part of the training videos
    is held out as validation (`inner_validation_split`); the held-out fold only ever monitors and
    scores. `metadata` (backbone specs, post-processing) goes into the checkpoint's config.json.
    `mask_root` (voice activity and mouth-open stores) is needed when training on speech only.
    """
    train, heldout, test = split_fold(folds, fold)
    if skip:
        log.warning("leaving out %d trials skipped during extraction: %s", len(skip), sorted(skip))
        train, heldout, test = ([t for t in trials if t not in skip] for trials in (train, heldout, test))
    features = list(system.features)
    log.info(
        "%s fold %s: %d train, %d held-out, %d test trials; features %s",
        system_name,
        fold,
        len(train),
        len(heldout),
        len(test),
        features,
    )
    settings = system.train
    inner: list[str] = []
    if settings.early_stopping_patience or system_class(system.model).needs_validation:
        train, inner = inner_validation_split(train, manifest, settings.validation_fraction, settings.seed)
        log.info("validation (early stopping / selection): %d trials of the training videos", len(inner))
    masks = mask_root if settings.train_on == "speech" else None
    # One array per feature holds the fold (float16 for a neural system); test trials come after the fit.
    dtype = system_class(system.model).feature_dtype
    groups = {"train": train, "inner": inner, "heldout": heldout}
    loaded = load_groups(manifest, groups, features, feature_root, masks, settings.speech, ("train",), dtype)
    train_data, inner_data, heldout_data = loaded["train"], loaded["inner"], loaded["heldout"]
    if settings.augment_copies:  # training trials only: validation and held-out trials stay plain
        attach_augmented(train_data, features, feature_root, settings.augment_copies)
    del loaded
    trained = create_system(system).fit(train_data, monitor=heldout_data, validation=inner_data or None)
    scores = trained.score(heldout_data)
    log.info(
        "%s fold %s: held-out CCC valence %.4f arousal %.4f mean %.4f",
        system_name,
        fold,
        scores["valence"],
        scores["arousal"],
        scores["mean"],
    )
    trained.save(checkpoint_dir, {"system": system_name, "fold": fold, **(metadata or {})})
    tables = [trained.predictions_table(heldout_data, "heldout")]
    del train_data, inner_data, heldout_data  # the fold's arrays go with the last of them
    for trial in test:  # one test trial in memory at a time
        test_data = load_trials(manifest, [trial], features, feature_root, dtype=dtype)
        tables.append(trained.predictions_table(test_data, "test"))
    pd.concat(tables, ignore_index=True).to_csv(predictions_path, sep="\t", index=False, float_format="%.6f")
    Path(history_path).write_text(json.dumps({"history": trained.history_, "heldout_raw": scores}, indent=1))
    return scores
