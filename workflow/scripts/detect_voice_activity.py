"""Voice-activity masks (silero-vad) of one shard of trials, from their videos' Spleeter vocals."""

from pathlib import Path

from vapipe.data.manifest import read_manifest
from vapipe.features.masks import VadSpec, detect_voice_activity_shard
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    summary = detect_voice_activity_shard(
        manifest=read_manifest(sm.input.manifest),
        shard=int(sm.wildcards.shard),
        n_shards=sm.params.n_shards,
        audio_paths={Path(p).name.removesuffix(".vocals.wav"): p for p in sm.input.vocals},
        mask_root=sm.params.mask_root,
        settings=VadSpec(**sm.params.settings),
    )
    summary.to_csv(sm.output[0], sep="\t", index=False)
