"""The manifest: one table of trials that every later step reads instead of the dataset folders."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vapipe.data.affwild2 import (
    TEST_SPLIT,
    DatasetError,
    base_video,
    find_annotations,
    find_crop_folder,
    find_videos,
    index_crops,
    probe_video,
    read_annotation,
    read_example_submission,
    read_test_list,
)

MANIFEST_COLUMNS = [
    "trial", "video", "split", "fps", "fps_fraction", "n_frames", "n_rows", "n_crops",
    "video_path", "crops_dir", "annotation_path",
]  # fmt: skip


@dataclass(frozen=True)
class DatasetLayout:
    """Where each part of an Aff-Wild2-style dataset lives; relative entries resolve under root."""

    root: Path
    annotations: Path
    crops: tuple[Path, ...]
    videos: Path
    test_list: Path
    example_submission: Path

    @classmethod
    def from_config(cls, dataset: dict) -> "DatasetLayout":
        """Build from the config's ``dataset:`` section."""
        root = Path(dataset["root"])

        def under_root(entry: str) -> Path:
            path = Path(entry)
            return path if path.is_absolute() else root / path

        return cls(
            root=root,
            annotations=under_root(dataset["annotations"]),
            crops=tuple(under_root(c) for c in dataset["crops"]),
            videos=under_root(dataset["videos"]),
            test_list=under_root(dataset["test_list"]),
            example_submission=under_root(dataset["example_submission"]),
        )


def build_manifest(layout: DatasetLayout) -> pd.DataFrame:
    """Read the dataset once: one row per trial of Train_Set, Validation_Set and the test list.

    ``n_rows`` is the number of label rows (train/validation) or of example-submission rows (test);
    it fixes the length T of every per-trial array downstream. ``n_frames`` is the container's count.
    """
    if not layout.root.is_dir():
        raise DatasetError(f"{layout.root}: dataset root does not exist")
    annotated = find_annotations(layout.annotations)
    test_trials = read_test_list(layout.test_list)
    example_rows = Counter(trial for trial, _ in read_example_submission(layout.example_submission))
    videos = find_videos(layout.videos)
    crop_roots = [root for root in layout.crops if root.is_dir()]
    if not crop_roots:
        raise DatasetError(f"{layout.crops[0]}: face crops folder does not exist")

    both = sorted(set(test_trials) & set(annotated))
    if both:
        raise DatasetError(f"{layout.test_list}: test trial '{both[0]}' also has an annotation file")
    missing_example = [t for t in test_trials if t not in example_rows]
    if missing_example:
        raise DatasetError(
            f"{layout.example_submission}: no rows for test trial '{missing_example[0]}'"
        )

    trials = [(t, split, path) for t, (split, path) in annotated.items()]
    trials += [(t, TEST_SPLIT, None) for t in test_trials]
    records = []
    probed: dict[str, object] = {}
    for trial, split, annotation_path in sorted(trials):
        video = base_video(trial)
        if video not in videos:
            source = annotation_path or layout.test_list
            raise DatasetError(f"{source}: no raw video '{video}.mp4/.avi' under {layout.videos}")
        if video not in probed:
            probed[video] = probe_video(videos[video])
        info = probed[video]
        crops_dir = find_crop_folder(crop_roots, trial)
        n_crops = len(index_crops(crops_dir)) if crops_dir else 0
        if n_crops == 0:
            raise DatasetError(
                f"{crops_dir or crop_roots[0] / trial}: no face crops for trial '{trial}'"
            )
        if annotation_path is not None:
            n_rows = len(read_annotation(annotation_path))
        else:
            n_rows = example_rows[trial]
        records.append(
            {
                "trial": trial,
                "video": video,
                "split": split,
                "fps": float(info.fps),
                "fps_fraction": str(info.fps),
                "n_frames": info.n_frames,
                "n_rows": n_rows,
                "n_crops": n_crops,
                "video_path": str(videos[video]),
                "crops_dir": str(crops_dir),
                "annotation_path": str(annotation_path) if annotation_path else "",
            }
        )
    return pd.DataFrame.from_records(records, columns=MANIFEST_COLUMNS)


def write_manifest(manifest: pd.DataFrame, path: str | Path) -> None:
    """Write the manifest as TSV."""
    manifest.to_csv(path, sep="\t", index=False)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest TSV written by `write_manifest`."""
    manifest = pd.read_csv(path, sep="\t", keep_default_na=False, dtype={"annotation_path": str})
    missing = set(MANIFEST_COLUMNS) - set(manifest.columns)
    if missing:
        raise DatasetError(f"{path}: manifest lacks columns {sorted(missing)}")
    return manifest
