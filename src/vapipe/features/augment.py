"""Augmented copies of the audio features (Dresvyanskiy et al., sec. 4.2.1): Stage 1's half.

The paper's audio models train on windows augmented by polarity inversion, added white noise or a
change of volume; the paper gives no parameters, the authors' code does: one of the three, chosen
at random, for every training window, the noise's standard deviation uniform in [1e-4, 5e-3] times
the signal's (an SNR of 46 to 80 dB) and the gain uniform in [-20, -1] dB.

Our audio backbones are frozen and cached, so the augmentation happens before the backbone: copy k
of a video's waveform is augmented by `AUGMENTATIONS[k % 3]` (so any three consecutive copies hold
each kind once) with its level drawn from a generator seeded by (seed, video, k), then embedded by
the same backbone and pooled onto the same video rows as the plain features. The copies of a
trial are one store ``{feature_root}/{backbone}@augmented{N}/{trial}.zarr``: ``features`` is copy 0,
extra arrays ``copy1`` .. ``copy{N-1}`` the others (`vapipe.training.augmented` reads them and
samples one copy per training window per epoch; held-out and test trials never see them).
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vapipe.data.affwild2 import TEST_SPLIT, DatasetError
from vapipe.data.manifest import input_source
from vapipe.data.timing import row_spans
from vapipe.features.audio import read_wav
from vapipe.features.backbones import Backbone, create_backbone
from vapipe.features.cache import is_complete, skipped_trial, store_path, write_store
from vapipe.features.extract import embed_audio_trial, settings_fingerprint, shard_trials
from vapipe.specs import BackboneSpec

log = logging.getLogger(__name__)

AUGMENTATIONS = ("polarity", "white_noise", "volume")
NOISE_STD_RANGE = (1e-4, 5e-3)  # noise std over signal std (authors' WhiteNoise): 80 to 46 dB SNR
GAIN_DB_RANGE = (-20.0, -1.0)  # authors' Gain


def augmented_name(backbone: str, copies: int) -> str:
    """The cache folder name of a backbone's `copies` augmented copies."""
    return f"{backbone}@augmented{copies}"


def copy_generator(seed: int, video: str, copy: int) -> np.random.Generator:
    """The generator of one copy of one video: the same (seed, video, copy), the same augmentation."""
    digest = hashlib.sha256(f"{seed}:{video}:{copy}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def augment_waveform(samples: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """(augmented float32 samples, what was done): polarity inversion, white noise at a random
    relative level, or a random gain in dB (see the module docstring for the ranges)."""
    samples = np.asarray(samples, dtype=np.float32)
    if kind == "polarity":
        return -samples, {"kind": kind}
    if kind == "white_noise":
        ratio = float(rng.uniform(*NOISE_STD_RANGE))
        noise = rng.standard_normal(len(samples)).astype(np.float32) * np.float32(ratio * samples.std())
        return samples + noise, {"kind": kind, "noise_std_ratio": ratio, "snr_db": -20 * np.log10(ratio)}
    if kind == "volume":
        gain_db = float(rng.uniform(*GAIN_DB_RANGE))
        return samples * np.float32(10 ** (gain_db / 20)), {"kind": kind, "gain_db": gain_db}
    raise ValueError(f"unknown augmentation '{kind}'; known: {', '.join(AUGMENTATIONS)}")


def augmented_copy(samples: np.ndarray, video: str, copy: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Copy `copy` of a video's waveform: kind AUGMENTATIONS[copy % 3], level from its own generator."""
    return augment_waveform(samples, AUGMENTATIONS[copy % len(AUGMENTATIONS)], copy_generator(seed, video, copy))


def embed_augmented_trial(
    backbone: Backbone, samples: np.ndarray, row, copies: int, seed: int, native_by_video: dict
) -> tuple[list[np.ndarray], np.ndarray, list[dict]]:
    """([copies] float [n_rows, D] features of each augmented copy, valid [n_rows], what each did)."""
    if row.video not in native_by_video:  # _left and _right share one audio track
        native_by_video[row.video] = []
        for k in range(copies):
            augmented, done = augmented_copy(samples, row.video, k, seed)
            native_by_video[row.video].append((backbone.embed_waveform(augmented, fps=row.fps), done))
    features, descriptions, valid = [], [], None
    for native, done in native_by_video[row.video]:
        x, valid = embed_audio_trial(backbone, samples, row.fps, row.n_rows, native, row_spans(row))
        features.append(x)
        descriptions.append(done)
    return features, valid, descriptions


def extract_augmented_shard(
    backbone_name: str,
    spec: dict,
    manifest: pd.DataFrame,
    shard: int,
    n_shards: int,
    feature_root: str | Path,
    audio_paths: dict[str, str],
    copies: int,
    seed: int = 0,
    device: str = "cpu",
    on_bad_trial: str = "fail",
) -> pd.DataFrame:
    """Cache `copies` augmented copies of the audio features of one shard's labelled (non-test)
    trials; returns one summary row per trial (as `vapipe.features.extract.extract_shard`)."""
    if copies < 1:
        raise ValueError(f"augmented copies must be at least 1, got {copies}")
    spec = BackboneSpec.from_dict(spec, f"backbones.{backbone_name}").to_dict()
    if spec["input"] == "face":
        raise ValueError(f"backbone '{backbone_name}': augmented copies are of audio backbones only")
    name = augmented_name(backbone_name, copies)
    settings_hash = settings_fingerprint(name, {**spec, "augment_seed": seed, "augmentations": AUGMENTATIONS})
    trials = shard_trials(manifest, shard, n_shards)
    trials = trials[trials["split"] != TEST_SPLIT]
    todo = [
        row
        for row in trials.itertuples()
        if not is_complete(store_path(feature_root, name, row.trial), settings_hash, input_source(row, spec["input"]))
    ]
    summary = [{"trial": t, "status": "cached"} for t in trials["trial"] if t not in {r.trial for r in todo}]
    backbone = create_backbone(backbone_name, spec, device=device) if todo else None
    native_by_video: dict = {}
    for row in todo:
        start = time.perf_counter()
        try:
            path = audio_paths[row.video]
            samples, rate = read_wav(path)
            if rate != backbone.sample_rate:
                raise DatasetError(f"{path}: sample rate {rate}, expected {backbone.sample_rate}")
            features, valid, done = embed_augmented_trial(backbone, samples, row, copies, seed, native_by_video)
        except DatasetError as error:
            summary.append(skipped_trial(row.trial, error, on_bad_trial, log))
            continue
        attrs = {
            "backbone": backbone_name,
            "copies": copies,
            "augmentations": done,
            "fps": float(row.fps),
            "trial": row.trial,
            "fingerprint": settings_hash,
            "source": input_source(row, spec["input"]),
        }
        extra = {f"copy{k}": features[k] for k in range(1, copies)}
        write_store(store_path(feature_root, name, row.trial), features[0], valid, attrs, extra=extra or None)
        seconds = time.perf_counter() - start
        log.info("%s %s: %d copies of %d rows, %.1f s", name, row.trial, copies, row.n_rows, seconds)
        summary.append({"trial": row.trial, "status": "computed", "n_rows": row.n_rows, "seconds": round(seconds, 3)})
    return pd.DataFrame(summary).sort_values("trial") if summary else pd.DataFrame(columns=["trial", "status"])
