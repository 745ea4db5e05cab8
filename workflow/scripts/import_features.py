"""Write one shard's feature stores from a backbone's HDF5 interchange file."""

from vapipe.data.manifest import read_manifest
from vapipe.features.extract import shard_trials
from vapipe.features.interchange import import_shard
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    trials = shard_trials(read_manifest(sm.input.manifest), int(sm.wildcards.shard), sm.params.n_shards)
    summary = import_shard(
        sm.wildcards.backbone, sm.params.spec, trials, sm.params.feature_root, on_bad_trial=sm.params.on_bad_trial
    )
    summary.to_csv(sm.output[0], sep="\t", index=False)
