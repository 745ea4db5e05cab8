"""CCC of a trained system on its held-out trials with a growing share of audio frames zeroed."""

import pandas as pd
import torch

from vapipe.data.folds import split_fold
from vapipe.data.manifest import read_manifest
from vapipe.evaluation.sweep import missing_audio_sweep, plot_sweep
from vapipe.logs import workflow_step
from vapipe.training.data import load_trials
from vapipe.training.run import load_checkpoint_system

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    state = torch.load(sm.input.model, map_location="cpu", weights_only=False)
    _, heldout, _ = split_fold(pd.read_csv(sm.input.folds, sep="\t"), sm.wildcards.fold)
    features = list(state["config"]["features"])
    trials = load_trials(read_manifest(sm.input.manifest), heldout, features, "results/features")
    audio = [name for name in features if state["backbones"][name]["input"] != "face"]
    table = missing_audio_sweep(load_checkpoint_system(state), trials, audio)
    table.to_csv(sm.output.table, sep="\t", index=False, float_format="%.4f")
    plot_sweep(table, sm.output.plot, f"{sm.wildcards.system}, fold {sm.wildcards.fold}")
