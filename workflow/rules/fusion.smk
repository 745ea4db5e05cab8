# Late fusion of systems' upsampled, unsmoothed per-frame predictions; the fused table is smoothed last.


rule fuse_systems:
    input:
        upsampled=get_fusion_upsampled,
        manifest=get_manifest_file,
    output:
        frames="results/fusion/{fusion}/frames.tsv",
        summary="results/fusion/{fusion}/summary.json",
        metrics="results/metrics/{fusion}.tsv",
        figure=report(
            "results/fusion/{fusion}/fusion.png",
            category="Fusion",
            caption="../report/fusion.rst",
            labels={"fusion": "{fusion}"},
        ),
    log:
        "logs/fuse_systems/{fusion}.log",
    benchmark:
        "benchmarks/fuse_systems/{fusion}.tsv"
    # the random forest grows its trees in this many threads (vapipe.fusion.forest)
    threads: 2
    resources:
        mem_mb=get_fusion_mem_mb,
        runtime=30,
    params:
        labels=get_label_sources,
        spec=get_fusion,
        smoothing_seconds=config["postprocess"]["smoothing_seconds"],
        bootstrap=config["evaluation"]["bootstrap"],
    script:
        "../scripts/fuse_systems.py"
