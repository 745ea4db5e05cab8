"""CCC of a trained system on its held-out trials with a growing share of the audio silenced."""

import os
from pathlib import Path

import pandas as pd

from vapipe.data.folds import split_fold
from vapipe.data.manifest import read_manifest
from vapipe.evaluation.sweep import plot_sweep, silenced_audio_sweep, sweep_summary
from vapipe.logs import workflow_step
from vapipe.training.data import load_trials
from vapipe.training.system import SeedAverage, load_system, read_checkpoint_config

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    folders = [Path(path).parent for path in sm.input.checkpoints]
    checkpoint = read_checkpoint_config(folders[0])
    _, heldout, _ = split_fold(pd.read_csv(sm.input.folds, sep="\t"), sm.wildcards.fold)
    features = checkpoint["spec"]["features"]
    trials = load_trials(read_manifest(sm.input.manifest), heldout, features, sm.params.feature_root)
    audio = [name for name in features if checkpoint["backbones"][name]["input"] != "face"]
    # one feature root per (share, seed): the folder holding the Stage 1 summaries and store folders
    roots = {}
    for summary in sm.input.silenced:
        draw = pd.read_csv(summary, sep="\t")
        roots[(float(draw["share"].iloc[0]), int(draw["seed"].iloc[0]))] = os.path.dirname(summary)
    members = [load_system(folder) for folder in folders]
    system = members[0] if len(members) == 1 else SeedAverage(members)  # several seeds: their average
    draws = silenced_audio_sweep(system, trials, audio, roots, sm.params.smoothing_seconds)
    draws.to_csv(sm.output.draws, sep="\t", index=False, float_format="%.4f")
    table = sweep_summary(draws)
    table.to_csv(sm.output.table, sep="\t", index=False, float_format="%.4f")
    plot_sweep({sm.wildcards.system: table}, sm.output.plot, f"{sm.wildcards.system}, fold {sm.wildcards.fold}")
