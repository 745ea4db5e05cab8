"""Scale rehearsal (issue 15): the pipeline's heavy steps on an Aff-Wild2-shaped release, measured.

Nothing here needs the licensed data. `build_release` writes, cheaply, a release in Aff-Wild2's
layout and at its size (``fraction`` = 1: 594 trials, ~2.9 M annotated and test frames):

- 356 Train_Set, 76 Validation_Set and 162 test trials, whose lengths follow a log-normal spread
  scaled to the splits' real totals (train ≈ 1.6 M, validation ≈ 0.37 M, test ≈ 1.0 M frames,
  times ``fraction``); 44 raw videos hold two annotated people (``<video>_left`` / ``_right``), so
  there are 550 raw videos, in batch folders, ``.mp4``;
- frame rates spread as in Aff-Wild2 (mostly 30 and 29.97, then 25, 24, 23.98, a few at 15, 12 and
  6 fps); each video is 16 x 16 pixels with a silent 16 kHz AAC track, made by copying the packets of
  one encoded master per frame rate (no per-frame encoding);
- annotation files one or two rows longer than the video for most trials, some ``-5`` rows; a face
  crop name for every frame but a few gaps (hard links to one small JPEG per trial, so millions of
  crops cost directory entries, not bytes); 50 trials' crops in ``cropped_aligned_new_50_vids``;
  the test list and the organisers' example file (one row per test frame);
- feature stores in the pipeline's Zarr format (`vapipe.features.cache`) at the default real-data
  widths, ResNet-50 (2048) and WavLM-base (768), float16, synthetic: a random projection of the
  labels plus noise, so the models have something to learn.

`rehearse` then runs, each in a subprocess of its own (so each step's peak memory is its own, from
``os.wait4``), and prints one JSON object per step: building the release, the stores, the manifest
and folds, the dry run of the whole Aff-Wild2 workflow (``snakemake -n`` with
``config/affwild2.yaml``: jobs and seconds), one ``train_fold`` per model family on the official
split (1 epoch, CPU), both late fusions (random forest and DWF) on three systems' validation
frames, and the submission of the test frames. Every line has ``step``, ``seconds``,
``peak_rss_gb`` and ``features_gb_fp16`` (the float16 bytes of the features the step holds).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[2]
AFFWILD2_CONFIG = REPO / "config" / "affwild2.yaml"
SPLIT_TRIALS = {"Train_Set": 356, "Validation_Set": 76, "Test_Set": 162}
SPLIT_FRAMES = {"Train_Set": 1_600_000, "Validation_Set": 370_000, "Test_Set": 1_000_000}
TWO_PERSON_VIDEOS = 44  # 594 trials in 550 raw videos
NEW_FOLDER_TRIALS = 50  # trials whose crops ship in cropped_aligned_new_50_vids
# Frame rates and their shares (Aff-Wild2 comes from YouTube: mostly 30 / 29.97, a few far lower).
FRAME_RATES = (
    (Fraction(30), 0.45),
    (Fraction(30000, 1001), 0.25),
    (Fraction(25), 0.13),
    (Fraction(24), 0.06),
    (Fraction(24000, 1001), 0.05),
    (Fraction(15), 0.03),
    (Fraction(12), 0.02),
    (Fraction(6), 0.01),
)
LENGTH_SIGMA = 0.7  # log-normal spread of trial lengths
MIN_FRAMES = 4
VIDEO_SIZE = 16
AUDIO_RATE = 16_000
MAX_LINKS = 60_000  # hard links per file stay under ext4's 65 000
# The default real-data backbones (config/affwild2.yaml) and their widths.
BACKBONES = {"face_resnet50": ("face", 2048), "voice_wavlm_base": ("mixture", 768)}
# One system per model family, from config/affwild2.yaml, on the two backbones above.
FAMILIES = {
    "tcn_fusion": "tcn_av",
    "sage": "sage",
    "iaca": "iaca_rjca",
    "mstcn_cma": "mstcn_cma",
    "dasp": "dasp",
    "dresvyanskiy_face": "dresvyanskiy_face",
    "dresvyanskiy_audio": "dresvyanskiy_audio_v2",
    "kelm": "kelm_face",
}
FUSED_SYSTEMS = ("rehearsal_a", "rehearsal_b", "rehearsal_c")
GB = 1e9


# ------------------------------------------------------------------------------- the release plan


def plan_trials(fraction: float, seed: int = 0) -> pd.DataFrame:
    """One row per trial: trial, video, split, fps (Fraction), n_frames, n_rows, crop folder."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    rows = []
    for split, n_trials in SPLIT_TRIALS.items():
        raw = rng.lognormal(0.0, LENGTH_SIGMA, n_trials)
        lengths = np.maximum(MIN_FRAMES, np.round(raw / raw.sum() * SPLIT_FRAMES[split] * fraction)).astype(int)
        rows += [{"split": split, "n_frames": int(n)} for n in lengths]
    plan = pd.DataFrame(rows)
    # Two people in one video: trials 2j and 2j + 1 of one split share a video (and its length).
    same_split = np.flatnonzero(plan["split"].to_numpy()[:-1] == plan["split"].to_numpy()[1:])
    paired = set(rng.choice(same_split[same_split % 2 == 0], TWO_PERSON_VIDEOS, replace=False).tolist())
    rates, shares = zip(*FRAME_RATES)
    video_rate = rng.choice(len(rates), len(plan), p=np.array(shares) / sum(shares))
    numbers = rng.permutation(np.arange(1, 10 * len(plan)))
    trial, video, fps = [], [], []
    for i in range(len(plan)):
        if i - 1 in paired:
            name = f"{numbers[i - 1]}-30-{VIDEO_SIZE * 2}x{VIDEO_SIZE}"
            trial.append(f"{name}_right")
            video.append(name)
            fps.append(fps[-1])
            plan.loc[i, "n_frames"] = plan.loc[i - 1, "n_frames"]
            continue
        name = f"{numbers[i]}-30-{VIDEO_SIZE * 2}x{VIDEO_SIZE}" if i in paired else f"video{numbers[i]}"
        trial.append(f"{name}_left" if i in paired else name)
        video.append(name)
        fps.append(rates[video_rate[i]])
    plan["trial"], plan["video"], plan["fps"] = trial, video, fps
    annotated = plan["split"] != "Test_Set"
    extra = rng.choice([0, 1, 2], len(plan), p=[0.3, 0.6, 0.1])
    plan["n_rows"] = np.where(annotated, plan["n_frames"] + extra, plan["n_frames"])
    new_folder = set(rng.choice(len(plan), NEW_FOLDER_TRIALS, replace=False))
    plan["crops"] = ["cropped_aligned_new_50_vids" if i in new_folder else "cropped_aligned" for i in range(len(plan))]
    return plan[["trial", "video", "split", "fps", "n_frames", "n_rows", "crops"]]


