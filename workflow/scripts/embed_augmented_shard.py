"""Cache augmented copies (polarity, white noise, volume) of one shard's audio features."""

import os

import torch

from vapipe.data.manifest import read_manifest
from vapipe.features.audio import video_of_track
from vapipe.features.augment import extract_augmented_shard
from vapipe.logs import workflow_step
from vapipe.runtime import resolve_device

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    torch.set_num_threads(max(1, min(sm.threads, os.cpu_count() or 1)))
    summary = extract_augmented_shard(
        backbone_name=sm.wildcards.backbone,
        spec=sm.params.spec,
        manifest=read_manifest(sm.input.manifest),
        shard=int(sm.wildcards.shard),
        n_shards=sm.params.n_shards,
        feature_root=sm.params.feature_root,
        audio_paths={video_of_track(p): p for p in sm.input.audio},
        copies=int(sm.wildcards.copies),
        seed=sm.params.seed,
        device=str(resolve_device(sm.params.device)),
        on_bad_trial=sm.params.on_bad_trial,
    )
    summary.to_csv(sm.output[0], sep="\t", index=False)
