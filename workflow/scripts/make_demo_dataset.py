"""Generate the seeded demo dataset in Aff-Wild2's layout."""

from vapipe.data.demo import DemoSpec, generate_demo_dataset
from vapipe.logs import workflow_step

with workflow_step(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    generate_demo_dataset(snakemake.output[0], DemoSpec(**snakemake.params.spec))  # noqa: F821
