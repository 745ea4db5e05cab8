"""Fit a late fusion on its systems' held-out frames; write fused frames, summary, metrics, figure."""

import json
import logging

import pandas as pd

from vapipe.data.manifest import read_manifest
from vapipe.fusion.run import fuse_systems
from vapipe.logs import workflow_step
from vapipe.specs import BootstrapSpec

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    spec = sm.params.spec
    paths = iter(sm.input.upsampled)  # system-major, as get_fusion_upsampled lists them
    upsampled = {s: {f: pd.read_csv(next(paths), sep="\t") for f in spec["folds"]} for s in spec["systems"]}
    frames, summary, metrics, fitted = fuse_systems(
        spec,
        upsampled,
        read_manifest(sm.input.manifest),
        sm.params.smoothing_seconds,
        n_jobs=sm.threads,
        bootstrap=BootstrapSpec(**sm.params.bootstrap),
    )
    frames.to_csv(sm.output.frames, sep="\t", index=False, float_format="%.6f")
    with open(sm.output.summary, "w") as handle:
        json.dump(summary, handle, indent=1)
    metrics.to_csv(sm.output.metrics, sep="\t", index=False, float_format="%.4f")
    fuser, preds, labels = fitted
    fuser.figure(preds, labels, spec["systems"], sm.output.figure)
    logging.getLogger("vapipe").info(
        "%s of %s:\n%s", spec["method"], ", ".join(spec["systems"]), metrics.to_string(index=False)
    )
