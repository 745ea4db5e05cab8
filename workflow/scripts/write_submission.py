"""Average the chosen folds' test predictions, write the ABAW file, validate it."""

import logging

import pandas as pd

from vapipe.logs import workflow_step
from vapipe.submission import average_test_predictions, build_submission, validate_submission, write_submission_zip

sm = snakemake  # noqa: F821
with workflow_step(sm.log[0]):
    predictions = average_test_predictions([pd.read_csv(p, sep="\t") for p in sm.input.frames])
    table = build_submission(sm.params.example, predictions)
    write_submission_zip(table, sm.output[0], sm.params.file_name)
    rows = validate_submission(sm.output[0], sm.params.example)
    log = logging.getLogger("vapipe")
    log.info("%s: %d rows, valid against %s", sm.output[0], rows, sm.params.example)
    log.info("validation scores of the submitted system:\n%s", pd.read_csv(sm.input.metrics[0], sep="\t").to_string(index=False))
