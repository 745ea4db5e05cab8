"""Read the dataset once into results/manifest.tsv."""

import logging

from vapipe.data.manifest import DatasetLayout, build_manifest, write_manifest
from vapipe.logs import workflow_step

with workflow_step(snakemake.log[0]):  # noqa: F821
    manifest = build_manifest(DatasetLayout.from_config(snakemake.params.dataset))  # noqa: F821
    write_manifest(manifest, snakemake.output[0])  # noqa: F821
    logging.getLogger("vapipe").info(
        "%d trials: %s", len(manifest), manifest["split"].value_counts().to_dict()
    )
