"""Embed one shard of trials with one backbone into the Zarr feature cache."""

import os

import torch

from vapipe.data.manifest import read_manifest
from vapipe.features.audio import video_of_track
from vapipe.features.extract import extract_shard
from vapipe.logs import workflow_step
from vapipe.runtime import resolve_device

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    torch.set_num_threads(max(1, min(sm.threads, os.cpu_count() or 1)))
    manifest = read_manifest(sm.input.manifest)
    audio = {video_of_track(p): p for p in sm.input.get("audio", [])}
    summary = extract_shard(
        backbone_name=sm.wildcards.backbone,
        spec=sm.params.spec,
        manifest=manifest,
        shard=int(sm.wildcards.shard),
        n_shards=sm.params.n_shards,
        feature_root=sm.params.feature_root,
        audio_paths=audio,
        device=str(resolve_device(sm.params.device)),
        on_bad_trial=sm.params.on_bad_trial,
    )
    summary.to_csv(sm.output[0], sep="\t", index=False)
