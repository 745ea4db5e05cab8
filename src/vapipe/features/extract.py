"""Stage 1 jobs: embed the trials of one shard with one backbone into the Zarr cache.

A shard is every n-th raw video (in sorted order), so both people of a video share a shard and
an audio track is embedded once. Finished stores made with the same settings are skipped, which
makes a rerun after a crash redo only the unfinished trials.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from vapipe.data.affwild2 import DatasetError, index_crops
from vapipe.features.alignment import pool_to_frames
from vapipe.features.audio import read_wav
from vapipe.features.backbones import Backbone, create_backbone
from vapipe.features.cache import fingerprint, is_complete, store_path, write_store

log = logging.getLogger(__name__)


def shard_trials(manifest: pd.DataFrame, shard: int, n_shards: int) -> pd.DataFrame:
    """The manifest rows whose raw video falls in `shard` of `n_shards`."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is outside 0 .. {n_shards - 1}")
    videos = sorted(manifest["video"].unique())
    chosen = set(videos[shard::n_shards])
    return manifest[manifest["video"].isin(chosen)].sort_values("trial")


class FaceCrops(torch.utils.data.Dataset):
    """Decodes face crops (in DataLoader workers when there are any) as uint8 [H, W, 3]."""

    def __init__(self, paths: list[Path], size: int):
        self.paths = paths
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                if image.size != (self.size, self.size):
                    image = image.resize((self.size, self.size), Image.BILINEAR)
                return torch.from_numpy(np.asarray(image).copy())
        except (UnidentifiedImageError, OSError) as error:
            raise DatasetError(f"{path}: not a readable image ({error})") from None


def embed_face_trial(
    backbone: Backbone, crops_dir: str | Path, n_rows: int, batch_size: int, num_workers: int = 0,
    crop_size: int = 112,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed the crops of rows 0 .. n_rows - 1; rows without a crop are zero and invalid."""
    crops = index_crops(crops_dir)
    frames = sorted(f for f in crops if 1 <= f <= n_rows)
    valid = np.zeros(n_rows, dtype=bool)
    valid[np.asarray(frames, dtype=int) - 1] = True
    features = np.zeros((n_rows, backbone.dim), dtype=np.float32)
    loader = torch.utils.data.DataLoader(
        FaceCrops([crops[f] for f in frames], crop_size),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=backbone.device.type == "cuda",
    )
    done = 0
    rows = np.asarray(frames, dtype=int) - 1
    for batch in loader:
        features[rows[done : done + len(batch)]] = backbone.embed(batch)
        done += len(batch)
    return features, valid


def embed_audio_trial(
    backbone: Backbone, samples: np.ndarray, fps: float, n_rows: int,
    native: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed a trial's audio and pool it onto its video rows (see vapipe.features.alignment)."""
    features, centres = native if native is not None else backbone.embed_waveform(samples)
    return pool_to_frames(features, centres, n_rows, fps, len(samples) / backbone.sample_rate)


def extract_shard(
    backbone_name: str,
    spec: dict,
    manifest: pd.DataFrame,
    shard: int,
    n_shards: int,
    feature_root: str | Path,
    audio_paths: dict[str, str],
    device: str = "cpu",
) -> pd.DataFrame:
    """Fill the cache for one (backbone, shard); returns one summary row per trial."""
    trials = shard_trials(manifest, shard, n_shards)
    settings_hash = fingerprint({"backbone": backbone_name, **spec})
    todo = [
        row for row in trials.itertuples()
        if not is_complete(store_path(feature_root, backbone_name, row.trial), settings_hash)
    ]
    summary = [
        {"trial": row.trial, "status": "cached"} for row in trials.itertuples() if row not in todo
    ]
    log.info(
        "%s shard %d/%d: %d trials, %d already cached", backbone_name, shard, n_shards,
        len(trials), len(trials) - len(todo),
    )
    if not todo:
        return pd.DataFrame(summary)
    backbone = create_backbone(backbone_name, spec, device=device)
    native_by_video: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for row in todo:
        start = time.perf_counter()
        if backbone.modality == "face":
            features, valid = embed_face_trial(
                backbone, row.crops_dir, row.n_rows, spec.get("batch_size", 64),
                spec.get("num_workers", 0),
            )
        else:
            samples, rate = read_wav(audio_paths[row.video])
            if rate != backbone.sample_rate:
                raise DatasetError(f"{audio_paths[row.video]}: sample rate {rate}, expected {backbone.sample_rate}")
            if row.video not in native_by_video:  # _left and _right share one audio track
                native_by_video[row.video] = backbone.embed_waveform(samples)
            features, valid = embed_audio_trial(
                backbone, samples, row.fps, row.n_rows, native_by_video[row.video]
            )
        seconds = time.perf_counter() - start
        attrs = {
            "backbone": backbone_name, "kind": spec["kind"], "id": spec["id"],
            "pretrained": bool(spec.get("pretrained", False)), "modality": backbone.modality,
            "fps": float(row.fps), "trial": row.trial, "fingerprint": settings_hash,
        }
        write_store(store_path(feature_root, backbone_name, row.trial), features, valid, attrs)
        rate_fps = row.n_rows / seconds if seconds > 0 else float("inf")
        log.info(
            "%s %s: %d rows, %.0f%% valid, %.1f s, %.1f frames/s", backbone_name, row.trial,
            row.n_rows, 100 * valid.mean(), seconds, rate_fps,
        )
        summary.append({
            "trial": row.trial, "status": "computed", "n_rows": row.n_rows, "dim": features.shape[1],
            "valid_fraction": round(float(valid.mean()), 4), "seconds": round(seconds, 3),
            "frames_per_s": round(rate_fps, 1),
        })
    return pd.DataFrame(summary).sort_values("trial")
