"""Export a backbone's feature cache (every trial its shards stored) to one HDF5 file."""

from vapipe.features.interchange import export_backbone, stored_trials
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    trials = stored_trials(sm.input.shards)
    export_backbone(sm.params.feature_root, sm.wildcards.backbone, trials, sm.output[0])
