"""Stage 1 jobs: embed the trials of one shard with one backbone into the Zarr cache.

A shard is every n-th raw video (in sorted order), so both people of a video share a shard and
an audio track is embedded once. Finished stores made with the same settings are skipped, which
makes a rerun after a crash redo only the unfinished trials.

Three paths, by the backbone's modality: ``face`` (one crop per row, JPEGs decoded in DataLoader
workers), ``face_clip`` (a clip of crops centred on each row, `vapipe.features.clips`) and
``audio`` (native frames pooled onto the rows, `vapipe.features.alignment`). On CUDA, batches go
through pinned memory and the backbones run under autocast. ``flip: true`` adds the embeddings
of the mirrored crops to the same store as ``features_flipped``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from vapipe.data.affwild2 import DatasetError, index_crops
from vapipe.data.manifest import input_source, shard_trials
from vapipe.data.timing import row_spans
from vapipe.features.alignment import pool_to_frames
from vapipe.features.audio import read_wav
from vapipe.features.backbones import Backbone, create_backbone
from vapipe.features.cache import fingerprint, is_complete, skipped_trial, store_path, write_store
from vapipe.features.clips import clip_indices
from vapipe.features.progress import Progress
from vapipe.specs import BackboneSpec

log = logging.getLogger(__name__)

# Spec keys that change speed, never the features: left out of the stores' fingerprint.
ENGINEERING_KEYS = ("batch_size", "num_workers", "progress_seconds")


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


class FaceFeatures(NamedTuple):
    """A face trial's features [n_rows, D], validity [n_rows] and, with flip, the flipped view."""

    features: np.ndarray
    valid: np.ndarray
    flipped: np.ndarray | None


def flip_horizontally(images: torch.Tensor) -> torch.Tensor:
    """Mirror uint8 crops [..., H, W, 3] left-right."""
    return images.flip(-2)


def available_rows(crops: dict[int, Path], n_rows: int) -> np.ndarray:
    """Sorted 0-based rows (of 0 .. n_rows - 1) that have a crop."""
    return np.asarray(sorted(f - 1 for f in crops if 1 <= f <= n_rows), dtype=np.int64)


def crop_loader(paths: list[Path], crop_size: int, batch_size: int, num_workers: int, device: torch.device):
    """Batches of decoded crops: JPEG decoding in worker processes, pinned memory for CUDA."""
    return torch.utils.data.DataLoader(
        FaceCrops(paths, crop_size),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )


def blank_face_features(
    crops_dir: str | Path, n_rows: int, dim: int, flip: bool
) -> tuple[dict[int, Path], np.ndarray, FaceFeatures]:
    """The trial's crops, the rows that have one, and zero features to fill (valid where a crop is)."""
    crops = index_crops(crops_dir)
    rows = available_rows(crops, n_rows)
    valid = np.zeros(n_rows, dtype=bool)
    valid[rows] = True
    features = np.zeros((n_rows, dim), dtype=np.float32)
    return crops, rows, FaceFeatures(features, valid, np.zeros_like(features) if flip else None)


def embed_face_views(
    backbone: Backbone,
    crops_dir: str | Path,
    n_rows: int,
    batch_size: int,
    num_workers: int = 0,
    crop_size: int = 112,
    flip: bool = False,
    progress: Progress | None = None,
) -> FaceFeatures:
    """Embed the crops of rows 0 .. n_rows - 1 (and their mirror images with `flip`)."""
    crops, rows, (features, valid, flipped) = blank_face_features(crops_dir, n_rows, backbone.dim, flip)
    done = 0
    for batch in crop_loader([crops[r + 1] for r in rows], crop_size, batch_size, num_workers, backbone.device):
        chunk = rows[done : done + len(batch)]
        features[chunk] = backbone.embed(batch)
        if flipped is not None:
            flipped[chunk] = backbone.embed(flip_horizontally(batch))
        done += len(batch)
        if progress is not None:
            progress.advance(len(batch))
    return FaceFeatures(features, valid, flipped)


