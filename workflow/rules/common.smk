# Input functions and wildcard constraints shared by every stage.
import os
from functools import lru_cache

from snakemake.exceptions import IncompleteCheckpointException

# `config` is the typed spec's plain form (the Snakefile): every key present, defaults filled.
from vapipe.config import IMPORTED_KIND, wildcard_pattern
from vapipe.data.folds import OFFICIAL
from vapipe.data.manifest import DatasetLayout, dataset_state, digest, read_manifest, shard_trials
from vapipe.evaluation.paper_rows import TARGETWISE
from vapipe.rehearsal_resources import (
    PLACEHOLDER_MB,
    backbone_width,
    fold_rows,
    fusion_mem_mb,
    kelm_system_mem_mb,
    train_fold_mem_mb,
)
from vapipe.specs import seed_member

DATASET = DatasetLayout.from_config(config["dataset"])
FOLDS = SPEC.fold_names()  # a system's default folds
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
    fold=wildcard_pattern(SPEC.folds.all_names()),
    fusion=wildcard_pattern(FUSIONS) if FUSIONS else "$^",
    paper=wildcard_pattern(PAPERS) if PAPERS else "$^",
    row=r"(?!comparisons\b)[A-Za-z0-9_]+",  # rows/{paper}/comparisons.tsv is the paired comparisons' table
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


def get_shard_vocals(wildcards):
    """Spleeter vocals of a shard's videos: voice activity is judged on the separated voice, as
    Dresvyanskiy et al. separate speech from noise and music first."""
    return [f"results/audio/{video}.vocals.wav" for video in shard_videos(wildcards.shard)]


def get_augment_seed(wildcards):
    """The augmentations' seed: the backbone's own (its random-init seed)."""
    return config["backbones"][wildcards.backbone].get("seed", 0)


def get_system_augmented_shards(wildcards):
    """Shard summaries of the augmented copies a system's training reads (train.augment_copies)."""
    system = config["systems"][wildcards.system]
    copies = system["train"]["augment_copies"]
    audio = [name for name in system["features"] if name in AUDIO_BACKBONES]
    if not copies or not audio:
        return []
    return expand(
        "results/features/{backbone}/augmented{copies}/shards/{shard}.tsv",
        backbone=audio,
        copies=copies,
        shard=range(N_SHARDS),
    )


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


def get_system_speech(wildcards):
    """The speech rule of a system trained on speech frames ({rule, gap_seconds, min_seconds}), else None."""
    train = config["systems"][wildcards.system]["train"]
    if train["train_on"] != "speech":
        return None
    return {
        "rule": train["speech_rule"],
        "gap_seconds": train["speech_gap_seconds"],
        "min_seconds": train["min_speech_seconds"],
    }


def get_system_voiced_inputs(wildcards):
    """A system trained on speech frames is also scored on its voiced segments, as Dresvyanskiy et
    al.'s Table 2 scores: its unsmoothed per-frame predictions and the masks."""
    if get_system_speech(wildcards) is None:
        return {}
    upsampled = expand(
        "results/predictions/{system}/{fold}/upsampled.tsv",
        system=wildcards.system,
        fold=system_folds(wildcards.system),
    )
    return {"upsampled": upsampled, "masks": all_mask_outputs()}


def get_seed_members(wildcards):
    """Member systems of a seed ensemble, one per seed (vapipe.specs.expand_seeds)."""
    return [seed_member(wildcards.system, seed) for seed in config["systems"][wildcards.system]["seeds"]]


def get_seed_member_predictions(wildcards):
    return [f"results/predictions/{member}/{wildcards.fold}/raw.tsv" for member in get_seed_members(wildcards)]


def get_seed_member_metrics(wildcards):
    return [f"results/metrics/{member}.tsv" for member in get_seed_members(wildcards)]


