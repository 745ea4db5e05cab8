"""Frames per second of each configured backbone on a dataset's trials, through the real path.

    python -m vapipe.features.benchmark config/config.yaml config/backbones_all.yaml \\
        --root resources/demo --trials 4 --device cpu

Each backbone is built once (build time reported apart), then embeds the first `--trials` trials
exactly as an extraction job does (`vapipe.features.extract.embed_trial`: crop decoding, clips,
flip, audio windows, pooling onto frames). Audio tracks are decoded to 16 kHz first, untimed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from vapipe.data.manifest import DatasetLayout, build_manifest
from vapipe.features.audio import extract_audio
from vapipe.features.backbones import create_backbone
from vapipe.features.extract import embed_trial


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
        rows.append({
            "backbone": name, "kind": spec["kind"], "dim": backbone.dim, "frames": frames,
            "build_s": round(built - start, 2), "embed_s": round(seconds, 2),
            "frames_per_s": round(frames / seconds, 1),
        })
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
        table = benchmark_backbones(backbones, manifest, audio, args.device)
    print(f"{len(manifest)} trials, {int(manifest['n_rows'].sum())} frames, device {args.device}, "
          f"{torch.get_num_threads()} torch threads")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
