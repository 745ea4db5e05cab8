# Stage 2: one job per (system, fold), then per-frame post-processing and scores.
from vapipe.specs import seed_ensembles

# A system with several seeds (vapipe.specs.expand_seeds) trains one member per seed; its own
# predictions are their average. Every other system trains its own model.
SEED_ENSEMBLES = seed_ensembles(config["systems"])
TRAINED_SYSTEMS = [name for name in config["systems"] if name not in SEED_ENSEMBLES]


rule train_fold:
    input:
        unpack(get_system_extra_inputs),
        manifest=get_manifest_file,
        folds="results/folds.tsv",
        features=get_system_feature_shards,
        augmented=get_system_augmented_shards,
    output:
        # a self-contained checkpoint folder (vapipe.training.system): config.json + weights
        config="results/models/{system}/{fold}/config.json",
        weights="results/models/{system}/{fold}/model.safetensors",
        history="results/models/{system}/{fold}/history.json",
        predictions="results/predictions/{system}/{fold}/raw.tsv",
    log:
        "logs/train_fold/{system}/{fold}.log",
    benchmark:
        "benchmarks/train_fold/{system}/{fold}.tsv"
    wildcard_constraints:
        system=wildcard_pattern(TRAINED_SYSTEMS),
    threads: 1
    resources:
        mem_mb=get_train_fold_mem_mb,
        runtime=120,
    params:
        labels=get_label_sources,
        system=get_system,
        metadata=get_checkpoint_metadata,
        feature_root=get_feature_root,
        mask_root=get_mask_root,
    script:
        "../scripts/train_fold.py"


rule average_seed_predictions:
    input:
        get_seed_member_predictions,
    output:
        "results/predictions/{system}/{fold}/raw.tsv",
    log:
        "logs/average_seed_predictions/{system}/{fold}.log",
    wildcard_constraints:
        system=wildcard_pattern(SEED_ENSEMBLES) if SEED_ENSEMBLES else "$^",
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        members=get_seed_members,
    script:
        "../scripts/average_seed_predictions.py"


rule seed_scores:
    input:
        get_seed_member_metrics,
    output:
        "results/metrics/{system}.seeds.tsv",
    log:
        "logs/seed_scores/{system}.log",
    wildcard_constraints:
        system=wildcard_pattern(SEED_ENSEMBLES) if SEED_ENSEMBLES else "$^",
    localrule: True
    params:
        seeds=lambda wildcards: config["systems"][wildcards.system]["seeds"],
    script:
        "../scripts/seed_scores.py"


rule postprocess_predictions:
    input:
        predictions="results/predictions/{system}/{fold}/raw.tsv",
        manifest=get_manifest_file,
    output:
        upsampled="results/predictions/{system}/{fold}/upsampled.tsv",  # what late fusion reads
        frames="results/predictions/{system}/{fold}/frames.tsv",
    log:
        "logs/postprocess_predictions/{system}/{fold}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        labels=get_label_sources,
        smoothing_seconds=get_system_smoothing,
    script:
        "../scripts/postprocess_predictions.py"


rule score_system:
    input:
        unpack(get_system_voiced_inputs),
        frames=get_system_fold_frames,
        manifest=get_manifest_file,
    output:
        "results/metrics/{system}.tsv",
    log:
        "logs/score_system/{system}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        labels=get_label_sources,
        folds=get_system_folds,
        bootstrap=config["evaluation"]["bootstrap"],
        speech=get_system_speech,
        mask_root=get_mask_root,
    script:
        "../scripts/score_system.py"


rule models_table:
    input:
        unpack(get_table_metrics),
    output:
        markdown="results/tables/{table}.md",
        page=report("results/tables/{table}.html", category="Tables", labels={"table": "{table}"}),
    log:
        "logs/models_table/{table}.log",
    wildcard_constraints:
        table=wildcard_pattern(config.get("tables", {})) if config.get("tables") else "$^",
    params:
        table=get_table,
    script:
        "../scripts/models_table.py"


rule system_figures:
    input:
        frames=get_system_fold_frames,
        manifest=get_manifest_file,
    output:
        traces=report(
            "results/figures/{system}/traces.png",
            category="Traces",
            caption="../report/traces.rst",
            labels={"system": "{system}"},
        ),
        per_trial=report(
            "results/figures/{system}/ccc_per_trial.png",
            category="CCC per trial",
            caption="../report/ccc_per_trial.rst",
            labels={"system": "{system}"},
        ),
        table="results/figures/{system}/ccc_per_trial.tsv",
    log:
        "logs/system_figures/{system}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        labels=get_label_sources,
        folds=get_system_folds,
        trials=config["report"]["trace_trials"],
    script:
        "../scripts/system_figures.py"


rule learning_curves:
    input:
        unpack(get_system_histories),
    output:
        figure=report(
            "results/figures/{system}/learning_curves.png",
            category="Learning curves",
            caption="../report/learning_curves.rst",
            labels={"system": "{system}"},
        ),
        table="results/figures/{system}/learning_curves.tsv",
    log:
        "logs/learning_curves/{system}.log",
    localrule: True
    script:
        "../scripts/learning_curves.py"


rule metrics_page:
    input:
        expand("results/metrics/{system}.tsv", system=CONFIG_SYSTEMS),
        expand("results/metrics/{fusion}.tsv", fusion=FUSIONS),
    output:
        report("results/metrics/metrics.html", category="Metrics", caption="../report/metrics.rst"),
    log:
        "logs/metrics_page.log",
    localrule: True
    params:
        names=CONFIG_SYSTEMS + list(FUSIONS),
    script:
        "../scripts/metrics_page.py"
