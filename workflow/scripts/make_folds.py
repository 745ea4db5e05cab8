"""Official split, K folds over train+validation and K folds within Train_Set, grouped by raw video."""

from vapipe.data.folds import make_folds
from vapipe.data.manifest import read_manifest
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    spec = sm.params.folds
    folds = make_folds(read_manifest(sm.input[0]), spec["k"], spec["seed"], spec["train_k"])
    folds.to_csv(sm.output[0], sep="\t", index=False)
