# The ABAW test submission, validated against the organisers' example file before it is kept.


rule write_submission:
    input:
        frames=get_submission_frames,
        metrics=expand("results/metrics/{system}.tsv", system=config["submission"]["system"]),
        dataset=dataset_ready(),
    output:
        "results/submission.zip",
    params:
        example=str(DATASET.example_submission),
        file_name=config["submission"].get("file_name", "VA_Estimation_Challenge_predictions.txt"),
    log:
        "logs/write_submission.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/write_submission.py"
