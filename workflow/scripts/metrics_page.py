"""Every system's and fused system's metrics on one HTML page for the report."""

from pathlib import Path

import pandas as pd

from vapipe.evaluation.tables import metrics_page
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    metrics = {name: pd.read_csv(path, sep="\t") for name, path in zip(sm.params.names, sm.input, strict=True)}
    Path(sm.output[0]).write_text(metrics_page(metrics))
