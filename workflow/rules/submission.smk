# The ABAW test submission, validated against the organisers' example file before it is kept.


rule write_submission:
    input:
        frames=get_submission_frames,
        metrics=f"results/metrics/{config['submission']['system']}.tsv",
        dataset=dataset_ready(),
    output:
        "results/submission.zip",
    log:
        "logs/write_submission.log",
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        system=config["submission"]["system"],
        folds=submission_folds(),
        fold_selection=config["submission"]["fold_selection"],
        example=str(DATASET.example_submission),
        file_name=config["submission"]["file_name"],
    script:
        "../scripts/write_submission.py"


# A paper row's own test submission (config/rows.yaml `submission:`), e.g. SAGE's Table 2 row: the
# row system's test predictions with the row's fold selection, validated like the main one.
rule write_row_submission:
    input:
        frames=get_row_fold_frames,
        metrics=get_row_metrics,
        dataset=dataset_ready(),
    output:
        "results/rows/{paper}/{row}.submission.zip",
    log:
        "logs/write_row_submission/{paper}/{row}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        system=get_row_system,
        folds=get_row_folds,
        fold_selection=get_row_fold_selection,
        example=str(DATASET.example_submission),
        file_name=config["submission"]["file_name"],
    script:
        "../scripts/write_submission.py"
