# How far the paper rows can be trusted: the comparisons the papers make (config/rows.yaml
# `comparisons:`), each a paired bootstrap over videos, and a forest plot of every row with its interval.
from vapipe.evaluation.comparisons import paper_comparisons, side_frames_path

COMPARISONS = {paper: paper_comparisons(paper, spec, config["systems"], FUSIONS) for paper, spec in PAPERS.items()}
COMPARED_PAPERS = [paper for paper, comparisons in COMPARISONS.items() if comparisons]


rule paper_comparisons:
    input:
        unpack(get_comparison_frames),
        manifest=get_manifest_file,
    output:
        table="results/rows/{paper}/comparisons.tsv",
        figure=report(
            "results/rows/{paper}/comparisons.png",
            category="Paired comparisons",
            caption="../report/comparisons.rst",
            labels={"paper": "{paper}"},
        ),
    log:
        "logs/paper_comparisons/{paper}.log",
    wildcard_constraints:
        paper=wildcard_pattern(COMPARED_PAPERS) if COMPARED_PAPERS else "$^",
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        comparisons=lambda wildcards: COMPARISONS[wildcards.paper],
        bootstrap=config["evaluation"]["bootstrap"],
        labels=get_label_sources,
    script:
        "../scripts/paper_comparisons.py"


rule forest_plot:
    input:
        [f"results/rows/{paper}/{row}.tsv" for paper, spec in PAPERS.items() for row in spec["rows"]],
    output:
        figure=report(
            "results/figures/forest_plot.png",
            category="Paper rows",
            caption="../report/forest_plot.rst",
        ),
        table="results/figures/forest_plot.tsv",
    log:
        "logs/forest_plot.log",
    localrule: True
    script:
        "../scripts/forest_plot.py"
