"""Re-extract an audio backbone's stores of a fold's held-out trials from their silenced tracks."""

import os

import pandas as pd
import torch

from vapipe.data.folds import split_fold
from vapipe.data.manifest import read_manifest
from vapipe.features.audio import video_of_track
from vapipe.features.silence import extract_silenced
from vapipe.logs import workflow_step
from vapipe.runtime import resolve_device

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    torch.set_num_threads(max(1, min(sm.threads, os.cpu_count() or 1)))
    _, heldout, _ = split_fold(pd.read_csv(sm.input.folds, sep="\t"), sm.wildcards.fold)
    summary = extract_silenced(
        backbone_name=sm.wildcards.backbone,
        spec=sm.params.spec,
        manifest=read_manifest(sm.input.manifest),
        trials=heldout,
        audio_paths={video_of_track(p): p for p in sm.input.audio},
        feature_root=os.path.dirname(sm.output.stores),
        share=float(sm.wildcards.share),
        seed=int(sm.wildcards.seed),
        segment_seconds=sm.params.segment_seconds,
        device=str(resolve_device(sm.params.device)),
    )
    summary.to_csv(sm.output.summary, sep="\t", index=False)
