"""CCC per fold and pooled out-of-fold over the K folds, each with its interval over videos."""

import logging

import pandas as pd

from vapipe.data.manifest import read_manifest
from vapipe.evaluation.scoring import score_folds
from vapipe.logs import workflow_step
from vapipe.specs import BootstrapSpec

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    frames = {fold: pd.read_csv(path, sep="\t") for fold, path in zip(sm.params.folds, sm.input.frames, strict=True)}
    table = score_folds(frames, read_manifest(sm.input.manifest), BootstrapSpec(**sm.params.bootstrap))
    table.to_csv(sm.output[0], sep="\t", index=False, float_format="%.4f")
    logging.getLogger("vapipe").info("\n%s", table.to_string(index=False))
