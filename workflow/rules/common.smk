# Input functions and wildcard constraints shared by every stage.
import os
from functools import lru_cache

# `config` is the typed spec's plain form (the Snakefile): every key present, defaults filled.
from vapipe.config import IMPORTED_KIND, wildcard_pattern
from vapipe.data.folds import OFFICIAL
from vapipe.data.manifest import DatasetLayout, dataset_state, digest, read_manifest
from vapipe.features.extract import shard_trials

DATASET = DatasetLayout.from_config(config["dataset"])
FOLDS = SPEC.fold_names()
# Where Stage 1 keeps its stores (config paths:, e.g. a scratch disk). A shard summary under
# results/ is a job's declared output; the per-trial stores it vouches for sit under these roots,
# which every job must see (a shared file system, as on the SLURM clusters profiles/slurm targets).
FEATURE_ROOT = config["paths"]["features"]
MASK_ROOT = config["paths"]["masks"]
N_SHARDS = config["extraction"]["shards"]
# Backbones run on face crops or on audio; imported ones come from an HDF5 file.
IMPORTED_BACKBONES = [n for n, b in config["backbones"].items() if b["kind"] == IMPORTED_KIND]
FACE_BACKBONES = [n for n, b in config["backbones"].items() if b["input"] == "face" and n not in IMPORTED_BACKBONES]
AUDIO_BACKBONES = [n for n, b in config["backbones"].items() if b["input"] != "face" and n not in IMPORTED_BACKBONES]
KFOLDS = [f for f in FOLDS if f != OFFICIAL]
# Late fusions of systems (vapipe.fusion.run): the config's and the paper rows'.
FUSIONS = config["fusions"]
SYSTEM_BACKBONES = sorted({name for system in config["systems"].values() for name in system["features"]})
# Extraction jobs use every core they are given; torch is capped at the machine's cores.
EXTRACTION_THREADS = 8


wildcard_constraints:
    backbone=wildcard_pattern(config["backbones"]),
    system=wildcard_pattern(config["systems"]),
    fold=wildcard_pattern(FOLDS),
    fusion=wildcard_pattern(FUSIONS) if FUSIONS else "$^",
    paper=wildcard_pattern(PAPERS) if PAPERS else "$^",
    row=r"[A-Za-z0-9_]+",
    shard=r"\d+",
    video=r"[^/]+",


def get_feature_root(wildcards):
    return FEATURE_ROOT


def get_mask_root(wildcards):
    return MASK_ROOT


def dataset_ready():
    """The generated demo dataset when the config asks for one; the real data needs no rule."""
    return [config["dataset"]["root"]] if config["dataset"].get("demo") else []


@lru_cache
def _manifest(path, modified):
    return read_manifest(path)


def get_manifest():
    """The manifest, once the checkpoint that builds it has run (read again once it is rebuilt)."""
    path = checkpoints.build_manifest.get().output.manifest
    return _manifest(path, os.stat(path).st_mtime_ns)


def get_dataset_state(wildcards):
    """Stamp of the dataset's files (vapipe.data.manifest.dataset_state): an edit rebuilds the manifest."""
    return "generated" if config["dataset"].get("demo") else dataset_state(DATASET)


# Jobs read the manifest through get_manifest_file: ancient(), so a rebuilt manifest reruns a job only
# when the part of it the job reads changed (its params carry a digest of the manifest's per-trial
# sources), and through the checkpoint, so Snakemake judges those params only once the manifest is final.
def get_manifest_file(wildcards):
    return ancient(checkpoints.build_manifest.get().output.manifest)


def manifest_digest(columns, trials=None):
    table = get_manifest()
    if trials is not None:
        table = table[table["trial"].isin(trials)]
    return digest(table[["trial", *columns]].to_csv(index=False))


def shard_trial_names(wildcards):
    return list(shard_trials(get_manifest(), int(wildcards.shard), N_SHARDS)["trial"])


def get_shard_crops_sources(wildcards):
    """What a face shard's stores are made from: each trial's rows and crops."""
    return manifest_digest(["n_rows", "crops_source"], shard_trial_names(wildcards))


def get_shard_audio_sources(wildcards):
    """What an audio shard's stores are made from: each trial's rows, times and video."""
    return manifest_digest(["n_rows", "fps", "variable_rate", "video_source"], shard_trial_names(wildcards))


def get_shard_rows(wildcards):
    return manifest_digest(["n_rows"], shard_trial_names(wildcards))


def get_trial_splits(wildcards):
    return manifest_digest(["video", "split"])


def get_label_sources(wildcards):
    """What training and scoring read from the manifest: splits, rows, times and labels."""
    return manifest_digest(["split", "n_rows", "fps", "variable_rate", "labels_source"])


def get_video_path(wildcards):
    """Raw video of a base video name."""
    rows = get_manifest().query("video == @wildcards.video")
    return rows["video_path"].iloc[0]


def shard_videos(shard):
    """Raw videos of one extraction shard (every N-th video in sorted order)."""
    return sorted(get_manifest()["video"].unique())[int(shard) :: N_SHARDS]