def label_track(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    """[n, 2] smooth valence / arousal: a few 0.03-0.3 Hz sinusoids per target, in (-1, 1)."""
    t = np.arange(n) / fps
    tracks = []
    for _ in range(2):
        freqs = np.exp(rng.uniform(np.log(0.03), np.log(0.3), 3))
        wave = np.sin(2 * np.pi * freqs[:, None] * t + rng.uniform(0, 2 * np.pi, (3, 1))).sum(0) / 2
        tracks.append(np.tanh(rng.uniform(-0.5, 0.5) + 0.8 * wave))
    return np.round(np.stack(tracks, axis=1), 3)


# ------------------------------------------------------------------------------- writing the release


def _encode_master(path: Path, fps: Fraction, n_frames: int) -> None:
    """A 16 x 16 H.264 video of n_frames grey frames with a silent 16 kHz AAC track as long."""
    import av

    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width = video.height = VIDEO_SIZE
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "ultrafast", "bframes": "0"}
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        frame = av.VideoFrame.from_ndarray(np.full((VIDEO_SIZE, VIDEO_SIZE, 3), 128, np.uint8), format="rgb24")
        silence = np.zeros((1, 1024), np.float32)
        n_samples, written = round(n_frames * AUDIO_RATE / fps), 0
        for i in range(n_frames):
            frame.pts, frame.time_base = i, 1 / fps
            container.mux(video.encode(frame))
            while written < min(n_samples, round((i + 1) * AUDIO_RATE / fps)):
                chunk = av.AudioFrame.from_ndarray(silence[:, : n_samples - written], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts, chunk.time_base = AUDIO_RATE, written, Fraction(1, AUDIO_RATE)
                container.mux(audio.encode(chunk))
                written += chunk.samples
        container.mux(video.encode(None))
        container.mux(audio.encode(None))


def _copy_head(master: Path, path: Path, n_frames: int, fps: Fraction) -> None:
    """The first n_frames video packets of `master` and the audio packets of their span, copied."""
    import av

    end = Fraction(n_frames) / fps
    with av.open(str(master)) as source, av.open(str(path), mode="w") as out:
        vin, ain = source.streams.video[0], source.streams.audio[0]
        vout, aout = out.add_stream_from_template(vin), out.add_stream_from_template(ain)
        copied, audio_done = 0, False
        for packet in source.demux(vin, ain):
            if packet.dts is None:
                continue
            if packet.stream is vin:
                if copied == n_frames:
                    if audio_done:
                        break
                    continue
                packet.stream, copied = vout, copied + 1
            else:
                if packet.pts * packet.time_base >= end:
                    audio_done = True
                    if copied == n_frames:
                        break
                    continue
                packet.stream = aout
            out.mux(packet)


def _write_crops(folder: Path, n_frames: int, gaps: list[tuple[int, int]], jpeg: bytes) -> None:
    """NNNNN.jpg for every frame outside `gaps`, hard links to a few copies of one small JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    hidden = np.zeros(n_frames, bool)
    for start, stop in gaps:
        hidden[start:stop] = True
    source, links = None, 0
    for frame in np.flatnonzero(~hidden) + 1:
        path = folder / f"{frame:05d}.jpg"
        if source is None or links == MAX_LINKS:
            path.write_bytes(jpeg)
            source, links = path, 1
        else:
            os.link(source, path)
            links += 1


def _tiny_jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (112, 112), (128, 110, 100)).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


def build_release(root: str | Path, fraction: float, seed: int = 0) -> pd.DataFrame:
    """Write the Aff-Wild2-shaped release under `root` (see the module docstring); returns its plan."""
    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    plan = plan_trials(fraction, seed)
    rng = np.random.default_rng(seed + 1)
    masters = root / ".masters"
    masters.mkdir(parents=True)
    videos = plan.drop_duplicates("video")
    master_of = {}
    for k, (fps, group) in enumerate(videos.groupby("fps", sort=True)):
        master_of[fps] = masters / f"{k}.mp4"
        _encode_master(master_of[fps], fps, int(group["n_frames"].max()))
    for i, row in enumerate(videos.itertuples()):
        folder = root / "videos" / f"batch{1 + i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        _copy_head(master_of[row.fps], folder / f"{row.video}.mp4", row.n_frames, row.fps)
    shutil.rmtree(masters)
    jpeg = _tiny_jpeg()
    annotations = root / "6th_ABAW_Annotations" / "VA_Estimation_Challenge"
    example = ["image_location,valence,arousal"]
    for row in plan.itertuples():
        n_gaps = int(rng.integers(0, 3)) if row.n_frames > 50 else 0
        starts = rng.integers(0, row.n_frames - 20, n_gaps) if n_gaps else []
        _write_crops(root / row.crops / row.trial, row.n_frames, [(s, s + 20) for s in starts], jpeg)
        if row.split == "Test_Set":
            example += [f"{row.trial}/{frame:05d}.jpg,0,0" for frame in range(1, row.n_rows + 1)]
            continue
        labels = label_track(np.random.default_rng([seed, row.Index]), row.n_rows, float(row.fps))
        text = [f"{v:.3f},{a:.3f}" for v, a in labels]
        if row.Index % 3 == 0 and row.n_rows > 40:  # some unannotated stretches
            start = int(rng.integers(0, row.n_rows - 20))
            text[start : start + 20] = ["-5,-5"] * 20
        (annotations / row.split).mkdir(parents=True, exist_ok=True)
        (annotations / row.split / f"{row.trial}.txt").write_text("valence,arousal\n" + "\n".join(text) + "\n")
    tests = root / "names_of_videos_in_each_test_set"
    tests.mkdir(parents=True)
    test_trials = plan.loc[plan["split"] == "Test_Set", "trial"]
    (tests / "Valence_Arousal_Estimation_Challenge_test_set_release.txt").write_text("\n".join(test_trials) + "\n")
    (root / "CVPR_6th_ABAW_VA_test_set_example.txt").write_text("\n".join(example) + "\n")
    return plan


def dataset_config(root: str | Path) -> dict:
    """config/affwild2.yaml's ``dataset:`` section with its root at `root`."""
    dataset = yaml.safe_load(AFFWILD2_CONFIG.read_text())["dataset"]
    return {**dataset, "root": str(Path(root).resolve())}


# ------------------------------------------------------------------------------- feature stores


def write_feature_stores(manifest: pd.DataFrame, feature_root: str | Path, seed: int = 0) -> float:
    """Synthetic float16 stores of every trial for `BACKBONES`; returns their float16 GB.

    Each backbone's feature is a fixed random projection of the trial's labels (a random smooth
    track for test trials) plus noise rows drawn from a bank, so writing millions of rows costs
    no more random numbers than the bank holds."""
    from vapipe.data.affwild2 import read_annotation
    from vapipe.data.manifest import input_source
    from vapipe.features.cache import write_store

    rng = np.random.default_rng(seed)
    total = 0.0
    for backbone, (kind, dim) in BACKBONES.items():
        projection = rng.normal(0, 1, (2, dim)).astype(np.float32)
        bank = rng.normal(0, 1, (8192, dim)).astype(np.float16)
        for row in manifest.itertuples():
            n = int(row.n_rows)
            if row.annotation_path:
                labels = read_annotation(row.annotation_path)
                labels = np.where(labels == -5, 0.0, labels).astype(np.float32)
            else:
                labels = label_track(np.random.default_rng([seed, n]), n, float(row.fps)).astype(np.float32)
            noise = bank[(np.arange(n) + int(rng.integers(len(bank)))) % len(bank)]
            features = labels @ projection + noise
            valid = np.ones(n, bool)
            if kind == "face":
                valid[: min(n, 3)] = False  # a face not found at the start
            attrs = {
                "backbone": backbone,
                "trial": row.trial,
                "fps": float(row.fps),
                "fingerprint": "rehearsal",
                "source": input_source(row, kind),
                "pretrained": False,
                "synthetic": True,
            }
            from vapipe.features.cache import store_path

            write_store(store_path(feature_root, backbone, row.trial), features, valid, attrs)
            total += n * dim * 2 / GB
    return total


def features_gb(manifest: pd.DataFrame, trials, widths) -> float:
    """float16 GB of the features of `trials` at the given widths."""
    rows = manifest.set_index("trial").loc[list(trials), "n_rows"].sum()
    return float(rows) * sum(widths) * 2 / GB


# ------------------------------------------------------------------------------- the steps


def step_release(out: Path, fraction: float, seed: int) -> dict:
    plan = build_release(out / "release", fraction, seed)
    return {
        "trials": len(plan),
        "videos": int(plan["video"].nunique()),
        "frames": int(plan["n_rows"].sum()),
        "frames_by_split": {s: int(n) for s, n in plan.groupby("split")["n_rows"].sum().items()},
        "features_gb_fp16": 0.0,
    }


def step_manifest(out: Path, seed: int) -> dict:
    from vapipe.data.folds import make_folds
    from vapipe.data.manifest import DatasetLayout, build_manifest, write_manifest

    manifest, skipped = build_manifest(DatasetLayout.from_config(dataset_config(out / "release")))
    folds_spec = yaml.safe_load(AFFWILD2_CONFIG.read_text())["folds"]
    folds = make_folds(manifest, folds_spec["k"], folds_spec["seed"], folds_spec.get("train_k", 0))
    results = out / "run" / "results"
    results.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest, results / "manifest.tsv")
    (results / "skipped").mkdir(exist_ok=True)
    skipped.to_csv(results / "skipped" / "manifest.tsv", sep="\t", index=False)
    folds.to_csv(results / "folds.tsv", sep="\t", index=False)
    return {
        "trials": len(manifest),
        "skipped": len(skipped),
        "frames": int(manifest["n_rows"].sum()),
        "features_gb_fp16": 0.0,
    }


