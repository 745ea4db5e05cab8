"""A paper's rows as one markdown table."""

import pandas as pd

from vapipe.evaluation.paper_rows import paper_table
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    records = [pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""]).iloc[0].to_dict() for path in sm.input]
    with open(sm.output[0], "w") as handle:
        handle.write(paper_table(sm.params.title, records))