def get_shard_audio(wildcards):
    """WAV files a shard reads: each video's mixture, or its Spleeter vocals for a backbone on vocals."""
    backbone = wildcards.get("backbone")
    track = ".vocals" if backbone and config["backbones"][backbone]["input"] == "vocals" else ""
    return [f"results/audio/{video}{track}.wav" for video in shard_videos(wildcards.shard)]


def get_imported_file(wildcards):
    """The HDF5 file an imported backbone's stores are written from."""
    return config["backbones"][wildcards.backbone]["id"]


def get_backbone_spec(wildcards):
    return config["backbones"][wildcards.backbone]


def feature_shards(backbones):
    """Shard summaries whose existence means the backbones' stores are complete."""
    return expand("results/features/{backbone}/shards/{shard}.tsv", backbone=backbones, shard=range(N_SHARDS))


def get_system_feature_shards(wildcards):
    return feature_shards(config["systems"][wildcards.system]["features"])


def get_system(wildcards):
    return config["systems"][wildcards.system]


def system_postprocess(system):
    """A system's post-processing: its own (its paper's protocol), else the config's."""
    return config["systems"][system].get("postprocess") or config["postprocess"]


def get_system_smoothing(wildcards):
    return system_postprocess(wildcards.system)["smoothing_seconds"]


def get_checkpoint_metadata(wildcards):
    """What a checkpoint keeps beside the system spec, for `vapipe predict`: the specs of the
    backbones it reads and the post-processing its predictions get."""
    features = config["systems"][wildcards.system]["features"]
    backbones = {name: config["backbones"][name] for name in features}
    return {"backbones": backbones, "postprocess": system_postprocess(wildcards.system)}


def system_folds(system):
    """Folds a system trains on: its own `folds:` list, or every fold of the config."""
    return config["systems"][system].get("folds", FOLDS)


def get_system_folds(wildcards):
    return system_folds(wildcards.system)


def get_system_fold_frames(wildcards):
    """Per-frame predictions of every fold of a system."""
    return expand(
        "results/predictions/{system}/{fold}/frames.tsv", system=wildcards.system, fold=system_folds(wildcards.system)
    )


def get_system_extra_inputs(wildcards):
    """Masks a system trains on (train_on: speech) and the text prototypes its model reads."""
    system = config["systems"][wildcards.system]
    inputs = {}
    if system["train"]["train_on"] == "speech":
        inputs["masks"] = all_mask_outputs()
    prototypes = system["params"].get("prototypes")
    if prototypes:
        inputs["prototypes"] = prototypes
    return inputs


def get_table_metrics(wildcards):
    """Metrics of the systems a results table lists."""
    return expand("results/metrics/{system}.tsv", system=config["tables"][wildcards.table]["systems"])


def get_table(wildcards):
    return config["tables"][wildcards.table]


def get_fusion(wildcards):
    return FUSIONS[wildcards.fusion]


def get_text_tower(wildcards):
    return config["text_towers"][wildcards.tower]


def get_paper_title(wildcards):
    return PAPERS[wildcards.paper]["title"]


def get_exported_shards(wildcards):
    return feature_shards([wildcards.backbone])


def submission_folds():
    """Folds whose test rows the submission takes; a fused system has one table, 'fused'."""
    return ["fused"] if config["submission"]["system"] in FUSIONS else config["submission"]["folds"]


def get_submission_frames(wildcards):
    """Per-frame predictions of the submitted system's folds, or of the fused system."""
    system = config["submission"]["system"]
    if system in FUSIONS:
        return [f"results/fusion/{system}/frames.tsv"]
    return expand("results/predictions/{system}/{fold}/frames.tsv", system=system, fold=submission_folds())


def get_fusion_upsampled(wildcards):
    """Unsmoothed per-frame predictions of a fusion's systems, system by system, fold by fold."""
    fusion = FUSIONS[wildcards.fusion]
    return [
        f"results/predictions/{system}/{fold}/upsampled.tsv" for system in fusion["systems"] for fold in fusion["folds"]
    ]


def get_row_metrics(wildcards):
    """Metrics of the system or fused system a paper row reports."""
    row = paper_row(wildcards)
    return f"results/metrics/{row.get('system') or row.get('fusion')}.tsv"


def paper_row(wildcards):
    rows = PAPERS[wildcards.paper]["rows"]
    if wildcards.row not in rows:
        raise WorkflowError(f"{config['paper_rows']}: paper '{wildcards.paper}' has no row '{wildcards.row}'")
    return rows[wildcards.row]


def get_paper_rows(wildcards):
    return [f"results/rows/{wildcards.paper}/{row}.tsv" for row in PAPERS[wildcards.paper]["rows"]]


def all_mask_outputs():
    """Shard summaries whose existence means every trial's vad and mouth mask stores are complete."""
    return expand("results/masks/{mask}/shards/{shard}.tsv", mask=["vad", "mouth"], shard=range(N_SHARDS))
