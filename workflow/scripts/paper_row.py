"""One paper row: the paper's numbers beside ours, and how ours were made."""

import pandas as pd

from vapipe.evaluation.paper_rows import row_record
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    metrics = pd.read_csv(sm.input.metrics, sep="\t")
    record = row_record(sm.wildcards.paper, sm.wildcards.row, sm.params.row, sm.config, metrics)
    pd.DataFrame([record]).to_csv(sm.output[0], sep="\t", index=False, float_format="%.4f")
