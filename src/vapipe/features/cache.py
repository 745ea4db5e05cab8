"""The feature cache: one Zarr store per (backbone, trial), complete or absent.

A store holds ``features`` (float16 [T, D]) and ``valid`` (bool [T]); its attributes hold the
backbone name, fps, T and a fingerprint of the backbone's settings. Arrays are stored without
compression, in chunks of `CHUNK_ROWS` rows: on ResNet-50 / WavLM features zstd saves about 10% of
the bytes but makes a cold read of a fold slower than ``np.load`` (`vapipe.training.benchmark`
measures it). Zarr returns zeros for chunks
a killed writer never wrote, so completeness is explicit: the writer fills a temporary sibling
folder, sets ``complete = True`` last, and renames the folder into place. A reader accepts only a
store at its final name with ``complete`` set and a matching fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from vapipe.errors import InputError

FORMAT_VERSION = 1
CHUNK_ROWS = 16384  # rows per chunk: most trials are one chunk, read in one request
COMPRESSIONS = (None, "zstd")


class StoreWriteError(InputError):
    """A store could not be written (disk full, no permission); the message names the store."""


class IncompleteStoreError(RuntimeError):
    """A store is missing, partly written or was made with other settings."""


def fingerprint(settings: dict) -> str:
    """Stable short hash of the settings that determine a store's content."""
    payload = json.dumps({"format": FORMAT_VERSION, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class FeatureStore:
    """A store's arrays, loaded into memory."""

    features: np.ndarray  # [T, D], float32 unless read with another dtype
    valid: np.ndarray  # bool [T]
    attrs: dict


def write_store(
    path: str | Path,
    features: np.ndarray,
    valid: np.ndarray,
    attrs: dict,
    chunk_rows: int = CHUNK_ROWS,
    extra: dict[str, np.ndarray] | None = None,
    compression: str | None = None,
) -> None:
    """Write a store atomically: nothing at `path` looks complete until every array is written.

    `compression` None stores the chunks raw (the default, fastest to read); "zstd" compresses them.

    `extra` holds more float16 [T, D] arrays beside ``features`` (e.g. ``features_flipped``, the
    embeddings of horizontally flipped crops); `read_store` ignores them, `read_extra` reads one.
    """
    path = Path(path)
    if compression not in COMPRESSIONS:
        raise ValueError(f"{path}: unknown compression {compression!r}; known: None, 'zstd'")
    codecs = {} if compression == "zstd" else {"compressors": None}  # zarr's default codec is zstd
    features = np.asarray(features)
    valid = np.asarray(valid, dtype=bool)
    if features.ndim != 2 or len(valid) != len(features):
        raise ValueError(f"{path}: features {features.shape} and valid {valid.shape} disagree")
    for name, array in (extra or {}).items():
        if np.shape(array) != features.shape:
            raise ValueError(f"{path}: {name} {np.shape(array)} and features {features.shape} disagree")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        group = zarr.open_group(str(tmp), mode="w")
        rows = max(1, min(chunk_rows, len(features)))
        shape = (rows, features.shape[1])
        group.create_array("features", data=features.astype(np.float16), chunks=shape, **codecs)
        group.create_array("valid", data=valid, chunks=(rows,), **codecs)
        for name, array in (extra or {}).items():
            group.create_array(name, data=np.asarray(array).astype(np.float16), chunks=shape, **codecs)
        group.attrs.update({**attrs, "n_rows": int(len(features)), "dim": int(features.shape[1])})
        group.attrs["complete"] = True  # last: a store without it was interrupted
    except OSError as error:  # e.g. the disk filled up: leave nothing half-written behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoreWriteError(f"{path}: cannot write feature store ({error.strerror or error})") from None
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def is_complete(path: str | Path, expected_fingerprint: str | None = None, expected_source: str | None = None) -> bool:
    """True when `path` is a finished store (made with `expected_fingerprint` settings and from
    `expected_source` data, where given: `vapipe.data.manifest.input_source`)."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        return False
    try:
        attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:  # any unreadable store is simply not complete
        return False
    if attrs.get("complete") is not True:
        return False
    if expected_source is not None and attrs.get("source") != expected_source:
        return False
    return expected_fingerprint is None or attrs.get("fingerprint") == expected_fingerprint


def read_store(path: str | Path, dtype=np.float32) -> FeatureStore:
    """Load a complete store into memory; features as `dtype` (float16: as stored, no copy)."""
    path = Path(path)
    if not is_complete(path):
        raise IncompleteStoreError(f"{path}: feature store is missing or incomplete")
    group = zarr.open_group(str(path), mode="r")
    return FeatureStore(
        features=np.asarray(group["features"][:], dtype=dtype),
        valid=np.asarray(group["valid"][:], dtype=bool),
        attrs=dict(group.attrs),
    )


def store_dim(path: str | Path) -> int:
    """The feature width D of a complete store (from its attributes, no array read)."""
    path = Path(path)
    if not is_complete(path):
        raise IncompleteStoreError(f"{path}: feature store is missing or incomplete")
    return int(zarr.open_group(str(path), mode="r")["features"].shape[1])


def read_extra(path: str | Path, name: str) -> np.ndarray:
    """Load one extra array (e.g. ``features_flipped``) of a complete store as float32."""
    path = Path(path)
    if not is_complete(path):
        raise IncompleteStoreError(f"{path}: feature store is missing or incomplete")
    group = zarr.open_group(str(path), mode="r")
    if name not in group:
        raise KeyError(f"{path}: no array '{name}' (stores hold it only when made with it)")
    return np.asarray(group[name][:], dtype=np.float32)


def store_path(feature_root: str | Path, backbone: str, trial: str) -> Path:
    """Where the store of (backbone, trial) lives."""
    return Path(feature_root) / backbone / f"{trial}.zarr"


def skipped_trial(trial: str, error: Exception, on_bad_trial: str, log: logging.Logger) -> dict:
    """The summary row of a trial left without a store; re-raises unless ``on_bad_trial='skip'``."""
    if on_bad_trial != "skip":
        raise error
    log.warning("skipping trial %s: %s", trial, error)
    return {"trial": trial, "status": "skipped", "reason": str(error)}
