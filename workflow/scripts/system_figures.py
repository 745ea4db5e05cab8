"""Traces of a few held-out trials and CCC per trial of one system."""

import pandas as pd

from vapipe.data.manifest import read_manifest
from vapipe.evaluation.figures import ccc_per_trial, per_trial_figure, reported_heldout, trace_figure
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    manifest = read_manifest(sm.input.manifest)
    frames = reported_heldout(
        {f: pd.read_csv(p, sep="\t") for f, p in zip(sm.params.folds, sm.input.frames, strict=True)}
    )
    per_trial = ccc_per_trial(frames, manifest)
    per_trial.to_csv(sm.output.table, sep="\t", index=False, float_format="%.4f")
    system = sm.wildcards.system
    trace_figure(
        frames,
        manifest,
        per_trial,
        sm.params.trials,
        f"{system}: best, median and worst held-out trials",
        sm.output.traces,
    )
    per_trial_figure(per_trial, f"{system}: CCC per held-out trial", sm.output.per_trial)