def embed_face_trial(
    backbone: Backbone,
    crops_dir: str | Path,
    n_rows: int,
    batch_size: int,
    num_workers: int = 0,
    crop_size: int = 112,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed the crops of rows 0 .. n_rows - 1; rows without a crop are zero and invalid."""
    features, valid, _ = embed_face_views(backbone, crops_dir, n_rows, batch_size, num_workers, crop_size)
    return features, valid


def embed_clip_trial(
    backbone: Backbone,
    crops_dir: str | Path,
    n_rows: int,
    batch_size: int,
    num_workers: int = 0,
    crop_size: int = 112,
    flip: bool = False,
    progress: Progress | None = None,
) -> FaceFeatures:
    """Embed a clip centred on every row that has a crop (see `vapipe.features.clips`).

    The trial's crops are decoded once (in DataLoader workers) and held as uint8, about 37 kB a
    frame at 112 px, so a 20,000-frame trial needs about 750 MB; clips are gathered from them.
    """
    crops, rows, (features, valid, flipped) = blank_face_features(crops_dir, n_rows, backbone.dim, flip)
    if len(rows) == 0:
        return FaceFeatures(features, valid, flipped)
    loader = crop_loader([crops[r + 1] for r in rows], crop_size, max(batch_size, 64), num_workers, torch.device("cpu"))
    frames = torch.cat(list(loader))
    index = clip_indices(rows, rows, n_rows, backbone.clip_length, backbone.clip_stride)
    pin = backbone.device.type == "cuda"
    for start in range(0, len(rows), batch_size):
        clips = frames[torch.from_numpy(index[start : start + batch_size])]  # [B, L, H, W, 3]
        clips = clips.pin_memory() if pin else clips
        chunk = rows[start : start + batch_size]
        features[chunk] = backbone.embed_clips(clips)
        if flipped is not None:
            flipped[chunk] = backbone.embed_clips(flip_horizontally(clips))
        if progress is not None:
            progress.advance(len(chunk))
    return FaceFeatures(features, valid, flipped)


def embed_audio_trial(
    backbone: Backbone,
    samples: np.ndarray,
    fps: float,
    n_rows: int,
    native: tuple[np.ndarray, np.ndarray] | None = None,
    spans: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed a trial's audio and pool it onto its video rows (see vapipe.features.alignment)."""
    features, centres = native if native is not None else backbone.embed_waveform(samples, fps=fps)
    return pool_to_frames(features, centres, n_rows, fps, len(samples) / backbone.sample_rate, spans)


def settings_fingerprint(backbone_name: str, spec: dict) -> str:
    """Fingerprint of the settings that change a store's content (not batch size or workers)."""
    return fingerprint({"backbone": backbone_name, **{k: v for k, v in spec.items() if k not in ENGINEERING_KEYS}})


def embed_trial(
    backbone: Backbone,
    spec: dict,
    row,
    audio_paths: dict[str, str],
    native_by_video: dict[str, tuple[np.ndarray, np.ndarray]],
) -> FaceFeatures:
    """Features of one manifest row with the backbone's own path (crops, clips or audio)."""
    settings = BackboneSpec.from_dict(spec, f"backbones.{backbone.name}")
    flip, batch_size, num_workers = settings.flip, settings.batch_size, settings.num_workers
    every = settings.progress_seconds
    if backbone.modality in ("face", "face_clip"):
        progress = Progress(f"{backbone.name} {row.trial}", row.n_rows, "frames", every)
        embed = embed_face_views if backbone.modality == "face" else embed_clip_trial
        return embed(backbone, row.crops_dir, row.n_rows, batch_size, num_workers, flip=flip, progress=progress)
    if flip:
        raise ValueError(f"backbone '{backbone.name}': flip applies to face backbones only")
    path = audio_paths[row.video]
    samples, rate = read_wav(path)
    if rate != backbone.sample_rate:
        raise DatasetError(f"{path}: sample rate {rate}, expected {backbone.sample_rate}")
    if row.video not in native_by_video:  # _left and _right share one audio track (and fps)
        progress = Progress(f"{backbone.name} {row.video}", len(samples) / rate, "s of audio", every)
        native_by_video[row.video] = backbone.embed_waveform(samples, fps=row.fps, progress=progress)
    spans = row_spans(row)
    features, valid = embed_audio_trial(backbone, samples, row.fps, row.n_rows, native_by_video[row.video], spans)
    return FaceFeatures(features, valid, None)


def extract_shard(
    backbone_name: str,
    spec: dict,
    manifest: pd.DataFrame,
    shard: int,
    n_shards: int,
    feature_root: str | Path,
    audio_paths: dict[str, str],
    device: str = "cpu",
    on_bad_trial: str = "fail",
    backbone: Backbone | None = None,
) -> pd.DataFrame:
    """Fill the cache for one (backbone, shard); returns one summary row per trial.

    `backbone` is built from `spec` when not given (the benchmark passes one it built already).

    A trial whose files are bad (e.g. a crop that is not an image) stops the job, or with
    ``on_bad_trial='skip'`` gets no store and a summary row with status 'skipped' and the reason.

    With ``flip: true`` a face backbone's stores also hold ``features_flipped``, the embeddings
    of the mirrored crops (same rows, same valid mask); the trainer reads only ``features``.
    """
    spec = BackboneSpec.from_dict(spec, f"backbones.{backbone_name}").to_dict()  # defaults filled
    trials = shard_trials(manifest, shard, n_shards)
    settings_hash = settings_fingerprint(backbone_name, spec)
    todo = [
        row
        for row in trials.itertuples()
        if not is_complete(
            store_path(feature_root, backbone_name, row.trial), settings_hash, input_source(row, spec["input"])
        )
    ]
    todo_trials = {row.trial for row in todo}
    summary = [{"trial": t, "status": "cached"} for t in trials["trial"] if t not in todo_trials]
    log.info(
        "%s shard %d/%d: %d trials, %d already cached",
        backbone_name,
        shard,
        n_shards,
        len(trials),
        len(trials) - len(todo),
    )
    if not todo:
        return pd.DataFrame(summary)
    if backbone is None:
        backbone = create_backbone(backbone_name, spec, device=device)
    if backbone.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    native_by_video: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for row in todo:
        start = time.perf_counter()
        try:
            features, valid, flipped = embed_trial(backbone, spec, row, audio_paths, native_by_video)
        except DatasetError as error:
            summary.append(skipped_trial(row.trial, error, on_bad_trial, log))
            continue
        seconds = time.perf_counter() - start
        attrs = {
            "backbone": backbone_name,
            "kind": spec["kind"],
            "id": spec["id"],
            "pretrained": spec["pretrained"],
            "modality": backbone.modality,
            "fps": float(row.fps),
            "trial": row.trial,
            "fingerprint": settings_hash,
            "source": input_source(row, spec["input"]),
            "flipped": flipped is not None,
        }
        extra = {"features_flipped": flipped} if flipped is not None else None
        write_store(store_path(feature_root, backbone_name, row.trial), features, valid, attrs, extra=extra)
        rate_fps = row.n_rows / seconds if seconds > 0 else float("inf")
        log.info(
            "%s %s: %d rows, %.0f%% valid, %.1f s, %.1f frames/s",
            backbone_name,
            row.trial,
            row.n_rows,
            100 * valid.mean(),
            seconds,
            rate_fps,
        )
        summary.append(
            {
                "trial": row.trial,
                "status": "computed",
                "n_rows": row.n_rows,
                "dim": features.shape[1],
                "valid_fraction": round(float(valid.mean()), 4),
                "seconds": round(seconds, 3),
                "frames_per_s": round(rate_fps, 1),
            }
        )
    return pd.DataFrame(summary).sort_values("trial")
