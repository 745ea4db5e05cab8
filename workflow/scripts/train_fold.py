"""Train one system on one fold, save its checkpoint folder, predict its held-out and test trials."""

import os
from pathlib import Path

import pandas as pd
import torch

from vapipe.data.manifest import read_manifest
from vapipe.logs import workflow_step
from vapipe.specs import SystemSpec
from vapipe.training.run import skipped_in_shards, train_fold

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    torch.set_num_threads(max(1, min(sm.threads, os.cpu_count() or 1)))
    train_fold(
        system_name=sm.wildcards.system,
        system=SystemSpec.from_dict(sm.params.system, f"systems.{sm.wildcards.system}"),
        fold=sm.wildcards.fold,
        manifest=read_manifest(sm.input.manifest),
        folds=pd.read_csv(sm.input.folds, sep="\t"),
        feature_root=sm.params.feature_root,
        checkpoint_dir=Path(sm.output.config).parent,
        predictions_path=sm.output.predictions,
        history_path=sm.output.history,
        metadata=sm.params.metadata,
        mask_root=sm.params.mask_root,
        skip=skipped_in_shards(sm.input.features),
    )
