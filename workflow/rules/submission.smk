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
