"""A seed ensemble's raw predictions of one fold: the frame-wise mean of its seeds' models."""

import pandas as pd

from vapipe.evaluation.seeds import average_seed_predictions
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    tables = {name: pd.read_csv(path, sep="\t") for name, path in zip(sm.params.members, sm.input, strict=True)}
    average_seed_predictions(tables).to_csv(sm.output[0], sep="\t", index=False, float_format="%.6f")
