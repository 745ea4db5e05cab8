"""Raw model outputs -> every frame (upsampled.tsv, for fusion), then Hamming-smoothed (frames.tsv)."""

import pandas as pd

from vapipe.data.manifest import read_manifest
from vapipe.logs import workflow_step
from vapipe.post.predictions import postprocess_predictions, smooth_frames

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    manifest = read_manifest(sm.input.manifest)
    upsampled = postprocess_predictions(pd.read_csv(sm.input.predictions, sep="\t"), manifest, 0.0)
    upsampled.to_csv(sm.output.upsampled, sep="\t", index=False, float_format="%.6f")
    frames = smooth_frames(upsampled, manifest, sm.params.smoothing_seconds)
    frames.to_csv(sm.output.frames, sep="\t", index=False, float_format="%.6f")
