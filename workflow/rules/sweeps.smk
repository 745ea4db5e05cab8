# The missing-audio sweep (IACA, paper 002, Fig. 3): Stage 1 silences a share of each held-out
# video's audio and re-extracts the audio features from it, one set of stores per (share, seed);
# Stage 2 scores each compared system on them; one figure per fold puts the systems side by side.
from vapipe.features.silence import SEGMENT_SECONDS


rule silence_audio_features:
    input:
        manifest=get_manifest_file,
        folds="results/folds.tsv",
        audio=get_all_audio_tracks,
    output:
        stores=directory("results/sweeps/silenced/{fold}/share{share}_seed{seed}/{backbone}"),
        summary="results/sweeps/silenced/{fold}/share{share}_seed{seed}/{backbone}.tsv",
    log:
        "logs/silence_audio_features/{fold}/share{share}_seed{seed}/{backbone}.log",
    wildcard_constraints:
        backbone=wildcard_pattern(AUDIO_BACKBONES) if AUDIO_BACKBONES else "$^",
        share=r"0|1|0\.\d+",
        seed=r"\d+",
    threads: EXTRACTION_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    params:
        sources=get_audio_sources,
        spec=get_backbone_spec,
        segment_seconds=SEGMENT_SECONDS,
        device=config["extraction"]["device"],
    script:
        "../scripts/silence_audio_features.py"


rule missing_audio_sweep:
    input:
        checkpoints=get_sweep_checkpoints,  # the system's, or each of its seeds' (a seed average)
        manifest=get_manifest_file,
        folds="results/folds.tsv",
        features=get_system_feature_shards,
        silenced=get_silenced_summaries,
    output:
        table="results/sweeps/{system}/{fold}/missing_audio.tsv",
        draws="results/sweeps/{system}/{fold}/missing_audio_draws.tsv",
        plot=report(
            "results/sweeps/{system}/{fold}/missing_audio.png",
            category="Missing audio",
            caption="../report/missing_audio.rst",
            labels={"system": "{system}", "fold": "{fold}"},
        ),
    log:
        "logs/missing_audio_sweep/{system}/{fold}.log",
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        labels=get_label_sources,
        feature_root=get_feature_root,
        smoothing_seconds=get_system_smoothing,
    script:
        "../scripts/missing_audio_sweep.py"


rule missing_audio_figure:
    input:
        get_fold_sweeps,
    output:
        table="results/sweeps/missing_audio_{fold}.tsv",
        plot=report(
            "results/sweeps/missing_audio_{fold}.png",
            category="Missing audio",
            caption="../report/missing_audio_systems.rst",
            labels={"systems": "compared", "fold": "{fold}"},
        ),
    log:
        "logs/missing_audio_figure/{fold}.log",
    localrule: True
    params:
        systems=get_sweep_systems,
    script:
        "../scripts/missing_audio_figure.py"
