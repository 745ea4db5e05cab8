"""Raw model outputs -> every frame, Hamming-smoothed."""

import pandas as pd

from vapipe.data.manifest import read_manifest
from vapipe.logs import workflow_step
from vapipe.post.predictions import postprocess_predictions

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    frames = postprocess_predictions(
        pd.read_csv(sm.input.predictions, sep="\t"),
        read_manifest(sm.input.manifest),
        sm.params.smoothing_seconds,
    )
    frames.to_csv(sm.output[0], sep="\t", index=False, float_format="%.6f")
