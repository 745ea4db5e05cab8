"""Every trial left out by any stage, with the stage and the reason."""

import pandas as pd

from vapipe.logs import workflow_step

with workflow_step(snakemake.log[0]):  # noqa: F821
    tables = [pd.read_csv(snakemake.input.manifest, sep="\t", keep_default_na=False)]  # noqa: F821
    for path in snakemake.input.shards:  # noqa: F821
        shard = pd.read_csv(path, sep="\t", keep_default_na=False)
        if "status" in shard and (shard["status"] == "skipped").any():
            stage = "extraction:" + path.split("/")[2]  # results/features/<backbone>/shards/<i>.tsv
            tables.append(shard.loc[shard["status"] == "skipped", ["trial", "reason"]].assign(stage=stage))
    pd.concat(tables, ignore_index=True).sort_values("trial").to_csv(snakemake.output[0], sep="\t", index=False)  # noqa: F821
