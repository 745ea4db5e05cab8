# Stage 2: one job per (system, fold), then per-frame post-processing and scores.


rule train_fold:
    input:
        manifest="results/manifest.tsv",
        folds="results/folds.tsv",
        features=get_system_feature_shards,
    output:
        model="results/models/{system}/{fold}/model.pt",
        history="results/models/{system}/{fold}/history.json",
        predictions="results/predictions/{system}/{fold}/raw.tsv",
    params:
        system=get_system,
        backbones=get_system_backbones,
    log:
        "logs/train_fold/{system}/{fold}.log",
    benchmark:
        "benchmarks/train_fold/{system}/{fold}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    script:
        "../scripts/train_fold.py"


rule postprocess_predictions:
    input:
        predictions="results/predictions/{system}/{fold}/raw.tsv",
        manifest="results/manifest.tsv",
    output:
        "results/predictions/{system}/{fold}/frames.tsv",
    params:
        smoothing_seconds=config["postprocess"]["smoothing_seconds"],
    log:
        "logs/postprocess_predictions/{system}/{fold}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/postprocess_predictions.py"


rule score_system:
    input:
        frames=get_system_fold_frames,
        manifest="results/manifest.tsv",
    output:
        report("results/metrics/{system}.tsv", category="Metrics"),
    params:
        folds=FOLDS,
    log:
        "logs/score_system/{system}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/score_system.py"
