"""Loss and held-out CCC per epoch of every run (fold, seed) of one system."""

import json

from vapipe.evaluation.report_figures import learning_curve_table, learning_curves_figure
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    histories = {run: json.loads(open(path).read())["history"] for run, path in sm.input.items()}
    curves = learning_curve_table(histories)
    curves.to_csv(sm.output.table, sep="\t", index=False, float_format="%.4f")
    learning_curves_figure(curves, f"{sm.wildcards.system}: one line per fold and seed", sm.output.figure)
