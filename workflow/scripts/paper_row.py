"""One paper row: the paper's numbers beside ours, and how ours were made."""

import pandas as pd

from vapipe.data.manifest import read_manifest
from vapipe.evaluation.paper_rows import nested_targetwise_scores, row_record
from vapipe.logs import workflow_step

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    metrics = pd.read_csv(sm.input.metrics, sep="\t")
    nested = None
    if "frames" in sm.input.keys():
        frames = {
            fold: pd.read_csv(path, sep="\t") for fold, path in zip(sm.params.folds, sm.input.frames, strict=True)
        }
        nested = nested_targetwise_scores(frames, read_manifest(sm.input.manifest), sm.params.seed)
    submission = sm.input.submission if "submission" in sm.input.keys() else None
    seeds = pd.read_csv(sm.input.seeds, sep="\t") if "seeds" in sm.input.keys() else None
    record = row_record(
        sm.wildcards.paper, sm.wildcards.row, sm.params.row, sm.config, metrics, nested, submission, seeds
    )
    pd.DataFrame([record]).to_csv(sm.output[0], sep="\t", index=False, float_format="%.4f")
