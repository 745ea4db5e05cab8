"""Raw video -> 16 kHz mono WAV."""

import logging

from vapipe.features.audio import extract_audio
from vapipe.logs import workflow_step

with workflow_step(snakemake.log[0]):  # noqa: F821
    seconds = extract_audio(snakemake.input[0], snakemake.output[0])  # noqa: F821
    logging.getLogger("vapipe").info("%s: %.2f s of audio", snakemake.input[0], seconds)  # noqa: F821
