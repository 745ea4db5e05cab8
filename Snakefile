# vapipe: ABAW valence-arousal estimation as a two-stage feature-cache pipeline.
#   snakemake --cores 8 results/submission.zip
from pathlib import Path

from snakemake.utils import min_version, validate

from vapipe.config import check_config
from vapipe.errors import ConfigError
from vapipe.evaluation.paper_rows import load_paper_rows, materialize_rows
from vapipe.features.weights import use_weights_cache
from vapipe.specs import PipelineSpec

min_version("9.0")


# The demo default, unless configs are given on the command line (e.g. config/affwild2.yaml).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


CONFIG_SOURCES = ", ".join(map(str, workflow.configfiles))
# Typed specs (vapipe.specs) own every key and default: a typo stops here, naming the key path.
try:
    PipelineSpec.from_config(config)
except ConfigError as error:
    raise WorkflowError(f"{CONFIG_SOURCES}: {error}") from None
validate(config, schema="workflow/schemas/config.schema.yaml")
# The config's own systems (rule all); the paper rows' systems and fusions join them below.
CONFIG_SYSTEMS = list(config["systems"])
# A relative paper_rows path is inside the repository, like separation.requirements.
PAPERS = load_paper_rows(Path(workflow.basedir) / config["paper_rows"]) if config.get("paper_rows") else {}
try:
    ROW_SYSTEMS, ROW_FUSIONS = materialize_rows(config, PAPERS)
except ConfigError as error:
    raise WorkflowError(f"{config['paper_rows']}: {error}") from None
config["systems"].update(ROW_SYSTEMS)
config["fusions"] = {**config.get("fusions", {}), **ROW_FUSIONS}
try:
    SPEC = check_config(config)
except ConfigError as error:
    raise WorkflowError(f"{CONFIG_SOURCES}: {error}") from None
# From here on the config is the spec's plain form: every default filled in, from one place.
config.clear()
config.update(SPEC.to_dict())
# With a weights cache (filled by `vapipe fetch-weights`), jobs load from it with the hubs offline.
use_weights_cache(SPEC.paths.weights, offline=True)
validate(config, schema="workflow/schemas/config.schema.yaml")


# A GPU is a per-machine resource: a local run caps GPU jobs, a cluster run is not throttled.
resource_scopes:
    gpu="local",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/masks.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/fusion.smk"
include: "workflow/rules/rows.smk"
include: "workflow/rules/comparisons.smk"
include: "workflow/rules/submission.smk"
include: "workflow/rules/separation.smk"


report: "workflow/report/workflow.rst"


rule all:
    input:
        "results/submission.zip",
        "results/skipped_trials.tsv",
        expand("results/metrics/{system}.tsv", system=CONFIG_SYSTEMS),
        expand("results/tables/{table}.md", table=config.get("tables", {})),
        all_mask_outputs(),
        # the report's figures (snakemake --report results/report.html) and the papers' tables
        expand("results/figures/{system}/traces.png", system=config["report"]["systems"]),
        expand("results/figures/{system}/learning_curves.png", system=config["report"]["systems"]),
        [f"results/sweeps/{run}/missing_audio.png" for run in config["report"]["missing_audio"]],
        expand("results/sweeps/missing_audio_{fold}.png", fold=sweep_folds()),
        expand("results/fusion/{fusion}/fusion.png", fusion=FUSIONS),
        expand("results/tables/{paper}.md", paper=PAPERS),
        ["results/figures/forest_plot.png"] if PAPERS else [],
        "results/metrics/metrics.html",
