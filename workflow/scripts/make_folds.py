"""Official split plus K folds grouped by raw video."""

from vapipe.data.folds import make_folds
from vapipe.data.manifest import read_manifest
from vapipe.logs import workflow_step

with workflow_step(snakemake.log[0]):  # noqa: F821
    folds_config = snakemake.params.folds  # noqa: F821
    folds = make_folds(read_manifest(snakemake.input[0]), folds_config["k"], folds_config["seed"])  # noqa: F821
    folds.to_csv(snakemake.output[0], sep="\t", index=False)  # noqa: F821
