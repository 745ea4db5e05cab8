"""Train one system on one fold and predict its held-out and test trials."""

import os

import torch

from vapipe.data.manifest import read_manifest
from vapipe.logs import workflow_step
from vapipe.training.run import skipped_in_shards, train_fold

import pandas as pd

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    torch.set_num_threads(max(1, min(sm.threads, os.cpu_count() or 1)))
    train_fold(
        system_name=sm.wildcards.system,
        system=sm.params.system,
        backbones=sm.params.backbones,
        fold=sm.wildcards.fold,
        manifest=read_manifest(sm.input.manifest),
        folds=pd.read_csv(sm.input.folds, sep="\t"),
        feature_root="results/features",
        checkpoint_path=sm.output.model,
        predictions_path=sm.output.predictions,
        history_path=sm.output.history,
        mask_root="results/masks",
        skip=skipped_in_shards(sm.input.features),
    )
