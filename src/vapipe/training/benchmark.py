"""How fast a fold loads and trains, and how much memory it takes, on synthetic stores of real widths.

    python -m vapipe.training.benchmark fold ROOT --scale 0.125          # write a synthetic fold
    python -m vapipe.training.benchmark load ROOT                        # cold load vs np.load + float32
    python -m vapipe.training.benchmark train ROOT --system tcn_av --epochs 1   # peak RSS, s/epoch

`synthetic_fold` writes a fold shaped like an official Aff-Wild2 fold at `scale` (1.6 M training and
0.37 M held-out frames at scale 1, trials of 1,000 to 12,000 frames, 30 fps): one Zarr store per
(feature, trial) exactly as extraction writes them (`write_store`), annotations, a manifest and a
folds table. The features are noise around a smooth function of the labels, so a model can learn.

`loading_benchmark` drops the page cache before each reading (root only: `echo 3 >
/proc/sys/vm/drop_caches`), then reads the fold the trainer's way (`load_groups`, float16) and the
same arrays saved as ``.npy`` with ``np.load(...).astype(np.float32)``; the ratio of their
throughputs is what the stores' chunking and compression were chosen by.

`training_benchmark` runs `vapipe.training.run.train_fold` in a fresh process and reports its peak
resident memory (``ru_maxrss``), the seconds of each epoch and the prediction throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vapipe.features.cache import store_path, write_store

REAL_FOLD = {"train": 1_600_000, "heldout": 370_000}  # frames of an official Aff-Wild2 fold
REAL_WIDTHS = {"face_resnet50": 2048, "voice_wavlm_base": 768}
# The systems of config/affwild2.yaml, at their settings there (sage early-stops on a tenth of the videos).
SYSTEMS = {
    "tcn_av": {"model": "tcn_fusion", "params": {"hidden": 256, "levels": 4, "kernel_size": 5, "dropout": 0.3}},
    "sage": {"model": "sage", "params": {}, "train": {"early_stopping_patience": 8, "validation_fraction": 0.1}},
}


def synthetic_fold(
    root: str | Path,
    scale: float,
    widths: dict[str, int] = REAL_WIDTHS,
    test_frames: int = 20_000,
    seed: int = 0,
    compression: str | None = None,
    chunk_rows: int | None = None,
    npy: bool = False,
    trial_frames: tuple[int, int] = (1_000, 12_000),
    labelled_share: float = 1.0,
) -> dict:
    """Write a synthetic fold under `root` (features/, annotations/, manifest.tsv, folds.tsv);
    `npy` also saves every feature array as ``npy/{feature}/{trial}.npy`` (float16) for
    `loading_benchmark`. Trials are `trial_frames` (min, max) frames long. Only the first
    `labelled_share` of the training frames are annotated (the rest -5): the trainer skips windows
    with no label, so an epoch costs that share while the fold is held whole (to measure memory
    at size without whole epochs). Returns
    {"frames": {split: frames}, "bytes": float16 bytes of the training and held-out features}."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    targets = {"Train_Set": REAL_FOLD["train"] * scale, "Validation_Set": REAL_FOLD["heldout"] * scale}
    targets["Test_Set"] = test_frames
    rows, mixing = [], {name: rng.normal(size=(2, d)).astype(np.float32) for name, d in widths.items()}
    for split, target in targets.items():
        done = 0
        while done < target:
            n = int(min(rng.integers(trial_frames[0], trial_frames[1] + 1), max(trial_frames[0], target - done)))
            trial = f"{split.split('_')[0].lower()}{len(rows):04d}"
            t = np.arange(n) / 30.0
            labels = np.stack([0.6 * np.sin(0.3 * t + rng.uniform(0, 6)), 0.5 * np.cos(0.2 * t + rng.uniform(0, 6))], 1)
            labels = labels.astype(np.float32)
            labels[rng.random(n) < 0.02] = -5  # a few unlabelled frames, as in Aff-Wild2
            if split == "Train_Set" and done >= labelled_share * target:
                labels[:] = -5
            for name, d in widths.items():
                features = (np.clip(labels, -1, 1) @ mixing[name] + rng.standard_normal((n, d), np.float32)).astype(
                    np.float16
                )
                valid = rng.random(n) > 0.05
                layout = {"chunk_rows": chunk_rows, "compression": compression}
                layout = {k: v for k, v in layout.items() if v is not None}  # None: the stores' defaults
                write_store(store_path(root / "features", name, trial), features, valid, {"backbone": name}, **layout)
                if npy:
                    (root / "npy" / name).mkdir(parents=True, exist_ok=True)
                    np.save(root / "npy" / name / f"{trial}.npy", features)
            annotation = root / "annotations" / f"{trial}.txt"
            annotation.parent.mkdir(parents=True, exist_ok=True)
            if split != "Test_Set":
                np.savetxt(annotation, labels, fmt="%.3f", delimiter=",", header="valence,arousal", comments="")
            rows.append(
                {
                    "trial": trial,
                    "video": trial,
                    "split": split,
                    "fps": 30.0,
                    "n_rows": n,
                    "annotation_path": str(annotation) if split != "Test_Set" else "",
                    "kfold": len(rows) % 5 if split != "Test_Set" else -1,
                }
            )
            done += n
    table = pd.DataFrame(rows)
    table.drop(columns="kfold").to_csv(root / "manifest.tsv", sep="\t", index=False)
    table[["trial", "split", "kfold"]].to_csv(root / "folds.tsv", sep="\t", index=False)
    frames = table.groupby("split")["n_rows"].sum().to_dict()
    labelled = frames["Train_Set"] + frames["Validation_Set"]
    return {"frames": frames, "bytes": int(labelled * sum(widths.values()) * 2)}