def step_features(out: Path, seed: int) -> dict:
    from vapipe.data.manifest import read_manifest

    manifest = read_manifest(out / "run" / "results" / "manifest.tsv")
    gb = write_feature_stores(manifest, out / "run" / "results" / "features", seed)
    return {
        "backbones": {n: d for n, (_, d) in BACKBONES.items()},
        "stores_gb_fp16": round(gb, 3),
        "features_gb_fp16": 0.0,
    }


def step_dry_run(out: Path) -> dict:
    """``snakemake -n`` of rule all with config/affwild2.yaml on the release, in an empty folder
    holding only the manifest (so the checkpoint's per-shard jobs are planned too)."""
    folder = out / "dry_run"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "results" / "skipped").mkdir(parents=True)
    for table in ("manifest.tsv", "skipped/manifest.tsv"):  # the checkpoint's outputs
        shutil.copy(out / "run" / "results" / table, folder / "results" / table)
    override = folder / "rehearsal.yaml"
    override.write_text(yaml.safe_dump({"dataset": dataset_config(out / "release")}))
    command = [
        str(Path(sys.executable).with_name("snakemake")),
        "-n",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        str(AFFWILD2_CONFIG),
        str(override),
        "--directory",
        str(folder),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise RuntimeError(f"snakemake -n failed:\n{done.stderr[-2000:]}")
    text = done.stdout + done.stderr
    requested = requested_memory(text, ("train_fold", "fuse_systems"))
    return {"jobs": parse_job_count(text), "mem_mb_requested": requested, "features_gb_fp16": 0.0}


def parse_job_count(text: str) -> int:
    """The 'total' of Snakemake's job stats table."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "total" and fields[1].isdigit():
            return int(fields[1])
    raise RuntimeError(f"no job count in snakemake's output:\n{text[-2000:]}")


def requested_memory(text: str, rules) -> dict[str, int]:
    """Largest ``mem_mb`` a dry run's jobs of each rule ask for (its per-job ``resources:`` lines)."""
    found, rule = {}, None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("rule ", "localrule ", "checkpoint ")) and stripped.endswith(":"):
            rule = stripped.split()[1].rstrip(":")
        elif stripped.startswith("resources:") and rule in rules:
            for item in stripped.removeprefix("resources:").split(","):
                key, _, value = item.strip().partition("=")
                if key == "mem_mb" and value.isdigit():
                    found[rule] = max(found.get(rule, 0), int(value))
    return found


