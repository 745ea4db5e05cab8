# The papers' table rows (config/rows.yaml): one target per row, one table per paper.


rule paper_row:
    input:
        unpack(get_row_inputs),
    output:
        "results/rows/{paper}/{row}.tsv",
    log:
        "logs/paper_row/{paper}/{row}.log",
    localrule: True
    params:
        row=paper_row,
        folds=get_row_folds,
        # halves of the validation videos for a target-wise row's nested score
        seed=config["folds"]["seed"],
    script:
        "../scripts/paper_row.py"


rule paper_table:
    input:
        rows=get_paper_rows,
        comparisons=get_paper_comparisons,
    output:
        markdown="results/tables/{paper}.md",
        page=report("results/tables/{paper}.html", category="Paper tables", labels={"paper": "{paper}"}),
    log:
        "logs/paper_table/{paper}.log",
    localrule: True
    params:
        title=get_paper_title,
        printed=get_paper_printed,
        protocol=get_paper_protocol,
    script:
        "../scripts/paper_table.py"


rule paper_tables:
    input:
        expand("results/tables/{paper}.md", paper=PAPERS),
