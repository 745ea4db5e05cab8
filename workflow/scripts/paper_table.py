"""A paper's rows as one markdown table."""

from pathlib import Path

import pandas as pd

from vapipe.evaluation.paper_rows import paper_table, printed_record
from vapipe.evaluation.tables import markdown_page_html
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    records = [
        pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""]).iloc[0].to_dict() for path in sm.input.rows
    ]
    comparisons = pd.read_csv(sm.input.comparisons[0], sep="\t") if sm.input.comparisons else None
    printed = [printed_record(sm.wildcards.paper, row_id, row) for row_id, row in sm.params.printed.items()]
    text = paper_table(sm.params.title, records, printed, sm.params.protocol, comparisons)
    Path(sm.output.markdown).write_text(text)
    Path(sm.output.page).write_text(markdown_page_html(text))
