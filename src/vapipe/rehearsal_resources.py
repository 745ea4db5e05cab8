"""Resource requests of the workflow's heavy jobs, sized from what the scale rehearsal measured.

`vapipe rehearse` (`vapipe.rehearsal`) measures peak memory and time of each heavy step against the
float16 bytes of the features it holds; the rules ask for what these functions compute from the
manifest and the backbones' widths at DAG time (no store is opened, nothing imports torch), so one
rule is right for the demo and for Aff-Wild2:

- a training fold holds its trials' features once as float16 and peaks at about those bytes (the
  rehearsal's ``train_fold`` lines) above the fixed cost of Python, torch and the model and the
  batch's activations, which grow with the input widths (``TRAIN_*`` below);
- a fusion holds its systems' per-frame tables: ``FUSION_BYTES_PER_ROW`` per row of each table (a
  system's fold: every held-out and test frame) above ``FUSION_BASE_MB``.

A retried job (SLURM's ``retries: 1``) asks for half as much again per attempt.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

# Output widths of the registered backbone kinds by model id, where the config does not say it
# (`vapipe.features.backbones` measures them by a forward pass, which the DAG cannot afford).
KNOWN_WIDTHS = {
    ("timm", "resnet50"): 2048,
    ("timm", "efficientnet_b1"): 1280,
    ("timm", "vit_base_patch16_224"): 768,
    ("timm", "mobilenetv3_small_050"): 1024,
    ("timm", "mobilenetv3_small_100"): 1024,
    ("torchvision_video", "r3d_18"): 512,
    ("hf_audio", "microsoft/wavlm-base"): 768,
    ("hf_audio", "microsoft/wavlm-base-plus"): 768,
    ("hf_audio", "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim"): 1024,
    ("ast", "MIT/ast-finetuned-audioset-10-10-0.4593"): 768,
    ("vggish", "vggish"): 128,
    ("spectrogram_cnn", "resnet18"): 512,
    ("opensmile", "eGeMAPSv02"): 25,
}
DEFAULT_WIDTH = 2048  # an unknown backbone is taken to be as wide as ResNet-50 (the widest default)
# A training fold peaks at its float16 features plus a part that does not grow with the fold:
# Python, torch and the model, and the batch's activations, which grow with the input widths.
# Rehearsal at full size (1.97 M frames, ResNet-50 + WavLM-base, 11.11 GB of float16 features):
# tcn_av 13.91 GB, sage 14.60, mstcn_cma 14.56, dasp 13.66, iaca 16.86 or more; at 1/8 tcn_av
# 4.20 GB with 1.39 GB of features, at 1/16 sage 4.51 GB with 0.69 GB. The request covers each
# with 10% or more to spare: a fixed part, 1.1 bytes per feature byte, and per input dimension
# ``TRAIN_MB_PER_INPUT_DIM`` (IACA's cross-attention holds several attended copies of its inputs).
TRAIN_BASE_MB = 1500
TRAIN_PEAK_PER_FEATURE_BYTE = 1.1
TRAIN_MB_PER_INPUT_DIM = 0.9
TRAIN_MB_PER_INPUT_DIM_BY_MODEL = {"iaca": 2.0}
# A fusion at Aff-Wild2's size (rehearsal, F = 1: 3 systems x 1.33 M rows, the random forest) peaked
# at 1.46 GB: about 265 bytes per table row read, 150 per row of the bound `fusion_mem_mb` counts.
FUSION_BASE_MB = 1000
FUSION_BYTES_PER_ROW = 150
RETRY_GROWTH = 0.5
# What a rule shows before the manifest exists (a dry run from scratch; Snakemake asks again once
# the manifest checkpoint has run, before the job starts).
PLACEHOLDER_MB = 4000


def backbone_width(spec: dict, feature_root: str | Path | None = None, name: str | None = None) -> int:
    """Feature width D of a backbone: a finished store's own (its zarr.json, when `feature_root`
    and `name` are given and one exists), the config's (``config.hidden_size``, ``n_mels``, CLIP's
    ``output``), the `KNOWN_WIDTHS` table, else `DEFAULT_WIDTH`."""
    if feature_root is not None and name is not None:
        folder = Path(feature_root) / name
        for store in folder.glob("*.zarr") if folder.is_dir() else []:
            try:
                return int(json.loads((store / "features" / "zarr.json").read_text())["shape"][1])
            except (OSError, ValueError, KeyError, IndexError):
                continue
    kind, model_id = spec.get("kind"), spec.get("id")
    hidden = (spec.get("config") or {}).get("hidden_size")
    if kind == "hf_audio" and hidden:
        return int(hidden)
    if kind == "logmel":
        return int(spec.get("n_mels", 128))
    if kind == "hf_clip_vision":
        return 768 if spec.get("output") == "pooler_output" else 512
    return KNOWN_WIDTHS.get((kind, model_id), DEFAULT_WIDTH)


def fold_rows(manifest: pd.DataFrame) -> int:
    """Most label rows one training fold holds at once: every annotated trial (any fold's training
    and held-out trials together are at most the annotated ones; test trials are loaded later)."""
    return int(manifest.loc[manifest["split"] != "Test_Set", "n_rows"].sum())


def train_fold_mem_mb(rows: int, widths: list[int], attempt: int = 1, model: str | None = None) -> int:
    """Memory request (MB) of a training fold of `rows` rows with features of these widths, for `model`."""
    feature_mb = rows * sum(widths) * 2 / 1e6
    per_dim = TRAIN_MB_PER_INPUT_DIM_BY_MODEL.get(model, TRAIN_MB_PER_INPUT_DIM)
    return _grown(TRAIN_BASE_MB + TRAIN_PEAK_PER_FEATURE_BYTE * feature_mb + per_dim * sum(widths), attempt)


def fusion_mem_mb(manifest: pd.DataFrame, n_systems: int, n_folds: int, attempt: int = 1) -> int:
    """Memory request (MB) of a fusion of `n_systems` systems over `n_folds` folds: each system's
    fold table holds at most every row of the manifest (held-out and test frames)."""
    rows = int(manifest["n_rows"].sum()) * n_systems * n_folds
    return _grown(FUSION_BASE_MB + rows * FUSION_BYTES_PER_ROW / 1e6, attempt)


def _grown(mb: float, attempt: int) -> int:
    return int(math.ceil(mb * (1 + RETRY_GROWTH * (max(1, attempt) - 1)) / 100) * 100)


def kelm_fit_mem_mb(
    manifest,
    widths: list[int],
    window_seconds: float = 2.0,
    step_seconds: float | None = None,
    functionals: int = 3,
    max_windows: int | None = 20000,
) -> int:
    """What a KELM fit adds to a training fold's memory (MB), from the manifest alone: the functionals
    of every annotated trial's windows (float32), the fitted windows' float64 copy and the kernel
    matrix (`vapipe.models.kelm.kelm_weights`: one max_windows^2 float64 matrix at most)."""
    labelled = manifest[manifest["split"] != "Test_Set"]
    step = step_seconds if step_seconds is not None else window_seconds
    windows = int(np.ceil(labelled["n_rows"] / labelled["fps"] / step).sum())
    fitted = min(windows, max_windows) if max_windows is not None else windows
    n_features = functionals * (sum(widths) + len(widths))  # each feature's valid flag is a column too
    return int(np.ceil((windows * n_features * 4 + fitted * n_features * 8 + fitted**2 * 8) / 1e6))


def kelm_system_mem_mb(manifest, widths: list[int], params: dict) -> int:
    """`kelm_fit_mem_mb` of a KELM system's ``params`` (`vapipe.training.kelm_system.KELMSystem`'s
    and `KELMRegressor`'s defaults where a key is absent), for the training rule's request."""
    return kelm_fit_mem_mb(
        manifest,
        widths,
        params.get("window_seconds", 2.0),
        params.get("step_seconds"),
        len(params.get("functionals", ("mean", "min", "max"))),
        params.get("max_windows", 20000),
    )
