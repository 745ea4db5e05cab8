"""Every paper row's mean CCC with its interval over videos, beside the paper's number."""

import pandas as pd

from vapipe.evaluation.report_figures import forest_plot, forest_table
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    records = [
        pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""]).iloc[0].to_dict() for path in sm.input
    ]
    table = forest_table(records)
    table.to_csv(sm.output.table, sep="\t", index=False, float_format="%.4f")
    forest_plot(table, "Ours (95% interval over videos) and the paper's number", sm.output.figure)
