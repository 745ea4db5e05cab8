"""16 kHz mixture WAV -> Spleeter 2-stems vocals WAV of exactly the same length."""

import logging

from vapipe.features.separation import separate_vocals
from vapipe.logs import workflow_step

with workflow_step(snakemake.log[0]):  # noqa: F821
    summary = separate_vocals(
        snakemake.input.audio,  # noqa: F821
        snakemake.output[0],  # noqa: F821
        env_marker=snakemake.input.env,  # noqa: F821
        model_dir=snakemake.input.model,  # noqa: F821
        input_rms=snakemake.params.input_rms,  # noqa: F821
        chunk_seconds=snakemake.params.chunk_seconds,  # noqa: F821
        threads=snakemake.threads,  # noqa: F821
    )
    logging.getLogger("vapipe").info("%s", summary)
