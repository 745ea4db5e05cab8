# Stage 1: audio tracks and frozen-backbone embeddings, cached as one Zarr store per (backbone, trial).


rule extract_audio:
    input:
        get_video_path,
    output:
        "results/audio/{video}.wav",
    log:
        "logs/extract_audio/{video}.log",
    wildcard_constraints:
        video=r"(?:(?!\.vocals)[^/])+",  # <video>.vocals.wav is the separation's output, not a track
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/extract_audio.py"


rule embed_faces:
    input:
        manifest=get_manifest_file,
        crops=dataset_ready(),
    output:
        "results/features/{backbone}/shards/{shard}.tsv",
    log:
        "logs/embed/{backbone}/{shard}.log",
    benchmark:
        "benchmarks/embed/{backbone}/{shard}.tsv"
    wildcard_constraints:
        backbone=wildcard_pattern(FACE_BACKBONES) if FACE_BACKBONES else "$^",
    threads: EXTRACTION_THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        sources=get_shard_crops_sources,
        spec=get_backbone_spec,
        n_shards=N_SHARDS,
        device=config["extraction"]["device"],
        on_bad_trial=config["on_bad_trial"],
        feature_root=get_feature_root,
    script:
        "../scripts/embed_shard.py"


rule embed_audio:
    input:
        manifest=get_manifest_file,
        audio=get_shard_audio,
    output:
        "results/features/{backbone}/shards/{shard}.tsv",
    log:
        "logs/embed/{backbone}/{shard}.log",
    benchmark:
        "benchmarks/embed/{backbone}/{shard}.tsv"
    wildcard_constraints:
        backbone=wildcard_pattern(AUDIO_BACKBONES) if AUDIO_BACKBONES else "$^",
    threads: EXTRACTION_THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        sources=get_shard_audio_sources,
        spec=get_backbone_spec,
        n_shards=N_SHARDS,
        device=config["extraction"]["device"],
        on_bad_trial=config["on_bad_trial"],
        feature_root=get_feature_root,
    script:
        "../scripts/embed_shard.py"


# Augmented copies (Dresvyanskiy et al.: polarity, white noise, volume) of an audio backbone's
# features on the labelled trials, for systems with train.augment_copies (vapipe.features.augment).
rule embed_audio_augmented:
    input:
        manifest=get_manifest_file,
        audio=get_shard_audio,
    output:
        "results/features/{backbone}/augmented{copies}/shards/{shard}.tsv",
    log:
        "logs/embed/{backbone}/augmented{copies}/{shard}.log",
    benchmark:
        "benchmarks/embed/{backbone}/augmented{copies}/{shard}.tsv"
    wildcard_constraints:
        backbone=wildcard_pattern(AUDIO_BACKBONES) if AUDIO_BACKBONES else "$^",
        copies=r"\d+",
    threads: EXTRACTION_THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        sources=get_shard_audio_sources,
        spec=get_backbone_spec,
        seed=get_augment_seed,
        n_shards=N_SHARDS,
        device=config["extraction"]["device"],
        on_bad_trial=config["on_bad_trial"],
        feature_root=get_feature_root,
    script:
        "../scripts/embed_augmented_shard.py"


rule import_features:
    input:
        manifest=get_manifest_file,
        features=get_imported_file,
    output:
        "results/features/{backbone}/shards/{shard}.tsv",
    log:
        "logs/import_features/{backbone}/{shard}.log",
    wildcard_constraints:
        backbone=wildcard_pattern(IMPORTED_BACKBONES) if IMPORTED_BACKBONES else "$^",
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        sources=get_shard_rows,
        spec=get_backbone_spec,
        n_shards=N_SHARDS,
        on_bad_trial=config["on_bad_trial"],
        feature_root=get_feature_root,
    script:
        "../scripts/import_features.py"


rule export_features:
    input:
        shards=get_exported_shards,
    output:
        "results/exports/{backbone}.h5",
    log:
        "logs/export_features/{backbone}.log",
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        feature_root=get_feature_root,
    script:
        "../scripts/export_features.py"


rule text_prototypes:
    output:
        "results/prototypes/{tower}.npy",
    log:
        "logs/text_prototypes/{tower}.log",
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        spec=get_text_tower,
    script:
        "../scripts/text_prototypes.py"
