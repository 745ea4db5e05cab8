"""Every trial left out by any stage, with the stage and the reason."""

import pandas as pd

from vapipe.logs import workflow_step

with workflow_step(snakemake.log[0]):  # noqa: F821
    tables = [pd.read_csv(path, sep="\t", keep_default_na=False) for path in snakemake.input]  # noqa: F821
    pd.concat(tables, ignore_index=True).sort_values("trial").to_csv(snakemake.output[0], sep="\t", index=False)  # noqa: F821
