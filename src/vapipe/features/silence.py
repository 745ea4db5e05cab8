"""Missing audio at its source (IACA, paper 002, Fig. 3): a share of each video's audio silenced
before its backbone, and the audio features re-extracted from the silenced waveform.

The paper replaces a growing portion of the audio input by zeros at test time and scores the
model on the whole video. Here a video's 16 kHz track (on the video's clock) is cut into
consecutive segments of `segment_seconds`; a seeded random round(share * n) of them are set to
zero, and each of the video's trials gets its features from the silenced track through the same
code the cache uses (`Backbone.embed_waveform`, then `vapipe.features.extract.embed_audio_trial`,
which pools the native frames onto the trial's rows). The silenced segments depend only on
(video, share, seed): every backbone and every system compared sees the same silence, and a larger
share silences a superset of a smaller one's segments (one permutation per video and seed). Rows
stay valid: the audio is there, and it is silent, as in the paper's zeroed input.
"""

from __future__ import annotations

import logging
import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from vapipe.data.affwild2 import DatasetError
from vapipe.data.manifest import input_source
from vapipe.data.timing import row_spans
from vapipe.features.audio import SAMPLE_RATE, read_wav
from vapipe.features.backbones import Backbone, create_backbone
from vapipe.features.cache import store_path, write_store
from vapipe.features.extract import embed_audio_trial, settings_fingerprint
from vapipe.specs import BackboneSpec

log = logging.getLogger(__name__)

SHARES = (0.1, 0.2, 0.4, 0.6, 0.8)  # Fig. 3's proportions of missing audio
SEEDS = (0, 1, 2)  # draws of the silenced segments; every compared system gets the same ones
SEGMENT_SECONDS = 1.0  # the paper's unit is not stated: one second of audio, about a clip of 25-30 frames


def silenced_segments(n_segments: int, share: float, seed: int, video: str) -> np.ndarray:
    """bool [n_segments]: exactly round(share * n_segments) segments set, drawn for (video, seed)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share {share} is outside [0, 1]")
    rng = np.random.default_rng([seed, zlib.crc32(video.encode())])  # stable across runs and machines
    order = rng.permutation(n_segments)
    segments = np.zeros(n_segments, dtype=bool)
    segments[order[: round(share * n_segments)]] = True
    return segments


def silence_audio(
    samples: np.ndarray,
    share: float,
    seed: int,
    video: str,
    segment_seconds: float = SEGMENT_SECONDS,
    sample_rate: int = SAMPLE_RATE,
) -> tuple[np.ndarray, np.ndarray]:
    """(the samples with the drawn segments set to zero, bool [n_samples] True where silenced)."""
    if segment_seconds <= 0:
        raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
    length = max(1, round(segment_seconds * sample_rate))
    segments = silenced_segments(math.ceil(len(samples) / length), share, seed, video)
    silenced = np.repeat(segments, length)[: len(samples)]
    return np.where(silenced, np.float32(0.0), samples).astype(np.float32), silenced


def extract_silenced(
    backbone_name: str,
    spec: dict,
    manifest: pd.DataFrame,
    trials: list[str],
    audio_paths: dict[str, str],
    feature_root: str | Path,
    share: float,
    seed: int,
    segment_seconds: float = SEGMENT_SECONDS,
    device: str = "cpu",
    backbone: Backbone | None = None,
) -> pd.DataFrame:
    """Re-extract an audio backbone's stores of `trials` from their videos' silenced tracks into
    `feature_root`; one summary row per trial (rows, silenced share of its video's samples)."""
    spec = BackboneSpec.from_dict(spec, f"backbones.{backbone_name}").to_dict()
    if spec["input"] == "face":
        raise ValueError(f"backbone '{backbone_name}' reads face crops: only audio backbones are silenced")
    rows = manifest.set_index("trial")
    unknown = [t for t in trials if t not in rows.index]
    if unknown:
        raise DatasetError(f"manifest has no trial '{unknown[0]}'")
    if backbone is None:
        backbone = create_backbone(backbone_name, spec, device=device)
    summary = []
    for video, group in rows.loc[trials].reset_index().groupby("video", sort=True):
        path = audio_paths[video]
        samples, rate = read_wav(path)
        if rate != backbone.sample_rate:
            raise DatasetError(f"{path}: sample rate {rate}, expected {backbone.sample_rate}")
        quiet, silenced = silence_audio(samples, share, seed, video, segment_seconds, rate)
        native = backbone.embed_waveform(quiet, fps=float(group["fps"].iloc[0]))  # _left/_right: one track
        for row in group.itertuples():
            features, valid = embed_audio_trial(backbone, quiet, row.fps, row.n_rows, native, row_spans(row))
            attrs = {
                "backbone": backbone_name,
                "kind": spec["kind"],
                "id": spec["id"],
                "pretrained": spec["pretrained"],
                "modality": backbone.modality,
                "fps": float(row.fps),
                "trial": row.trial,
                "fingerprint": settings_fingerprint(backbone_name, spec),
                "source": input_source(row, spec["input"]),
                "silenced": {"share": share, "seed": seed, "segment_seconds": segment_seconds},
            }
            write_store(store_path(feature_root, backbone_name, row.trial), features, valid, attrs)
            summary.append(
                {
                    "trial": row.trial,
                    "video": video,
                    "n_rows": int(row.n_rows),
                    "share": share,
                    "seed": seed,
                    "silenced_fraction": round(float(silenced.mean()), 4),
                }
            )
        log.info(
            "%s %s: %.0f%% of the audio silenced (share %g, seed %d)",
            backbone_name,
            video,
            100 * silenced.mean(),
            share,
            seed,
        )
    return pd.DataFrame(summary, columns=["trial", "video", "n_rows", "share", "seed", "silenced_fraction"])