def family_system(family: str, out: Path) -> dict:
    """The family's system from config/affwild2.yaml on the two rehearsal backbones, 1 epoch, CPU."""
    system = dict(yaml.safe_load(AFFWILD2_CONFIG.read_text())["systems"][FAMILIES[family]])
    face, voice = BACKBONES
    audio_only = family == "dresvyanskiy_audio"
    face_only = family in ("dresvyanskiy_face", "kelm")
    system["features"] = [voice] if audio_only else [face] if face_only else [face, voice]
    train = dict(system.get("train", {}))
    if "epochs" in train or system["model"] != "kelm":
        train["epochs"] = 1
    if system["model"] != "kelm":
        train["device"] = "cpu"
    train["train_on"] = "all"  # masks are not rehearsed
    system["train"] = train
    if "prototypes" in system.get("params", {}):
        path = out / "run" / "prototypes.npy"
        prototypes = np.random.default_rng(0).normal(size=(9, 512)).astype(np.float32)
        np.save(path, prototypes / np.linalg.norm(prototypes, axis=1, keepdims=True))
        system["params"] = {**system["params"], "prototypes": str(path)}
    system.pop("postprocess", None)
    return system


def step_train(out: Path, family: str) -> dict:
    import torch

    from vapipe.data.folds import OFFICIAL, split_fold
    from vapipe.data.manifest import read_manifest
    from vapipe.specs import SystemSpec
    from vapipe.training.run import train_fold

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    results = out / "run" / "results"
    manifest = read_manifest(results / "manifest.tsv")
    folds = pd.read_csv(results / "folds.tsv", sep="\t")
    system = family_system(family, out)
    name = FAMILIES[family]
    folder = out / "run" / "models" / name
    folder.mkdir(parents=True, exist_ok=True)
    train, heldout, _ = split_fold(folds, OFFICIAL)
    widths = [BACKBONES[f][1] for f in system["features"]]
    scores = train_fold(
        system_name=name,
        system=SystemSpec.from_dict(system, f"systems.{name}"),
        fold=OFFICIAL,
        manifest=manifest,
        folds=folds,
        feature_root=results / "features",
        checkpoint_dir=folder,
        predictions_path=folder / "raw.tsv",
        history_path=folder / "history.json",
    )
    return {
        "system": name,
        "features": system["features"],
        "train_frames": int(manifest.set_index("trial").loc[train, "n_rows"].sum()),
        "heldout_frames": int(manifest.set_index("trial").loc[heldout, "n_rows"].sum()),
        "heldout_ccc": round(float(scores["mean"]), 4),
        "features_gb_fp16": round(features_gb(manifest, [*train, *heldout], widths), 3),
    }


