"""The report's missing-audio sweeps of one fold side by side (one figure, one long table)."""

import pandas as pd

from vapipe.evaluation.sweep import plot_sweep
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    curves = {system: pd.read_csv(path, sep="\t") for system, path in zip(sm.params.systems, sm.input, strict=True)}
    table = pd.concat([t.assign(system=s) for s, t in curves.items()], ignore_index=True)
    table[["system", *[c for c in table.columns if c != "system"]]].to_csv(
        sm.output.table, sep="\t", index=False, float_format="%.4f"
    )
    plot_sweep(curves, sm.output.plot, f"Missing audio, fold {sm.wildcards.fold}")
