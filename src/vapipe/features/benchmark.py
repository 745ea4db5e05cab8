"""Frames per second of each configured backbone on a dataset's trials, through the real path.

    python -m vapipe.features.benchmark config/config.yaml config/backbones_all.yaml \\
        --root resources/demo --trials 4 --device cpu

Each backbone is built once (build time reported apart), then embeds the first `--trials` trials
exactly as an extraction job does (`vapipe.features.extract.embed_trial`: crop decoding, clips,
flip, audio windows, pooling onto frames). Audio tracks are decoded to 16 kHz first, untimed.

``--overhead`` compares, per backbone, the extraction job's own code (`extract_shard`: completeness
checks, JPEG decoding, batching, the forward, pooling, writing the Zarr stores) with the bare
model forward on the same inputs held in memory, same device and batch size, and prints the
ratio of their frames/s (the target is at least 0.9)::

    python -m vapipe.features.benchmark config/config.yaml config/benchmark.yaml --overhead
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from vapipe.data.affwild2 import index_crops
from vapipe.data.manifest import DatasetLayout, build_manifest
from vapipe.features.audio import extract_audio, read_wav
from vapipe.features.backbones import Backbone, create_backbone
from vapipe.features.extract import FaceCrops, available_rows, embed_trial, extract_shard, flip_horizontally
from vapipe.specs import BackboneSpec


def merge_configs(paths: list[str]) -> dict:
    """Later YAML files update earlier ones key by key, as Snakemake's --configfile does."""

    def update(base: dict, new: dict) -> dict:
        for key, value in new.items():
            base[key] = update(dict(base.get(key) or {}), value) if isinstance(value, dict) else value
        return base

    merged: dict = {}
    for path in paths:
        merged = update(merged, yaml.safe_load(Path(path).read_text()) or {})
    return merged


def benchmark_backbones(
    backbones: dict[str, dict], manifest: pd.DataFrame, audio_paths: dict[str, str], device: str = "cpu"
) -> pd.DataFrame:
    """One row per backbone: build seconds, frames embedded, embedding seconds and frames/s."""
    rows = []
    for name, spec in backbones.items():
        start = time.perf_counter()
        backbone = create_backbone(name, spec, device=device)
        built = time.perf_counter()
        native: dict = {}
        for row in manifest.itertuples():
            embed_trial(backbone, spec, row, audio_paths, native)
        seconds = time.perf_counter() - built
        frames = int(manifest["n_rows"].sum())
        rows.append(
            {
                "backbone": name,
                "kind": spec["kind"],
                "dim": backbone.dim,
                "frames": frames,
                "build_s": round(built - start, 2),
                "embed_s": round(seconds, 2),
                "frames_per_s": round(frames / seconds, 1),
            }
        )
    return pd.DataFrame(rows)


def bare_forward_seconds(backbone: Backbone, spec: dict, manifest: pd.DataFrame, audio_paths: dict[str, str]) -> float:
    """Seconds of the model forward alone over the trials' inputs, decoded beforehand."""
    settings = BackboneSpec.from_dict(spec, f"backbones.{backbone.name}")
    batch_size, flip = settings.batch_size, settings.flip
    if backbone.modality == "face":
        crops = []
        for row in manifest.itertuples():
            found = index_crops(row.crops_dir)
            crops += [found[r + 1] for r in available_rows(found, row.n_rows)]
        dataset = FaceCrops(crops, 112)
        images = torch.stack([dataset[i] for i in range(len(dataset))])
        batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
        start = time.perf_counter()
        for batch in batches:
            backbone.embed(batch)
            if flip:
                backbone.embed(flip_horizontally(batch))
        return time.perf_counter() - start
    if backbone.modality == "audio":
        tracks = {row.video: (read_wav(audio_paths[row.video])[0], row.fps) for row in manifest.itertuples()}
        start = time.perf_counter()
        for samples, fps in tracks.values():
            backbone.embed_waveform(samples, fps=fps)
        return time.perf_counter() - start
    raise ValueError(
        f"backbone '{backbone.name}': --overhead measures face and audio backbones, not {backbone.modality}"
    )


def extraction_overhead(
    backbones: dict[str, dict],
    manifest: pd.DataFrame,
    audio_paths: dict[str, str],
    device: str = "cpu",
    repeats: int = 3,
) -> pd.DataFrame:
    """Per backbone: frames/s of `extract_shard` and of the bare forward (best of `repeats`), and their ratio."""
    rows = []
    for name, spec in backbones.items():
        backbone = create_backbone(name, spec, device=device)
        bare_forward_seconds(backbone, spec, manifest.head(1), audio_paths)  # warm-up, untimed
        bare, job = [], []
        for _ in range(repeats):
            bare.append(bare_forward_seconds(backbone, spec, manifest, audio_paths))
            with tempfile.TemporaryDirectory() as root:
                start = time.perf_counter()
                extract_shard(name, spec, manifest, 0, 1, root, audio_paths, device=device, backbone=backbone)
                job.append(time.perf_counter() - start)
        frames = int(manifest["n_rows"].sum())
        rows.append(
            {
                "backbone": name,
                "kind": spec["kind"],
                "batch_size": BackboneSpec.from_dict(spec).batch_size,
                "frames": frames,
                "bare_frames_per_s": round(frames / min(bare), 1),
                "job_frames_per_s": round(frames / min(job), 1),
                "ratio": round(min(bare) / min(job), 3),
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    """Command line: merged config files, a dataset root, how many trials, which device."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", help="config files, merged in order")
    parser.add_argument("--root", help="dataset root (default: the config's dataset.root)")
    parser.add_argument("--trials", type=int, default=4, help="trials to embed per backbone")
    parser.add_argument("--only", nargs="*", help="backbone names (default: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--overhead", action="store_true", help="extraction job against bare forward")
    parser.add_argument("--repeats", type=int, default=3, help="with --overhead: best of this many")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = merge_configs(args.configs)
    dataset = {**config["dataset"], **({"root": args.root} if args.root else {})}
    manifest, _ = build_manifest(DatasetLayout.from_config(dataset))
    manifest = manifest.sort_values("trial").head(args.trials)
    backbones = {n: s for n, s in config["backbones"].items() if not args.only or n in args.only}
    with tempfile.TemporaryDirectory() as folder:
        audio = {}
        for video, path in manifest.groupby("video")["video_path"].first().items():
            audio[video] = str(Path(folder) / f"{video}.wav")
            extract_audio(path, audio[video])
        if args.overhead:
            table = extraction_overhead(backbones, manifest, audio, args.device, args.repeats)
        else:
            table = benchmark_backbones(backbones, manifest, audio, args.device)
    print(
        f"{len(manifest)} trials, {int(manifest['n_rows'].sum())} frames, device {args.device}, "
        f"{torch.get_num_threads()} torch threads"
    )
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
