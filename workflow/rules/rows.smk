# The papers' table rows (config/rows.yaml): one target per row, one table per paper.


rule paper_row:
    input:
        metrics=get_row_metrics,
    output:
        "results/rows/{paper}/{row}.tsv",
    params:
        row=paper_row,
    log:
        "logs/paper_row/{paper}/{row}.log",
    localrule: True
    script:
        "../scripts/paper_row.py"


rule paper_table:
    input:
        get_paper_rows,
    output:
        markdown="results/tables/{paper}.md",
        page=report("results/tables/{paper}.html", category="Paper tables", labels={"paper": "{paper}"}),
    params:
        title=get_paper_title,
    log:
        "logs/paper_table/{paper}.log",
    localrule: True
    script:
        "../scripts/paper_table.py"


rule paper_tables:
    input:
        expand("results/tables/{paper}.md", paper=PAPERS),
