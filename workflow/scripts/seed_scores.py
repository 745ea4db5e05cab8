"""Mean and standard deviation over seeds of a system's CCCs, fold by fold."""

import logging

import pandas as pd

from vapipe.evaluation.seeds import seed_summary
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    metrics = {seed: pd.read_csv(path, sep="\t") for seed, path in zip(sm.params.seeds, sm.input, strict=True)}
    table = seed_summary(metrics)
    table.to_csv(sm.output[0], sep="\t", index=False, float_format="%.4f")
    logging.getLogger("vapipe").info("\n%s", table.to_string(index=False))
