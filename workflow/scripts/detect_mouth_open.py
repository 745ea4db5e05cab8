"""Mouth-open masks (MediaPipe face mesh lip gap) of one shard of trials, from their face crops."""

from vapipe.data.manifest import read_manifest
from vapipe.features.masks import MouthSpec, detect_mouth_open_shard
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    summary = detect_mouth_open_shard(
        manifest=read_manifest(sm.input.manifest),
        shard=int(sm.wildcards.shard),
        n_shards=sm.params.n_shards,
        mask_root=sm.params.mask_root,
        settings=MouthSpec(**sm.params.settings),
    )
    summary.to_csv(sm.output[0], sep="\t", index=False)
