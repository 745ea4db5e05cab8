# Input functions and wildcard constraints shared by every stage.
import os
from functools import lru_cache

from vapipe.config import check_config, fold_names, wildcard_pattern
from vapipe.data.folds import OFFICIAL
from vapipe.data.manifest import DatasetLayout, read_manifest

try:
    check_config(config, workflow.configfiles)
except ValueError as error:
    raise WorkflowError(str(error)) from None

DATASET = DatasetLayout.from_config(config["dataset"])
FOLDS = fold_names(config)
N_SHARDS = config["extraction"]["shards"]
FACE_BACKBONES = [n for n, b in config["backbones"].items() if b["input"] == "face"]
AUDIO_BACKBONES = [n for n, b in config["backbones"].items() if b["input"] != "face"]
KFOLDS = [f for f in FOLDS if f != OFFICIAL]
SYSTEM_BACKBONES = sorted({name for system in config["systems"].values() for name in system["features"]})
# Extraction jobs use every core they are given; torch is capped at the machine's cores.
EXTRACTION_THREADS = 8


wildcard_constraints:
    backbone=wildcard_pattern(config["backbones"]),
    system=wildcard_pattern(config["systems"]),
    fold=wildcard_pattern(FOLDS),
    shard=r"\d+",
    video=r"[^/]+",


def dataset_ready():
    """The generated demo dataset when the config asks for one; the real data needs no rule."""
    return [config["dataset"]["root"]] if config["dataset"].get("demo") else []


@lru_cache
def _manifest(path):
    return read_manifest(path)


def get_manifest():
    """The manifest, once the checkpoint that builds it has run."""
    return _manifest(checkpoints.build_manifest.get().output.manifest)


def get_video_path(wildcards):
    """Raw video of a base video name."""
    rows = get_manifest().query("video == @wildcards.video")
    return rows["video_path"].iloc[0]


def shard_videos(shard):
    """Raw videos of one extraction shard (every N-th video in sorted order)."""
    return sorted(get_manifest()["video"].unique())[int(shard) :: N_SHARDS]


def get_shard_audio(wildcards):
    """WAV files an audio-backbone shard reads."""
    return [f"results/audio/{video}.wav" for video in shard_videos(wildcards.shard)]


def get_backbone_spec(wildcards):
    return config["backbones"][wildcards.backbone]


def feature_shards(backbones):
    """Shard summaries whose existence means the backbones' stores are complete."""
    return expand(
        "results/features/{backbone}/shards/{shard}.tsv", backbone=backbones, shard=range(N_SHARDS)
    )


def get_system_feature_shards(wildcards):
    return feature_shards(config["systems"][wildcards.system]["features"])


def get_system(wildcards):
    return config["systems"][wildcards.system]


def get_system_backbones(wildcards):
    """Specs of the backbones a system reads (kept in its checkpoint for `vapipe predict`)."""
    return {name: config["backbones"][name] for name in config["systems"][wildcards.system]["features"]}


def get_system_fold_frames(wildcards):
    """Per-frame predictions of every fold of a system."""
    return expand("results/predictions/{system}/{fold}/frames.tsv", system=wildcards.system, fold=FOLDS)



def get_submission_frames(wildcards):
    """Per-frame predictions of the folds whose test outputs the submission averages."""
    return expand(
        "results/predictions/{system}/{fold}/frames.tsv",
        system=config["submission"]["system"],
        fold=config["submission"]["folds"],
    )


def all_mask_outputs():
    """Shard summaries whose existence means every trial's vad and mouth mask stores are complete."""
    return expand("results/masks/{mask}/shards/{shard}.tsv", mask=["vad", "mouth"], shard=range(N_SHARDS))
