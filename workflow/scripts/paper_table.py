"""A paper's rows as one markdown table."""

from pathlib import Path

import pandas as pd

from vapipe.evaluation.paper_rows import paper_table
from vapipe.evaluation.tables import markdown_page_html
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    records = [
        pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""]).iloc[0].to_dict() for path in sm.input
    ]
    text = paper_table(sm.params.title, records)
    Path(sm.output.markdown).write_text(text)
    Path(sm.output.page).write_text(markdown_page_html(text))
