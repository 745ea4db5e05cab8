"""Predict valence and arousal for any raw video a user brings, with a trained system.

The video is decoded with PyAV; each frame's face is found with MediaPipe's face detector (its
model ships inside the package, so this works offline), cropped square around the detection and
resized to the 112-pixel crops the backbones were trained on. The audio track is decoded to 16 kHz.
The system's own backbones (their specs are stored in its checkpoints) embed faces and audio
exactly as Stage 1 does. Each fold model of the system predicts through the workflow's own
prediction path (`vapipe.training.system.frame_predictions`: raw outputs at the system's rate,
upsampled to every frame and smoothed with the post-processing stored in its checkpoint), and the
folds are averaged, as the submission averages them. Frames without a detected face get values
interpolated from their neighbours and are flagged ``face = 0`` in the CSV.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pandas as pd
import torch

from vapipe.config import IMPORTED_KIND
from vapipe.data.affwild2 import DatasetError, probe_video
from vapipe.data.timing import read_timing
from vapipe.errors import InputError
from vapipe.features.alignment import pool_to_frames
from vapipe.features.audio import SAMPLE_RATE, decode_audio_on_video_clock
from vapipe.features.backbones import create_backbone
from vapipe.post.predictions import postprocess_trial
from vapipe.specs import BackboneSpec
from vapipe.training.data import TrialData, fill_invalid
from vapipe.training.system import CONFIG_FILE, System, frame_predictions, load_system, read_checkpoint_config

log = logging.getLogger(__name__)
CROP_SIZE = 112


def decode_frames(video_path: str | Path) -> list[np.ndarray]:
    """All frames of a video as RGB uint8 arrays."""
    try:
        with av.open(str(video_path)) as container:
            return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except av.error.FFmpegError as error:
        raise DatasetError(f"{video_path}: unreadable video ({error})") from None


def square_crop(frame: np.ndarray, box: tuple[float, float, float, float], margin: float = 1.25) -> np.ndarray:
    """Square crop around a relative (xmin, ymin, width, height) box, enlarged by `margin`, edge-padded."""
    from PIL import Image

    height, width = frame.shape[:2]
    xmin, ymin, box_w, box_h = box
    cx, cy = (xmin + box_w / 2) * width, (ymin + box_h / 2) * height
    side = max(box_w * width, box_h * height) * margin
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    size = max(2, int(round(side)))
    pad = size
    padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    crop = padded[top + pad : top + pad + size, left + pad : left + pad + size]
    return np.asarray(Image.fromarray(crop).resize((CROP_SIZE, CROP_SIZE), Image.BILINEAR))


def detect_faces(frames: list[np.ndarray], min_confidence: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Face crops [T, 112, 112, 3] (zeros where none) and a found mask [T]; the most confident face wins."""
    import mediapipe as mp

    crops = np.zeros((len(frames), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    found = np.zeros(len(frames), bool)
    with mp.solutions.face_detection.FaceDetection(
        model_selection=1, min_detection_confidence=min_confidence
    ) as detector:
        for i, frame in enumerate(frames):
            result = detector.process(frame)
            if not result.detections:
                continue
            best = max(result.detections, key=lambda d: d.score[0])
            box = best.location_data.relative_bounding_box
            crops[i] = square_crop(frame, (box.xmin, box.ymin, box.width, box.height))
            found[i] = True
    return crops, found


def trained_folds(results: Path, system: str, folds: list[str] | None = None) -> list[Path]:
    """Checkpoint folders of a trained system (all its folds unless `folds` names some)."""
    folder = results / "models" / system
    paths = [folder / fold for fold in folds] if folds else sorted(p.parent for p in folder.glob(f"*/{CONFIG_FILE}"))
    missing = [p for p in paths if not (p / CONFIG_FILE).is_file()]
    if not paths or missing:
        raise DatasetError(
            f"{missing[0] if missing else folder}: no trained model; run "
            f"'snakemake --cores 8 results/metrics/{system}.tsv' first"
        )
    return paths


def interpolate_missing(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Replace rows where `known` is false by linear interpolation between known rows (edges held)."""
    if known.all() or not known.any():
        return values
    index = np.arange(len(values))
    return np.stack([np.interp(index, index[known], values[known, c]) for c in range(values.shape[1])], axis=1)


def predict_video(
    video_path: str | Path,
    system: str,
    results: str | Path = "results",
    folds: list[str] | None = None,
    smoothing_seconds: float | None = None,
) -> pd.DataFrame:
    """Per-frame table frame, time, valence, arousal, face for one raw video; `smoothing_seconds`
    None smooths as the workflow did (the checkpoint's post-processing)."""
    video_path = Path(video_path)
    if not video_path.is_file():
        raise DatasetError(f"{video_path}: video file does not exist")
    folders = trained_folds(Path(results), system, folds)
    checkpoint = read_checkpoint_config(folders[0])
    if smoothing_seconds is None:
        smoothing_seconds = float(checkpoint["postprocess"]["smoothing_seconds"])
    info = probe_video(video_path)
    fps = float(info.fps)
    frames = decode_frames(video_path)
    n_rows = len(frames)
    if n_rows == 0:
        raise DatasetError(f"{video_path}: video has zero frames")
    crops, found = detect_faces(frames)
    log.info("%s: %d frames at %.3f fps, face found in %.0f%%", video_path, n_rows, fps, 100 * found.mean())
    if info.has_audio:
        samples = decode_audio_on_video_clock(video_path)
    else:
        log.warning("%s: no audio stream; audio features are marked invalid", video_path)
        samples = np.zeros(int(n_rows / fps * SAMPLE_RATE), np.float32)
    spans = read_timing(video_path).row_spans(n_rows)  # presentation times (i / fps if constant-rate)
    inputs, valid = {}, {}
    for name in checkpoint["spec"]["features"]:
        spec = BackboneSpec.from_dict(checkpoint["backbones"][name], f"{folders[0] / CONFIG_FILE}: backbones.{name}")
        if spec.kind == IMPORTED_KIND or spec.input == "vocals":
            raise InputError(
                f"backbone '{name}': features imported from HDF5 or computed on Spleeter vocals are "
                "not supported by predict; train the system on backbones that run on the video itself"
            )
        backbone = create_backbone(name, spec.to_dict())
        if backbone.modality == "face_clip":
            raise InputError(f"backbone '{name}': clip backbones (R3D-18) are not supported by predict yet")
        if backbone.modality == "face":
            features = np.zeros((n_rows, backbone.dim), np.float32)
            for start in range(0, n_rows, spec.batch_size):
                features[start : start + spec.batch_size] = backbone.embed(
                    torch.from_numpy(crops[start : start + spec.batch_size])
                )
            valid[name] = found.copy()
        else:
            native, centres = backbone.embed_waveform(samples, fps=fps)
            features, valid[name] = pool_to_frames(native, centres, n_rows, fps, len(samples) / SAMPLE_RATE, spans)
            valid[name] &= info.has_audio
        inputs[name] = fill_invalid(features, valid[name])
    trial = TrialData(video_path.stem, fps, inputs, valid, labels=None, times=spans[0])
    systems: list[System] = [load_system(folder) for folder in folders]
    # Smoothing is linear: smoothing each fold then averaging (the workflow) equals this order.
    predictions = np.mean([frame_predictions(s, trial) for s in systems], axis=0)
    predictions = interpolate_missing(predictions, found)
    predictions = postprocess_trial(trial.times, predictions, n_rows, fps, smoothing_seconds, trial.times)
    return pd.DataFrame(
        {
            "frame": np.arange(1, n_rows + 1),
            "time": trial.times,
            "valence": np.clip(predictions[:, 0], -1, 1),
            "arousal": np.clip(predictions[:, 1], -1, 1),
            "face": found.astype(int),
        }
    )


def plot_traces(table: pd.DataFrame, path: str | Path, title: str) -> None:
    """PNG of valence and arousal over time, frames without a face shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 3.2), dpi=100)
    axis.plot(table["time"], table["valence"], label="valence", color="tab:blue")
    axis.plot(table["time"], table["arousal"], label="arousal", color="tab:red")
    no_face = table["face"].to_numpy() == 0
    if no_face.any():
        axis.fill_between(table["time"], -1, 1, where=no_face, color="0.85", label="no face (interpolated)")
    axis.set(ylim=(-1, 1), xlabel="time (s)", ylabel="value", title=title)
    axis.axhline(0, color="0.6", linewidth=0.5)
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
