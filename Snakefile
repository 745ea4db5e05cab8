# vapipe: ABAW valence-arousal estimation as a two-stage feature-cache pipeline.
#   snakemake --cores 8 results/submission.zip
from snakemake.utils import min_version, validate

min_version("9.0")


# The demo default, unless configs are given on the command line (e.g. config/affwild2.yaml).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


validate(config, schema="workflow/schemas/config.schema.yaml")


# A GPU is a per-machine resource: a local run caps GPU jobs, a cluster run is not throttled.
resource_scopes:
    gpu="local",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/submission.smk"
include: "workflow/rules/separation.smk"


rule all:
    input:
        "results/submission.zip",
        "results/skipped_trials.tsv",
        expand("results/metrics/{system}.tsv", system=config["systems"]),
        expand("results/tables/{table}.md", table=config.get("tables", {})),
        all_mask_outputs(),
