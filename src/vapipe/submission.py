"""The ABAW VA test submission: writer and validator.

One file, header ``image_location,valence,arousal``, one row per frame of every test trial, in the
order and count of the organisers' example file. Rows are filled by the parsed frame number, never
by position, values are clipped to [-1, 1], and no row may be missing or NaN.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from vapipe import TARGETS
from vapipe.data.affwild2 import SUBMISSION_HEADER, read_example_submission
from vapipe.errors import InputError
from vapipe.fusion.folds import average_folds, targetwise_fold_selection

DEFAULT_FILE_NAME = "VA_Estimation_Challenge_predictions.txt"


class SubmissionError(InputError):
    """A submission breaks the format; the message names the file and the first bad row."""


FOLD_SELECTIONS = ("average", "targetwise")


def submitted_test_predictions(
    frames_by_fold: dict[str, pd.DataFrame], metrics: pd.DataFrame, fold_selection: str = "average"
) -> pd.DataFrame:
    """Test rows (trial, frame, valence, arousal) of a system's folds: averaged over the folds, or,
    target-wise (SAGE), each target from the fold with the best held-out CCC in ``metrics``."""
    return select_test_predictions(frames_by_fold, metrics, fold_selection)[0]


def select_test_predictions(
    frames_by_fold: dict[str, pd.DataFrame], metrics: pd.DataFrame, fold_selection: str = "average"
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """`submitted_test_predictions` and, per target, the folds its column comes from (all folds when
    averaged; the fold with the best held-out CCC of that target when target-wise)."""
    if fold_selection == "average":
        table = average_folds(frames_by_fold, subset="test")
        sources = {target: list(frames_by_fold) for target in TARGETS}
    elif fold_selection == "targetwise":
        scores = metrics.set_index("fold")[list(TARGETS)].to_dict("index")
        table, chosen = targetwise_fold_selection(scores, frames_by_fold, subset="test")
        sources = {target: [chosen[target]] for target in TARGETS}
    else:
        raise ValueError(f"fold_selection '{fold_selection}' is not one of {', '.join(FOLD_SELECTIONS)}")
    if table.empty:
        raise SubmissionError("the submitted system has no test predictions")
    return table[["trial", "frame", "valence", "arousal"]], sources


def build_submission(example_path: str | Path, predictions: pd.DataFrame) -> pd.DataFrame:
    """Rows of the example file filled from per-frame predictions (trial, frame, valence, arousal)."""
    wanted = pd.DataFrame(read_example_submission(example_path), columns=["trial", "frame"])
    merged = wanted.merge(
        predictions[["trial", "frame", "valence", "arousal"]],
        on=["trial", "frame"],
        how="left",
        validate="one_to_one",
    )
    missing = merged[merged[["valence", "arousal"]].isna().any(axis=1)]
    if len(missing):
        first = missing.iloc[0]
        raise SubmissionError(
            f"{example_path}: no prediction for {len(missing)} test frames, first "
            f"{first['trial']}/{int(first['frame']):05d}.jpg; refusing to write a partial submission"
        )
    return pd.DataFrame(
        {
            "image_location": [f"{t}/{f:05d}.jpg" for t, f in zip(merged["trial"], merged["frame"])],
            "valence": np.clip(merged["valence"].to_numpy(), -1, 1),
            "arousal": np.clip(merged["arousal"].to_numpy(), -1, 1),
        }
    )


def submission_text(table: pd.DataFrame) -> str:
    """The file's text: header then one row per frame."""
    buffer = io.StringIO()
    buffer.write(SUBMISSION_HEADER + "\n")
    for location, v, a in table[["image_location", "valence", "arousal"]].itertuples(index=False):
        buffer.write(f"{location},{v:.6f},{a:.6f}\n")
    return buffer.getvalue()


def write_submission_zip(table: pd.DataFrame, zip_path: str | Path, file_name: str = DEFAULT_FILE_NAME) -> None:
    """Write the submission zip atomically."""
    zip_path = Path(zip_path)
    tmp = zip_path.with_name(f".{zip_path.name}.tmp-{os.getpid()}")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        # A fixed timestamp keeps the zip byte-identical for identical predictions.
        info = zipfile.ZipInfo(file_name, date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, submission_text(table))
    os.replace(tmp, zip_path)


def _read_text(path: Path) -> str:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise SubmissionError(f"{path}: expected one file in the zip, found {len(names)}")
            return archive.read(names[0]).decode()
    return path.read_text()


def validate_submission(path: str | Path, example_path: str | Path) -> int:
    """Check a submission (.txt or .zip) against the example file; returns its row count."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: submission file does not exist")
    expected = read_example_submission(example_path)
    lines = _read_text(path).splitlines()
    if not lines or lines[0].strip() != SUBMISSION_HEADER:
        raise SubmissionError(f"{path}: first line must be '{SUBMISSION_HEADER}'")
    rows = [line for line in lines[1:] if line.strip()]
    if len(rows) != len(expected):
        raise SubmissionError(f"{path}: {len(rows)} rows, the example file {example_path} has {len(expected)}")
    for line_no, (line, (trial, frame)) in enumerate(zip(rows, expected), start=2):
        fields = line.split(",")
        if len(fields) != 3:
            raise SubmissionError(f"{path}:{line_no}: expected 3 fields, found {len(fields)}")
        if fields[0] != f"{trial}/{frame:05d}.jpg":
            raise SubmissionError(
                f"{path}:{line_no}: image_location '{fields[0]}', example has '{trial}/{frame:05d}.jpg'"
            )
        try:
            values = [float(fields[1]), float(fields[2])]
        except ValueError:
            raise SubmissionError(f"{path}:{line_no}: non-numeric value in '{line}'") from None
        if not all(np.isfinite(values)) or not all(-1 <= v <= 1 for v in values):
            raise SubmissionError(f"{path}:{line_no}: value not a number in [-1, 1]: '{line}'")
    return len(rows)