def get_system_histories(wildcards):
    """Training history of every run of a system, by label: its folds, or every (fold, seed)."""
    system = wildcards.system
    seeds = config["systems"][system].get("seeds") or []
    runs = {}
    for fold in system_folds(system):
        if len(seeds) > 1:
            for seed in seeds:
                runs[f"{fold} seed {seed}"] = f"results/models/{seed_member(system, seed)}/{fold}/history.json"
        else:
            runs[fold] = f"results/models/{system}/{fold}/history.json"
    return runs


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
    """Metrics of the systems a results table lists ('<system>.metrics'), and the seed table of each
    system trained with several seeds ('<system>.seeds')."""
    inputs = {}
    for system in config["tables"][wildcards.table]["systems"]:
        inputs[f"{system}.metrics"] = f"results/metrics/{system}.tsv"
        if len(config["systems"][system].get("seeds") or []) > 1:
            inputs[f"{system}.seeds"] = f"results/metrics/{system}.seeds.tsv"
    return inputs


def get_table(wildcards):
    return config["tables"][wildcards.table]


def get_fusion(wildcards):
    return FUSIONS[wildcards.fusion]


def get_text_tower(wildcards):
    return config["text_towers"][wildcards.tower]


def get_paper_title(wildcards):
    return PAPERS[wildcards.paper]["title"]


def get_paper_printed(wildcards):
    """A paper's printed-only rows (no system reproduces them)."""
    return PAPERS[wildcards.paper].get("printed") or {}


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


def get_row_inputs(wildcards):
    """What a paper row reads: its metrics; a target-wise row also its folds' predictions and the
    manifest (for the nested score), and a row with `submission:` the test submission it writes."""
    row = paper_row(wildcards)
    inputs = {"metrics": get_row_metrics(wildcards)}
    if row.get("score") == TARGETWISE:
        inputs["frames"] = get_row_fold_frames(wildcards)
        inputs["manifest"] = get_manifest_file(wildcards)
    if row.get("submission"):
        inputs["submission"] = f"results/rows/{wildcards.paper}/{wildcards.row}.submission.zip"
    if "system" in row and len(config["systems"][row["system"]].get("seeds") or []) > 1:
        inputs["seeds"] = f"results/metrics/{row['system']}.seeds.tsv"
    return inputs


def get_row_folds(wildcards):
    """Folds of a system row's system (none for a fusion row)."""
    row = paper_row(wildcards)
    return system_folds(row["system"]) if "system" in row else []


def get_row_fold_frames(wildcards):
    return expand(
        "results/predictions/{system}/{fold}/frames.tsv",
        system=paper_row(wildcards)["system"],
        fold=get_row_folds(wildcards),
    )


def get_row_fold_selection(wildcards):
    """The fold selection of a row that declares `submission:` (its test submission's)."""
    row = paper_row(wildcards)
    if not row.get("submission"):
        raise WorkflowError(f"{config['paper_rows']}: row {wildcards.paper}.{wildcards.row} declares no submission")
    return row["submission"]


def get_row_system(wildcards):
    return paper_row(wildcards)["system"]


def paper_row(wildcards):
    rows = PAPERS[wildcards.paper]["rows"]
    if wildcards.row not in rows:
        raise WorkflowError(f"{config['paper_rows']}: paper '{wildcards.paper}' has no row '{wildcards.row}'")
    return rows[wildcards.row]


def get_paper_rows(wildcards):
    return [f"results/rows/{wildcards.paper}/{row}.tsv" for row in PAPERS[wildcards.paper]["rows"]]


def get_paper_comparisons(wildcards):
    """The paired comparisons of a paper that lists any (workflow/rules/comparisons.smk)."""
    return [f"results/rows/{wildcards.paper}/comparisons.tsv"] if wildcards.paper in COMPARED_PAPERS else []


def get_comparison_frames(wildcards):
    """Per-frame predictions of both sides of every comparison of a paper, as '<name>.a' / '<name>.b'."""
    return {
        f"{name}.{key}": side_frames_path(entry[key])
        for name, entry in COMPARISONS[wildcards.paper].items()
        for key in ("a", "b")
    }


def get_paper_protocol(wildcards):
    return PAPERS[wildcards.paper].get("protocol", "")