def read_fold_tables(root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(manifest, folds) of a synthetic fold, as `train_fold` takes them."""
    root = Path(root)
    manifest = pd.read_csv(root / "manifest.tsv", sep="\t", keep_default_na=False)
    return manifest, pd.read_csv(root / "folds.tsv", sep="\t")


def drop_page_cache() -> None:
    """Write dirty pages and drop the page cache (root only), so that the next read is from disk."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def loading_benchmark(root: str | Path, repeats: int = 2) -> dict:
    """Cold-cache seconds and MB/s of loading the fold's training and held-out features the trainer's
    way (`load_groups`, float16) and as ``np.load(...).astype(np.float32)`` of the same arrays;
    ``ratio`` = trainer throughput / ``np.load`` throughput (best of `repeats` each)."""
    from vapipe.training.data import load_groups

    root = Path(root)
    manifest, folds = read_fold_tables(root)
    trials = folds.loc[folds["split"] != "Test_Set", "trial"].tolist()
    names = sorted(p.name for p in (root / "features").iterdir())
    n_bytes = 0
    timings = {"load_groups": [], "np_load_float32": []}
    for _ in range(repeats):
        drop_page_cache()
        started = time.perf_counter()
        loaded = load_groups(manifest, {"fold": trials}, names, root / "features")["fold"]
        timings["load_groups"].append(time.perf_counter() - started)
        n_bytes = sum(t.inputs[n].nbytes for t in loaded for n in names)
        del loaded
        drop_page_cache()
        started = time.perf_counter()
        arrays = [np.load(root / "npy" / n / f"{t}.npy").astype(np.float32) for t in trials for n in names]
        timings["np_load_float32"].append(time.perf_counter() - started)
        del arrays
    best = {k: min(v) for k, v in timings.items()}
    return {
        "float16_bytes": n_bytes,
        **{f"{k}_seconds": round(v, 3) for k, v in best.items()},
        **{f"{k}_MB_per_s": round(n_bytes / v / 1e6, 1) for k, v in best.items()},
        "ratio": round(best["np_load_float32"] / best["load_groups"], 3),
    }


def training_benchmark(
    root: str | Path, system: str = "tcn_av", epochs: int = 1, batch_size: int = 32, out: str | Path | None = None
) -> dict:
    """Train `system` (a key of `SYSTEMS`) on the synthetic fold's official split in this process,
    through `train_fold`; returns the peak RSS (GB), the fold's float16 bytes, seconds per epoch,
    and the held-out prediction throughput (frames/s)."""
    from vapipe.specs import SystemSpec, TrainSpec
    from vapipe.training.run import train_fold
    from vapipe.training.system import load_system

    root = Path(root)
    manifest, folds = read_fold_tables(root)
    names = sorted(p.name for p in (root / "features").iterdir())
    spec = SystemSpec(
        model=SYSTEMS[system]["model"],
        features=tuple(names),
        window=300,
        stride=200,
        params=SYSTEMS[system]["params"],
        train=TrainSpec(
            epochs=epochs,
            batch_size=batch_size,
            lr=5e-4,
            warmup_epochs=0,
            seed=0,
            device="cpu",
            **SYSTEMS[system].get("train", {}),
        ),
    )
    out = Path(out or root / "run" / system)
    started, cpu = time.perf_counter(), time.process_time()
    scores = train_fold(
        system, spec, "official", manifest, folds, root / "features", out / "model", out / "p.tsv", out / "h.json"
    )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    history = json.loads((out / "h.json").read_text())["history"]
    # prediction throughput: the held-out trials again, through the fitted system
    from vapipe.training.data import load_trials

    heldout = folds.loc[folds["split"] == "Validation_Set", "trial"].tolist()
    trials = load_trials(manifest, heldout, names, root / "features", dtype=np.float16)
    fitted = load_system(out / "model")
    prediction, prediction_cpu = time.perf_counter(), time.process_time()
    fitted.predictions_table(trials, "heldout")
    prediction, prediction_cpu = time.perf_counter() - prediction, time.process_time() - prediction_cpu
    labelled = folds["split"] != "Test_Set"
    frames = int(manifest.set_index("trial").loc[folds.loc[labelled, "trial"], "n_rows"].sum())
    return {
        "system": system,
        "peak_rss_GB": round(peak / 1e9, 3),
        "float16_GB": round(frames * sum(_width(root, n) for n in names) * 2 / 1e9, 3),
        "seconds_per_epoch": [h["seconds"] for h in history],
        "train_fold_seconds": round(seconds, 1),
        "train_fold_cpu_seconds": round(cpu, 1),
        "labelled_training_windows": _labelled_windows(manifest, folds),
        "prediction_frames_per_s": round(sum(t.n_rows for t in trials) / prediction, 1),
        "prediction_frames_per_cpu_s": round(sum(t.n_rows for t in trials) / prediction_cpu, 1),
        "heldout_mean_ccc": round(scores["mean"], 4),
    }


def prediction_benchmark(system, trials: list) -> float:
    """Frames per second of `system.predictions_table` on `trials` (any fitted system)."""
    started = time.perf_counter()
    system.predictions_table(trials, "heldout")
    return sum(t.n_rows for t in trials) / (time.perf_counter() - started)


def _labelled_windows(manifest: pd.DataFrame, folds: pd.DataFrame) -> int:
    """Training windows (300 rows every 200) of the annotated training trials: what an epoch costs."""
    from vapipe.data.affwild2 import read_annotation
    from vapipe.training.windows import window_starts

    rows = manifest.set_index("trial")
    train = folds.loc[folds["split"] == "Train_Set", "trial"]
    labelled = [t for t in train if (read_annotation(rows.at[t, "annotation_path"]) != -5).any()]
    return sum(len(window_starts(int(rows.at[t, "n_rows"]), 300, 200)) for t in labelled)


def _width(root: Path, name: str) -> int:
    from vapipe.features.cache import store_dim

    return store_dim(next((root / "features" / name).glob("*.zarr")))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["fold", "load", "train"])
    parser.add_argument("root", type=Path)
    parser.add_argument("--scale", type=float, default=1 / 16)
    parser.add_argument("--compression", default=None, help="zstd, or none (the default)")
    parser.add_argument("--chunk-rows", type=int, default=None)
    parser.add_argument("--npy", action="store_true", help="also save .npy copies (for `load`)")
    parser.add_argument("--labelled-share", type=float, default=1.0, help="of the training frames")
    parser.add_argument("--system", default="tcn_av", choices=sorted(SYSTEMS))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if args.command == "fold":
        shutil.rmtree(args.root, ignore_errors=True)
        compression = None if args.compression in (None, "none") else args.compression
        result = synthetic_fold(
            args.root,
            args.scale,
            compression=compression,
            chunk_rows=args.chunk_rows,
            npy=args.npy,
            labelled_share=args.labelled_share,
        )
    elif args.command == "load":
        result = loading_benchmark(args.root)
    else:
        result = training_benchmark(args.root, args.system, args.epochs, args.batch_size)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
