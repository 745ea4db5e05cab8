"""A paper's comparisons: paired bootstrap differences of mean CCC over the same videos, and a figure."""

import logging

import pandas as pd

from vapipe.data.manifest import read_manifest
from vapipe.evaluation.comparisons import COLUMNS, comparison_row, heldout
from vapipe.evaluation.report_figures import paired_differences_figure
from vapipe.evaluation.scoring import compare_predictions
from vapipe.logs import workflow_step
from vapipe.specs import BootstrapSpec

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    manifest = read_manifest(sm.input.manifest)
    bootstrap = BootstrapSpec(**sm.params.bootstrap)
    rows = []
    for name, entry in sm.params.comparisons.items():
        a, b = (heldout(pd.read_csv(sm.input[f"{name}.{key}"], sep="\t")) for key in ("a", "b"))
        rows.append(comparison_row(name, entry, compare_predictions(a, b, manifest, bootstrap)))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.to_csv(sm.output.table, sep="\t", index=False, float_format="%.4f")
    logging.getLogger("vapipe").info("\n%s", table.to_string(index=False))
    figure_rows = table.assign(label=table["comparison"] + ": " + table["a"] + " - " + table["b"])
    paired_differences_figure(
        figure_rows, f"{sm.wildcards.paper}: the papers' comparisons on our data", sm.output.figure
    )
