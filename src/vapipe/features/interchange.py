"""HDF5 interchange: a backbone's whole cache as one ``.h5`` file, and such a file as a backbone.

Layout (written by `export_backbone`, read by `import_shard`)::

    /                 attrs: format = "vapipe-features", version, backbone, dim, fingerprint
    /<trial>/features float [T, D]   (float16 here; any float type is accepted on import)
    /<trial>/valid    bool [T]       (optional on import: rows with finite features are valid)
    /<trial>/features_flipped        (optional, as in the Zarr stores)
    /<trial>          attrs: fps and the store's other attributes

T is the trial's number of label rows. Features computed elsewhere plug in as a backbone of kind
``hdf5`` whose ``id`` is the file: its stores are written from the file, checked row by row
against the manifest, and the rest of the pipeline cannot tell them from extracted ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from vapipe.data.affwild2 import DatasetError
from vapipe.features.cache import (
    fingerprint,
    is_complete,
    read_extra,
    read_store,
    skipped_trial,
    store_path,
    write_store,
)

log = logging.getLogger(__name__)

FORMAT = "vapipe-features"
VERSION = 1


def _attr_value(value):
    """HDF5 takes numbers and strings; anything else is stored as JSON."""
    if isinstance(value, (bool, int, float, str, np.number, np.bool_)):
        return value
    return json.dumps(value)


def export_backbone(feature_root: str | Path, backbone: str, trials: list[str], out_path: str | Path) -> int:
    """Write the stores of `trials` (all must be complete) to one HDF5 file, atomically.

    Returns the number of trials written. A trial without a complete store is an error naming it:
    an export never silently leaves trials out.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    dims, prints = set(), set()
    try:
        with h5py.File(tmp, "w") as handle:
            for trial in sorted(trials):
                path = store_path(feature_root, backbone, trial)
                store = read_store(path)  # raises, naming the store, when it is not complete
                group = handle.create_group(trial)
                group.create_dataset("features", data=store.features.astype(np.float16), compression="gzip")
                group.create_dataset("valid", data=store.valid)
                if store.attrs.get("flipped"):
                    flipped = read_extra(path, "features_flipped").astype(np.float16)
                    group.create_dataset("features_flipped", data=flipped, compression="gzip")
                for key, value in store.attrs.items():
                    group.attrs[key] = _attr_value(value)
                dims.add(store.features.shape[1])
                prints.add(store.attrs.get("fingerprint", ""))
            handle.attrs.update(
                {
                    "format": FORMAT,
                    "version": VERSION,
                    "backbone": backbone,
                    "dim": dims.pop() if len(dims) == 1 else -1,
                    "fingerprint": prints.pop() if len(prints) == 1 else "",
                }
            )
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(trials)


def file_sha256(path: str | Path, block: int = 1 << 22) -> str:
    """Content hash of the imported file: a changed file makes its stores stale."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_trial(handle: h5py.File, trial: str, n_rows: int, file_name: str) -> dict[str, np.ndarray]:
    """One trial's arrays from an open interchange file, checked against its label rows."""
    if trial not in handle:
        raise DatasetError(f"{file_name}: no group for trial '{trial}'")
    group = handle[trial]
    if "features" not in group:
        raise DatasetError(f"{file_name}: trial '{trial}' has no 'features' dataset")
    features = np.asarray(group["features"][:], dtype=np.float32)
    if features.ndim != 2 or len(features) != n_rows:
        raise DatasetError(
            f"{file_name}: trial '{trial}' features have shape {features.shape}, expected {n_rows} rows "
            "(one per label row) by D"
        )
    finite = np.isfinite(features).all(axis=1)
    valid = np.asarray(group["valid"][:], dtype=bool) if "valid" in group else finite
    if valid.shape != (n_rows,):
        raise DatasetError(f"{file_name}: trial '{trial}' valid has shape {valid.shape}, expected ({n_rows},)")
    if (valid & ~finite).any():
        row = int(np.flatnonzero(valid & ~finite)[0])
        raise DatasetError(f"{file_name}: trial '{trial}' row {row} is marked valid but is not finite")
    arrays = {"features": np.where(finite[:, None], features, 0.0), "valid": valid}  # no NaN in a store
    if "features_flipped" in group:
        flipped = np.asarray(group["features_flipped"][:], dtype=np.float32)
        if flipped.shape != features.shape:
            raise DatasetError(
                f"{file_name}: trial '{trial}' features_flipped {flipped.shape} != features {features.shape}"
            )
        arrays["features_flipped"] = flipped
    return arrays


def import_shard(
    backbone_name: str,
    spec: dict,
    trials: pd.DataFrame,
    feature_root: str | Path,
    on_bad_trial: str = "fail",
) -> pd.DataFrame:
    """Write the stores of a shard's trials from the HDF5 file `spec['id']`; one summary row each."""
    path = Path(spec["id"])
    if not path.is_file():
        raise DatasetError(f"{path}: HDF5 features file of backbone '{backbone_name}' does not exist")
    settings_hash = fingerprint({"backbone": backbone_name, "kind": "hdf5", "sha256": file_sha256(path)})
    summary, dim = [], None
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise DatasetError(f"{path}: not a readable HDF5 file ({error})") from None
    with handle:
        for row in trials.itertuples():
            target = store_path(feature_root, backbone_name, row.trial)
            if is_complete(target, settings_hash, str(int(row.n_rows))):
                summary.append({"trial": row.trial, "status": "cached"})
                continue
            try:
                arrays = read_trial(handle, row.trial, int(row.n_rows), str(path))
                width = arrays["features"].shape[1]
                if dim is not None and width != dim:
                    raise DatasetError(f"{path}: trial '{row.trial}' has {width} features per row, other trials {dim}")
                dim = width
            except DatasetError as error:
                summary.append(skipped_trial(row.trial, error, on_bad_trial, log))
                continue
            features, valid = arrays.pop("features"), arrays.pop("valid")
            attrs = {
                "backbone": backbone_name,
                "kind": "hdf5",
                "id": str(path),
                "pretrained": False,
                "modality": "face" if spec["input"] == "face" else "audio",
                "fps": float(row.fps),
                "trial": row.trial,
                "fingerprint": settings_hash,
                "source": str(int(row.n_rows)),
                "flipped": "features_flipped" in arrays,
            }
            write_store(target, features, valid, attrs, extra=arrays or None)
            summary.append(
                {
                    "trial": row.trial,
                    "status": "imported",
                    "n_rows": int(row.n_rows),
                    "dim": features.shape[1],
                    "valid_fraction": round(float(valid.mean()), 4),
                }
            )
    log.info("%s: %d trials from %s", backbone_name, len(summary), path)
    return pd.DataFrame(summary).sort_values("trial")


def stored_trials(shard_summaries: list[str | Path]) -> list[str]:
    """Trials that have a store, by the shard summaries (skipped trials have none)."""
    tables = [pd.read_csv(path, sep="\t") for path in shard_summaries]
    table = pd.concat(tables, ignore_index=True)
    return sorted(table.loc[table["status"] != "skipped", "trial"])