def synthetic_upsampled(manifest: pd.DataFrame, seed: int = 0) -> dict[str, dict[str, pd.DataFrame]]:
    """Per-frame tables of three systems on the official fold: validation rows (labels times a
    weight plus smooth noise) and test rows, as `vapipe.fusion.run.fuse_systems` reads them."""
    from vapipe.data.affwild2 import read_annotation

    rng = np.random.default_rng(seed)
    rows = manifest[manifest["split"].isin(["Validation_Set", "Test_Set"])]
    parts = {system: [] for system in FUSED_SYSTEMS}
    for row in rows.itertuples():
        n = int(row.n_rows)
        if row.annotation_path:
            truth = np.clip(read_annotation(row.annotation_path), -1, 1).astype(np.float64)
        else:
            truth = label_track(np.random.default_rng([seed, n]), n, float(row.fps))
        subset = "heldout" if row.annotation_path else "test"
        for weight, system in zip((0.8, 0.5, 0.2), FUSED_SYSTEMS):
            noise = label_track(rng, n, float(row.fps)) * (1 - weight) + rng.normal(0, 0.05, (n, 2))
            values = weight * truth + noise
            parts[system].append(
                pd.DataFrame(
                    {
                        "trial": row.trial,
                        "frame": np.arange(1, n + 1),
                        "valence": values[:, 0],
                        "arousal": values[:, 1],
                        "set": subset,
                    }
                )
            )
    return {system: {"official": pd.concat(tables, ignore_index=True)} for system, tables in parts.items()}


