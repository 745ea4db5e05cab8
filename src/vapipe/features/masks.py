"""Per-frame voice-activity and mouth-open masks, stored beside the features.

A mask store ``results/masks/{mask}/{trial}.zarr`` is a feature store (`vapipe.features.cache`:
written atomically, ``complete`` set last) whose ``features`` are one per-frame measure ``[T, 1]``
and whose ``valid`` says where that measure is known. Its attrs name the ``mask``, the
``threshold`` that turns the measure into a yes/no, the ``fps`` and the settings; `mask_binary`
applies the threshold (an unknown frame is never "yes"). T is the trial's manifest ``n_rows`` and
row i spans [i / fps, (i + 1) / fps), as for the audio features (`vapipe.features.alignment`).

- ``vad``: on the video's Spleeter vocals (``results/audio/{video}.vocals.wav``; Dresvyanskiy et
  al. separate the voice from noise and music first), silero-vad speech probabilities at its
  native 32 ms hop (512 samples at 16 kHz) become speech segments with silero's own hysteresis
  (``threshold``, ``min_speech_ms``, ``min_silence_ms``, ``speech_pad_ms``); the measure is the
  share of each frame's span that the segments cover, and a frame is speech when that share
  reaches ``frame_fraction``. Both people of a ``_left`` / ``_right`` video get the same mask;
  rows that start after the audio ends are unknown.
- ``mouth``: MediaPipe face mesh on each face crop; the lip gap (inner-lip landmarks 13 and 14)
  over the inter-ocular distance (outer eye corners 33 and 263). See `mouth_opening` for how it
  is smoothed and thresholded per trial, and where that departs from Dresvyanskiy et al.

The audio models of Dresvyanskiy et al. train only on speech frames: by default (their rule) the
frames where the target's mouth is open, since the audio may hold other speakers; the rule
``vad_or_mouth`` also counts voice activity (`vapipe.features.mask_store.speech_frames`).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from scipy.ndimage import minimum_filter1d

from vapipe.data.affwild2 import DatasetError, index_crops
from vapipe.data.manifest import input_source
from vapipe.data.timing import row_spans
from vapipe.features.alignment import frame_spans
from vapipe.features.audio import SAMPLE_RATE, read_wav
from vapipe.features.cache import fingerprint, is_complete
from vapipe.features.extract import shard_trials
from vapipe.features.mask_store import as_stored, mask_binary, mask_path, read_mask, speech_frames, write_mask  # noqa: F401
from vapipe.specs import MouthSpec, VadSpec

log = logging.getLogger(__name__)

VAD_HOP = 512  # samples per silero-vad window at 16 kHz (32 ms)
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14  # MediaPipe face mesh landmark indices
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 33, 263


# ---------------------------------------------------------------- stores


# ---------------------------------------------------------------- voice activity


def load_vad_model() -> Any:
    """silero-vad's TorchScript model, from the file inside the package (no network)."""
    import torch

    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad  # its import sets torch to 1 thread: undo that

    torch.set_num_threads(threads)
    with warnings.catch_warnings():  # silero's own use of a deprecated importlib call
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad(onnx=False)


def speech_probabilities(model: Any, samples: np.ndarray) -> np.ndarray:
    """silero-vad speech probability of every 512-sample window of 16 kHz audio, in order."""
    import torch

    padded = np.pad(np.asarray(samples, dtype=np.float32), (0, -len(samples) % VAD_HOP))
    chunks = torch.from_numpy(padded).reshape(-1, VAD_HOP)
    model.reset_states()  # the model is recurrent: state must not leak between files
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny net on 32 ms chunks: more threads were 5-20x slower here
    try:
        with torch.no_grad():
            return np.array([float(model(chunk, SAMPLE_RATE)) for chunk in chunks], dtype=np.float32)
    finally:
        torch.set_num_threads(threads)


