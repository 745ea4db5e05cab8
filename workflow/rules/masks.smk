# Per-frame masks beside the features: voice activity (silero-vad on the Spleeter vocals) and mouth
# open (MediaPipe face mesh on the crops), one Zarr store per (mask, trial) under results/masks/.
# Shards are those of the feature extraction; a shard summary exists once its stores are complete.


rule detect_voice_activity:
    input:
        manifest=get_manifest_file,
        vocals=get_shard_vocals,
    output:
        "results/masks/vad/shards/{shard}.tsv",
    log:
        "logs/masks/vad/{shard}.log",
    benchmark:
        "benchmarks/masks/vad/{shard}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        sources=get_shard_audio_sources,
        settings=config["masks"]["vad"],
        n_shards=N_SHARDS,
        mask_root=get_mask_root,
    script:
        "../scripts/detect_voice_activity.py"


rule detect_mouth_open:
    input:
        manifest=get_manifest_file,
        crops=dataset_ready(),
    output:
        "results/masks/mouth/shards/{shard}.tsv",
    log:
        "logs/masks/mouth/{shard}.log",
    benchmark:
        "benchmarks/masks/mouth/{shard}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        sources=get_shard_crops_sources,
        settings=config["masks"]["mouth"],
        n_shards=N_SHARDS,
        mask_root=get_mask_root,
    script:
        "../scripts/detect_mouth_open.py"
