"""CCC per fold and pooled out-of-fold over the K folds, each with its interval over videos; a system
trained on speech frames also per fold on its voiced segments ('<fold>_voiced')."""

import logging

import pandas as pd

from vapipe.data.manifest import read_manifest
from vapipe.evaluation.scoring import score_folds, score_voiced
from vapipe.features.mask_store import SpeechRule
from vapipe.logs import workflow_step
from vapipe.specs import BootstrapSpec

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    frames = {fold: pd.read_csv(path, sep="\t") for fold, path in zip(sm.params.folds, sm.input.frames, strict=True)}
    manifest, bootstrap = read_manifest(sm.input.manifest), BootstrapSpec(**sm.params.bootstrap)
    table = score_folds(frames, manifest, bootstrap)
    if sm.params.speech:  # trained on speech frames: also scored on its voiced segments
        upsampled = {f: pd.read_csv(p, sep="\t") for f, p in zip(sm.params.folds, sm.input.upsampled, strict=True)}
        voiced = score_voiced(upsampled, manifest, SpeechRule(**sm.params.speech), sm.params.mask_root, bootstrap)
        table = pd.concat([table, voiced[table.columns]], ignore_index=True)
    table.to_csv(sm.output[0], sep="\t", index=False, float_format="%.4f")
    logging.getLogger("vapipe").info("\n%s", table.to_string(index=False))
