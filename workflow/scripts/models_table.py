"""A markdown table of the listed systems' scores."""

from pathlib import Path

import pandas as pd

from vapipe.evaluation.tables import models_table
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    metrics = {name: pd.read_csv(path, sep="\t") for name, path in zip(sm.params.systems, sm.input)}
    Path(sm.output[0]).write_text(models_table(metrics, sm.config["systems"], sm.params.note))
