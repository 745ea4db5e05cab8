# Dataset -> manifest -> folds.

if config["dataset"].get("demo"):

    rule make_demo_dataset:
        output:
            directory(config["dataset"]["root"]),
        log:
            "logs/make_demo_dataset.log",
        benchmark:
            "benchmarks/make_demo_dataset.tsv"
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            spec=config["dataset"]["demo"],
        script:
            "../scripts/make_demo_dataset.py"


checkpoint build_manifest:
    input:
        dataset_ready(),
    output:
        manifest="results/manifest.tsv",
        skipped="results/skipped/manifest.tsv",
    log:
        "logs/build_manifest.log",
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        dataset_state=get_dataset_state,
        dataset=config["dataset"],
        on_bad_trial=config["on_bad_trial"],
        require_audio=bool(AUDIO_BACKBONES),
    script:
        "../scripts/build_manifest.py"


rule collect_skipped_trials:
    input:
        manifest="results/skipped/manifest.tsv",
        shards=feature_shards(SYSTEM_BACKBONES),
    output:
        "results/skipped_trials.tsv",
    log:
        "logs/collect_skipped_trials.log",
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/collect_skipped_trials.py"


rule make_folds:
    input:
        get_manifest_file,
    output:
        "results/folds.tsv",
    log:
        "logs/make_folds.log",
    resources:
        mem_mb=500,
        runtime=5,
    params:
        trials=get_trial_splits,
        folds=config["folds"],
    script:
        "../scripts/make_folds.py"