def step_fusion(out: Path, method: str, threads: int) -> dict:
    from vapipe.data.manifest import read_manifest
    from vapipe.fusion.run import fuse_systems

    manifest = read_manifest(out / "run" / "results" / "manifest.tsv")
    upsampled = synthetic_upsampled(manifest)
    spec = {"method": method, "systems": list(FUSED_SYSTEMS), "folds": ["official"], "seed": 0}
    started = time.perf_counter()
    frames, summary, metrics, _ = fuse_systems(spec, upsampled, manifest, 0.5, n_jobs=threads)
    fit_seconds = time.perf_counter() - started
    folder = out / "run" / "fusion" / method
    folder.mkdir(parents=True, exist_ok=True)
    frames.to_csv(folder / "frames.tsv", sep="\t", index=False, float_format="%.6f")
    headline = metrics.set_index("fold")["mean"].to_dict()
    return {
        "fitting_frames": int(summary["n_fitting_frames"]),
        "test_frames": int((frames["set"] == "test").sum()),
        "fit_seconds": round(fit_seconds, 1),
        "threads": threads,
        "scores": {k: round(float(v), 4) for k, v in headline.items()},
        "features_gb_fp16": 0.0,
    }


def step_submission(out: Path) -> dict:
    from vapipe.submission import build_submission, validate_submission, write_submission_zip

    frames = pd.read_csv(out / "run" / "fusion" / "random_forest" / "frames.tsv", sep="\t")
    example = out / "release" / "CVPR_6th_ABAW_VA_test_set_example.txt"
    table = build_submission(example, frames[frames["set"] == "test"])
    path = out / "run" / "submission.zip"
    write_submission_zip(table, path)
    return {"rows": validate_submission(path, example), "features_gb_fp16": 0.0}


