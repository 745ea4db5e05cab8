"""Pinned requirements -> the Spleeter venv; its pip-freeze marker is written last."""

import logging

from vapipe.features.separation import build_spleeter_env
from vapipe.logs import workflow_step

with workflow_step(snakemake.log[0]):  # noqa: F821
    env_dir = build_spleeter_env(snakemake.input.requirements, snakemake.output[0])  # noqa: F821
    logging.getLogger("vapipe").info("Spleeter environment ready in %s", env_dir)
