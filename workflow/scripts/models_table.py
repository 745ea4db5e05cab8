"""A markdown table of the listed systems' scores."""

from pathlib import Path

import pandas as pd

from vapipe.evaluation.tables import markdown_page_html, models_table
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    table = sm.params.table
    metrics = {name: pd.read_csv(sm.input[f"{name}.metrics"], sep="\t") for name in table["systems"]}
    seeds = {
        name: pd.read_csv(sm.input[f"{name}.seeds"], sep="\t")
        for name in table["systems"]
        if f"{name}.seeds" in sm.input.keys()
    }
    text = models_table(metrics, sm.config["systems"], table["note"], sm.config["postprocess"], seeds)
    Path(sm.output.markdown).write_text(text)
    Path(sm.output.page).write_text(markdown_page_html(text))