def all_mask_outputs():
    """Shard summaries whose existence means every trial's vad and mouth mask stores are complete."""
    return expand("results/masks/{mask}/shards/{shard}.tsv", mask=["vad", "mouth"], shard=range(N_SHARDS))


# The missing-audio sweep (workflow/rules/sweeps.smk): Stage 1 stores per (share, seed), the report's runs.
from vapipe.evaluation.sweep import sweep_runs
from vapipe.features.silence import SEEDS, SHARES


def get_all_audio_tracks(wildcards):
    """Every video's track that the backbone reads (the job silences the held-out trials' ones)."""
    track = ".vocals" if config["backbones"][wildcards.backbone]["input"] == "vocals" else ""
    return [f"results/audio/{video}{track}.wav" for video in sorted(get_manifest()["video"].unique())]


def get_audio_sources(wildcards):
    return manifest_digest(["n_rows", "fps", "variable_rate", "video_source"])


def silenced_summaries(system, fold):
    """Stage 1 summaries of every (audio backbone, share, seed) a system's sweep reads."""
    audio = [n for n in config["systems"][system]["features"] if config["backbones"][n]["input"] != "face"]
    return expand(
        "results/sweeps/silenced/{fold}/share{share}_seed{seed}/{backbone}.tsv",
        fold=fold,
        share=[f"{share:g}" for share in SHARES],
        seed=SEEDS,
        backbone=audio,
    )


def get_sweep_checkpoints(wildcards):
    """Checkpoint configs a sweep predicts with: the system's, or every seed's of a seed average."""
    seeds = config["systems"][wildcards.system].get("seeds") or []
    systems = [seed_member(wildcards.system, s) for s in seeds] if len(seeds) > 1 else [wildcards.system]
    return [f"results/models/{system}/{wildcards.fold}/config.json" for system in systems]


def get_silenced_summaries(wildcards):
    return silenced_summaries(wildcards.system, wildcards.fold)


def fold_sweeps(fold):
    """The report's sweeps (report.missing_audio) of one fold: their systems, in their order."""
    return [system for system, run_fold in sweep_runs(config["report"]["missing_audio"]) if run_fold == fold]


def sweep_folds():
    return sorted({fold for _, fold in sweep_runs(config["report"]["missing_audio"])})


def get_sweep_systems(wildcards):
    return fold_sweeps(wildcards.fold)


def get_fold_sweeps(wildcards):
    return expand(
        "results/sweeps/{system}/{fold}/missing_audio.tsv", system=fold_sweeps(wildcards.fold), fold=wildcards.fold
    )


# Memory requests from the fold's size (vapipe.rehearsal_resources: measured by `vapipe rehearse`).
def get_train_fold_mem_mb(wildcards, attempt):
    """A fold's memory from its frames and its features' widths (vapipe.rehearsal_resources)."""
    try:
        manifest = get_manifest()
    except IncompleteCheckpointException:  # a dry run before the manifest: the job reruns this once it exists
        return PLACEHOLDER_MB
    names = config["systems"][wildcards.system]["features"]
    widths = [backbone_width(config["backbones"][name], FEATURE_ROOT, name) for name in names]
    model = config["systems"][wildcards.system]["model"]
    mb = train_fold_mem_mb(fold_rows(manifest), widths, attempt, model)
    if model == "kelm":  # its functionals and kernel matrix
        mb += kelm_system_mem_mb(manifest, widths, config["systems"][wildcards.system]["params"])
    return mb


def get_fusion_mem_mb(wildcards, attempt):
    """A fusion's memory from the rows of its systems' fold tables (vapipe.rehearsal_resources)."""
    try:
        manifest = get_manifest()
    except IncompleteCheckpointException:  # a dry run before the manifest: the job reruns this once it exists
        return PLACEHOLDER_MB
    fusion = FUSIONS[wildcards.fusion]
    return fusion_mem_mb(manifest, len(fusion["systems"]), len(fusion["folds"]), attempt)