STEPS = {
    "release": lambda out, args: step_release(out, args["fraction"], args["seed"]),
    "manifest": lambda out, args: step_manifest(out, args["seed"]),
    "features": lambda out, args: step_features(out, args["seed"]),
    "dry_run": lambda out, args: step_dry_run(out),
    "train": lambda out, args: step_train(out, args["family"]),
    "fusion": lambda out, args: step_fusion(out, args["method"], args["threads"]),
    "submission": lambda out, args: step_submission(out),
}
STAGES = ("release", "manifest", "features", "dry_run", "train", "fusion", "submission")


def run_measured(label: str, kind: str, out: Path, args: dict) -> dict:
    """Run one step in a subprocess; its own wall time and peak RSS (``os.wait4``) with its result."""
    result = out / "steps" / f"{label}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    payload = json.dumps({"kind": kind, "out": str(out), "args": args, "result": str(result)})
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "vapipe.rehearsal", payload], cwd=REPO)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    record = {"step": label, "seconds": round(time.perf_counter() - started, 1)}
    record["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)  # the machine may be shared
    record["peak_rss_gb"] = round(usage.ru_maxrss * 1024 / GB, 3)  # KiB on Linux; its own children included
    if process.returncode == 0 and result.is_file():
        record |= json.loads(result.read_text())
    else:
        record |= {"features_gb_fp16": None, "error": f"exit status {process.returncode} (see its stderr above)"}
    return record


def rehearse(
    out: str | Path,
    fraction: float,
    seed: int = 0,
    threads: int = 2,
    stages=STAGES,
    families=tuple(FAMILIES),
    print_line=print,
):
    """The measured steps in `stages` (in the rehearsal's order; ``train`` once per family in
    `families`), each record printed as one JSON line as it finishes; returns the records."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for given, known, what in ((stages, STAGES, "step"), (families, FAMILIES, "model family")):
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"unknown rehearsal {what} '{unknown[0]}'; known: {', '.join(known)}")
    plan = []
    for stage in STAGES:
        if stage not in stages:
            continue
        if stage == "train":
            plan += [(f"train_fold:{family}", "train", {"family": family}) for family in FAMILIES if family in families]
        elif stage == "fusion":
            plan += [(f"fusion:{m}", "fusion", {"method": m, "threads": threads}) for m in ("random_forest", "dwf")]
        else:
            plan.append((stage, stage, {}))
    records = []
    for label, kind, args in plan:
        record = run_measured(label, kind, out, {"fraction": fraction, "seed": seed, **args})
        record = {"fraction": fraction, **record}
        print_line(json.dumps(record))
        records.append(record)
    return records


def _child(payload: str) -> None:
    request = json.loads(payload)
    result = STEPS[request["kind"]](Path(request["out"]), request["args"])
    Path(request["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    _child(sys.argv[1])
