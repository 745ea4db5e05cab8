"""Read the dataset once into results/manifest.tsv."""

import logging

from vapipe.data.manifest import DatasetLayout, build_manifest, write_manifest
from vapipe.logs import workflow_step

with workflow_step(snakemake.log[0]):  # noqa: F821
    manifest, skipped = build_manifest(
        DatasetLayout.from_config(snakemake.params.dataset),  # noqa: F821
        on_bad_trial=snakemake.params.on_bad_trial,  # noqa: F821
        require_audio=snakemake.params.require_audio,  # noqa: F821
    )
    write_manifest(manifest, snakemake.output.manifest)  # noqa: F821
    skipped.to_csv(snakemake.output.skipped, sep="\t", index=False)  # noqa: F821
    logging.getLogger("vapipe").info(
        "%d trials: %s; %d skipped", len(manifest), manifest["split"].value_counts().to_dict(), len(skipped)
    )
