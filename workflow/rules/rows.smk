# The papers' table rows (config/rows.yaml): one target per row, one table per paper.


rule paper_row:
    input:
        metrics=get_row_metrics,
    output:
        "results/rows/{paper}/{row}.tsv",
    log:
        "logs/paper_row/{paper}/{row}.log",
    localrule: True
    params:
        row=paper_row,
    script:
        "../scripts/paper_row.py"


rule paper_table:
    input:
        get_paper_rows,
    output:
        markdown="results/tables/{paper}.md",
        page=report("results/tables/{paper}.html", category="Paper tables", labels={"paper": "{paper}"}),
    log:
        "logs/paper_table/{paper}.log",
    localrule: True
    params:
        title=get_paper_title,
    script:
        "../scripts/paper_table.py"


rule paper_tables:
    input:
        expand("results/tables/{paper}.md", paper=PAPERS),