def speech_samples(probs: np.ndarray, n_samples: int, settings: VadSpec) -> np.ndarray:
    """bool [n_samples]: inside a speech segment of silero-vad's hysteresis segmentation."""
    from silero_vad import get_speech_timestamps_from_probs

    segments = get_speech_timestamps_from_probs(
        [float(p) for p in probs],
        sampling_rate=SAMPLE_RATE,
        threshold=settings.threshold,
        min_speech_duration_ms=settings.min_speech_ms,
        min_silence_duration_ms=settings.min_silence_ms,
        speech_pad_ms=settings.speech_pad_ms,
        audio_length_samples=n_samples,
    )
    active = np.zeros(n_samples, dtype=bool)
    for segment in segments:
        active[segment["start"] : segment["end"]] = True
    return active


def frame_coverage(
    active: np.ndarray,
    n_rows: int,
    fps: float,
    sample_rate: int = SAMPLE_RATE,
    spans: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Share of each video row's span (within the audio) that is active; rows after the audio are unknown."""
    starts, ends = spans if spans is not None else frame_spans(n_rows, fps)
    first = np.minimum(np.round(starts * sample_rate).astype(np.int64), len(active))
    last = np.minimum(np.round(ends * sample_rate).astype(np.int64), len(active))
    total = np.concatenate([[0], np.cumsum(active, dtype=np.int64)])
    coverage = (total[last] - total[first]) / np.maximum(last - first, 1)
    valid = starts < len(active) / sample_rate
    return np.where(valid, coverage, 0.0).astype(np.float32), valid


def voice_activity(
    active: np.ndarray, n_rows: int, fps: float, spans: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row speech coverage (as stored) and known-ness of one trial, from sample-level speech."""
    coverage, valid = frame_coverage(active, n_rows, fps, spans=spans)
    return as_stored(coverage), valid


def video_speech(model: Any, wav_path: str | Path, settings: VadSpec) -> np.ndarray:
    """bool [n_samples]: silero-vad speech segments of a 16 kHz WAV."""
    samples, rate = read_wav(wav_path)
    if rate != SAMPLE_RATE:
        raise DatasetError(f"{wav_path}: sample rate {rate}, expected {SAMPLE_RATE}")
    return speech_samples(speech_probabilities(model, samples), len(samples), settings)


# ---------------------------------------------------------------- mouth open


class FaceMesh:
    """MediaPipe face mesh (legacy ``mp.solutions`` API) on single crops: one face, no tracking.

    Static-image mode: Aff-Wild2 crops have gaps, and each crop is aligned on its own, so no frame
    borrows landmarks from its neighbours and the result does not depend on processing order.
    """

    def __init__(self, settings: MouthSpec):
        import mediapipe as mp  # heavy, and only mask jobs need it

        self.size = settings.image_size
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=1,
            refine_landmarks=False,
            min_detection_confidence=settings.min_detection_confidence,
        )

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """float [468, 2] landmark x, y (fractions of width and height), or None when no face."""
        result = self._mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            return None
        return np.array([(p.x, p.y) for p in result.multi_face_landmarks[0].landmark], dtype=np.float64)

    def close(self) -> None:
        """Free the graph."""
        self._mesh.close()

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lip_gap(landmarks: np.ndarray) -> float:
    """Inner-lip gap (landmarks 13-14) over the inter-ocular distance (outer eye corners 33-263)."""
    gap = np.linalg.norm(landmarks[UPPER_INNER_LIP] - landmarks[LOWER_INNER_LIP])
    eyes = np.linalg.norm(landmarks[LEFT_EYE_OUTER] - landmarks[RIGHT_EYE_OUTER])
    return float(gap / eyes) if eyes > 0 else float("nan")


def read_crop(path: Path, size: int) -> np.ndarray:
    """A crop as uint8 RGB [size, size, 3] (bicubic resize when the crop has another size)."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.BICUBIC)
            return np.asarray(image)
    except (UnidentifiedImageError, OSError) as error:
        raise DatasetError(f"{path}: not a readable image ({error})") from None


def trial_lip_gaps(mesh: FaceMesh, crops_dir: str | Path, n_rows: int) -> np.ndarray:
    """float [n_rows]: lip gap of each row's crop; NaN where there is no crop or no face found."""
    crops = index_crops(crops_dir)
    gaps = np.full(n_rows, np.nan)
    for frame in sorted(f for f in crops if 1 <= f <= n_rows):
        landmarks = mesh.landmarks(read_crop(crops[frame], mesh.size))
        if landmarks is not None:
            gaps[frame - 1] = lip_gap(landmarks)
    return gaps


def _odd_window(seconds: float, fps: float) -> int:
    """Odd window length in frames closest to `seconds` (at least 1)."""
    return max(1, int(round(seconds * fps))) | 1


def masked_moving_average(values: np.ndarray, valid: np.ndarray, window: int) -> np.ndarray:
    """Centred mean over the known values in each window; unknown rows stay 0."""
    kernel = np.ones(window)
    total = np.convolve(np.where(valid, values, 0.0), kernel, mode="same")
    count = np.convolve(valid.astype(float), kernel, mode="same")
    return np.where(valid, total / np.maximum(count, 1.0), 0.0)


def otsu_threshold(values: np.ndarray) -> float | None:
    """Otsu's split of 1-D values (midpoint of the best split); None with fewer than 2 distinct values."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = len(v)
    if n < 2 or v[0] == v[-1]:
        return None
    k = np.arange(1, n)  # the lower class is v[:k]
    cumulative = np.cumsum(v)[:-1]
    mean_low = cumulative / k
    mean_high = (v.sum() - cumulative) / (n - k)
    between = (k / n) * (1 - k / n) * (mean_low - mean_high) ** 2
    between[v[1:] == v[:-1]] = -1.0  # only split between distinct values
    best = int(np.argmax(between))
    return float((v[best] + v[best + 1]) / 2)


def mouth_opening(gaps: np.ndarray, fps: float, settings: MouthSpec) -> tuple[np.ndarray, np.ndarray, float]:
    """Mouth-open measure (as stored), known-ness and the trial's threshold from per-row lip gaps.

    Dresvyanskiy et al. (ABAW 2024, sec. 4.2.1) only say that MediaPipe mouth landmarks decide
    whether the target speaker's mouth is open or closed; they give no measure, smoothing or
    threshold. Ours, step by step:
    1. lip gap / inter-ocular distance per frame (NaN without a face: unknown, never "closed");
    2. minus its running minimum over ``baseline_seconds`` of known frames: speech closes the lips
       between syllables several times a second, a smile or a slack jaw holds them apart, so only
       the syllable-rate opening is kept (our addition: a smile would otherwise read as talking);
    3. a centred mean over ``smoothing_seconds`` of known frames, so a talking turn reads as open
       rather than flickering at the syllable rate;
    4. a per-trial threshold: Otsu's split of the trial's known values, but at least
       ``min_threshold`` so that a trial in which the person never talks is not split in two.
    """
    gaps = np.asarray(gaps, dtype=np.float64)
    valid = np.isfinite(gaps)
    if not valid.any():
        return np.zeros(len(gaps), np.float32), valid, settings.min_threshold
    baseline = minimum_filter1d(
        np.where(valid, gaps, np.inf), _odd_window(settings.baseline_seconds, fps), mode="nearest"
    )
    opening = np.where(valid, gaps - np.where(valid, baseline, 0.0), 0.0)
    smooth = masked_moving_average(opening, valid, _odd_window(settings.smoothing_seconds, fps))
    measure = as_stored(smooth)
    split = otsu_threshold(measure[valid])
    threshold = max(split if split is not None else settings.min_threshold, settings.min_threshold)
    return np.where(valid, measure, 0.0).astype(np.float32), valid, threshold


# ---------------------------------------------------------------- workflow jobs


MASK_INPUT = {"vad": "vocals", "mouth": "face"}  # what each mask is computed from


def _settings_hash(mask: str, settings: VadSpec | MouthSpec) -> str:
    """Fingerprint of the settings and the input a mask store was made with."""
    return fingerprint({"mask": mask, "input": MASK_INPUT[mask], **asdict(settings)})


def _todo(trials: pd.DataFrame, mask_root: str | Path, mask: str, settings_hash: str) -> list:
    """Manifest rows whose store is missing, or was made with other settings or from other data."""
    return [
        row
        for row in trials.itertuples()
        if not is_complete(mask_path(mask_root, mask, row.trial), settings_hash, input_source(row, MASK_INPUT[mask]))
    ]


def _summary_row(row: Any, measure_valid: np.ndarray, binary: np.ndarray, seconds: float) -> dict:
    """One computed trial's line of a shard summary."""
    return {
        "trial": row.trial,
        "status": "computed",
        "n_rows": int(row.n_rows),
        "valid_fraction": round(float(measure_valid.mean()), 4),
        "positive_fraction": round(float(binary.mean()), 4),
        "seconds": round(seconds, 3),
        "seconds_per_1000_frames": round(1000 * seconds / max(int(row.n_rows), 1), 3),
    }


def detect_voice_activity_shard(
    manifest: pd.DataFrame,
    shard: int,
    n_shards: int,
    audio_paths: dict[str, str],
    mask_root: str | Path,
    settings: VadSpec,
) -> pd.DataFrame:
    """Write the ``vad`` mask of every trial of one shard; returns one summary row per trial."""
    trials = shard_trials(manifest, shard, n_shards)
    settings_hash = _settings_hash("vad", settings)
    todo = _todo(trials, mask_root, "vad", settings_hash)
    summary = [{"trial": r.trial, "status": "cached"} for r in trials.itertuples() if r not in todo]
    model = load_vad_model() if todo else None
    active_by_video: dict[str, np.ndarray] = {}
    for row in todo:
        start = time.perf_counter()
        if row.video not in active_by_video:  # _left and _right share one audio track
            active_by_video[row.video] = video_speech(model, audio_paths[row.video], settings)
        measure, valid = voice_activity(active_by_video[row.video], row.n_rows, row.fps, row_spans(row))
        attrs = {
            "fps": float(row.fps),
            "trial": row.trial,
            "fingerprint": settings_hash,
            "source": input_source(row, MASK_INPUT["vad"]),
            "settings": asdict(settings),
            "measure": "share of the frame's span inside speech",
        }
        write_mask(mask_path(mask_root, "vad", row.trial), "vad", measure, valid, settings.frame_fraction, attrs)
        seconds = time.perf_counter() - start
        binary = valid & (measure >= settings.frame_fraction)
        summary.append(_summary_row(row, valid, binary, seconds))
        log.info("vad %s: %d rows, %.0f%% speech, %.2f s", row.trial, row.n_rows, 100 * binary.mean(), seconds)
    return pd.DataFrame(summary).sort_values("trial")


def detect_mouth_open_shard(
    manifest: pd.DataFrame,
    shard: int,
    n_shards: int,
    mask_root: str | Path,
    settings: MouthSpec,
) -> pd.DataFrame:
    """Write the ``mouth`` mask of every trial of one shard; returns one summary row per trial."""
    trials = shard_trials(manifest, shard, n_shards)
    settings_hash = _settings_hash("mouth", settings)
    todo = _todo(trials, mask_root, "mouth", settings_hash)
    summary = [{"trial": r.trial, "status": "cached"} for r in trials.itertuples() if r not in todo]
    if not todo:
        return pd.DataFrame(summary)
    with FaceMesh(settings) as mesh:
        for row in todo:
            start = time.perf_counter()
            gaps = trial_lip_gaps(mesh, row.crops_dir, row.n_rows)
            measure, valid, threshold = mouth_opening(gaps, row.fps, settings)
            attrs = {
                "fps": float(row.fps),
                "trial": row.trial,
                "fingerprint": settings_hash,
                "source": input_source(row, MASK_INPUT["mouth"]),
                "settings": asdict(settings),
                "measure": "smoothed lip gap over inter-ocular distance, less its running minimum",
            }
            write_mask(mask_path(mask_root, "mouth", row.trial), "mouth", measure, valid, threshold, attrs)
            seconds = time.perf_counter() - start
            binary = valid & (measure >= threshold)
            summary.append(_summary_row(row, valid, binary, seconds))
            log.info(
                "mouth %s: %d rows, %.0f%% with landmarks, %.0f%% open (threshold %.4f), %.2f s",
                row.trial,
                row.n_rows,
                100 * valid.mean(),
                100 * binary.mean(),
                threshold,
                seconds,
            )
    return pd.DataFrame(summary).sort_values("trial")
