"""The submitted system's test predictions (its folds averaged or chosen per target, or a fused
system's), written as the ABAW file and validated against the organisers' example."""

import logging

import pandas as pd

from vapipe.logs import workflow_step
from vapipe.submission import build_submission, select_test_predictions, validate_submission, write_submission_zip

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    metrics = pd.read_csv(sm.input.metrics, sep="\t")
    frames = {fold: pd.read_csv(path, sep="\t") for fold, path in zip(sm.params.folds, sm.input.frames, strict=True)}
    predictions, sources = select_test_predictions(frames, metrics, sm.params.fold_selection)
    table = build_submission(sm.params.example, predictions)
    write_submission_zip(table, sm.output[0], sm.params.file_name)
    rows = validate_submission(sm.output[0], sm.params.example)
    log = logging.getLogger("vapipe")
    log.info(
        "%s: %d rows from %s (%s: %s), valid against %s",
        sm.output[0],
        rows,
        sm.params.system,
        sm.params.fold_selection,
        "; ".join(f"{target} from {', '.join(folds)}" for target, folds in sources.items()),
        sm.params.example,
    )
    log.info("validation scores of the submitted system:\n%s", metrics.to_string(index=False))
