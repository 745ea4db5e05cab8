"""The manifest: one table of trials that every later step reads instead of the dataset folders."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from vapipe.data.affwild2 import (
    TEST_SPLIT,
    DatasetError,
    VideoInfo,
    base_video,
    find_annotations,
    find_crop_folder,
    find_videos,
    probe_video,
    read_annotation,
    read_example_submission,
    read_test_list,
    scan_crops,
    walk_files,
)
from vapipe.data.timing import VideoTiming, read_timing
from vapipe.errors import InputError
from vapipe.specs import DatasetSpec, build

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "trial", "video", "split", "fps", "fps_fraction", "n_frames", "n_rows", "n_crops",
    "video_path", "crops_dir", "annotation_path", "annotation_short",
    "variable_rate", "audio_offset", "video_seconds", "audio_seconds", "timing_note",
    "labels_source", "video_source", "crops_source",
]  # fmt: skip


LAYOUTS: dict[str, type[DatasetLayout]] = {}


def register_layout(name: str):
    """Class decorator: a dataset layout that a config names under ``dataset.layout``."""

    def add(cls):
        cls.layout = name
        LAYOUTS[name] = cls
        return cls

    return add


def list_layouts() -> list[str]:
    return sorted(LAYOUTS)


@dataclass(frozen=True)
class DatasetLayout:
    """Where each part of a dataset lives and how its lists are read; relative entries resolve
    under root. `build_manifest` asks a layout only these five questions, so a release that
    differs in one of them is a subclass overriding that method, registered with `register_layout`
    and named in the config's ``dataset.layout`` (see README, "Adding a dataset layout"). Later
    steps read the manifest, never the dataset folders."""

    root: Path
    annotations: Path
    crops: tuple[Path, ...]
    videos: Path
    test_list: Path | None
    example_submission: Path
    layout: ClassVar[str]

    @classmethod
    def from_config(cls, dataset: dict) -> DatasetLayout:
        """The registered layout a config's ``dataset:`` section names, its paths resolved."""
        spec = build(DatasetSpec, dataset, "dataset")
        if spec.layout not in LAYOUTS:
            raise DatasetError(f"dataset.layout '{spec.layout}' is unknown; known: {', '.join(list_layouts())}")
        root = Path(spec.root)

        def under_root(entry: str | None) -> Path | None:
            if entry is None:
                return None
            path = Path(entry)
            return path if path.is_absolute() else root / path

        return LAYOUTS[spec.layout](
            root=root,
            annotations=under_root(spec.annotations),
            crops=tuple(under_root(c) for c in spec.crops),
            videos=under_root(spec.videos),
            test_list=under_root(spec.test_list),
            example_submission=under_root(spec.example_submission),
        )

    def annotated_trials(self) -> dict[str, tuple[str, Path]]:
        """{trial: (split, annotation file)} of the annotated splits."""
        return find_annotations(self.annotations)

    def test_trials(self) -> list[str]:
        """The test trials, in the organisers' order."""
        if self.test_list is None:
            raise DatasetError(f"{self.root}: dataset.test_list is not set; layout '{self.layout}' needs it")
        return read_test_list(self.test_list)

    def example_rows(self) -> dict[str, int]:
        """Rows each test trial needs: its highest frame number in the organisers' example file
        (the submission fills rows by frame number, so a gap in the example shifts nothing)."""
        rows: dict[str, int] = {}
        for trial, frame in read_example_submission(self.example_submission):
            rows[trial] = max(rows.get(trial, 0), frame)
        return rows

    def raw_videos(self) -> dict[str, Path]:
        """{base video name: raw video file}."""
        return find_videos(self.videos)

    def crop_folder(self, crop_roots: list[Path], trial: str) -> Path | None:
        """The folder of a trial's face crops, if any."""
        return find_crop_folder(crop_roots, trial)


@register_layout("affwild2")
class AffWild2Layout(DatasetLayout):
    """The ABAW VA challenge release (../shared/affwild2.md): Train_Set / Validation_Set
    annotation folders, a test-list file, crops folders, batch folders of raw videos."""


def digest(data: str | bytes) -> str:
    """A short content fingerprint."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:16]


def file_stamp(path: str | Path) -> str:
    """Size and modification time of a file (a video: too large to hash on every manifest build)."""
    stat = Path(path).stat()
    return digest(f"{stat.st_size}:{stat.st_mtime_ns}")


def input_source(row, input: str) -> str:
    """What a trial's store is computed from, as the manifest fingerprints it: its rows and its face
    crops (``input: face``) or its video's audio (``mixture``, ``vocals``). A store made from
    anything else is recomputed; see `dataset_state` for when the manifest itself is rebuilt."""
    column = "crops_source" if input == "face" else "video_source"
    return f"{int(row.n_rows)}:{getattr(row, column, '')}"


def dataset_state(layout: DatasetLayout) -> str:
    """A cheap stamp of everything the manifest reads: size and modification time of the annotation
    files, the lists and the videos, and of each crops folder (adding, removing or renaming a crop
    changes its folder's time; a crop rewritten in place does not: touch its folder). The workflow
    rebuilds the manifest when it changes; the manifest's per-trial sources then decide which
    stores and jobs rerun."""
    stamps = []

    def stamp(path: Path) -> None:
        try:
            stat = path.stat()
            stamps.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
        except OSError:
            stamps.append(f"{path}:missing")

    def listing(folder: Path) -> list[Path]:
        return sorted(folder.iterdir()) if folder.is_dir() else [folder]  # a missing folder: "missing"

    for split in listing(layout.annotations):
        for path in listing(split) if split.is_dir() else [split]:
            stamp(path)
    for path in walk_files(layout.videos) if layout.videos.is_dir() else [layout.videos]:
        stamp(path)
    for root in layout.crops:
        for folder in listing(root):  # a folder's own time: crops added, removed or renamed
            stamp(folder)
    for path in (layout.test_list, layout.example_submission):
        if path is not None:
            stamp(path)
    return digest("\n".join(stamps))


SKIPPED_COLUMNS = ["trial", "stage", "reason"]


def max_extra_rows(n_frames: int) -> int:
    """Label rows a trial may have beyond its video's frames (Aff-Wild2: usually 1, sometimes 2)."""
    return 2 + n_frames // 100


def build_manifest(
    layout: DatasetLayout, on_bad_trial: str = "fail", require_audio: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the dataset once: one row per trial of Train_Set, Validation_Set and the test list.

    ``n_rows`` is the number of label rows (train/validation) or of example-submission rows (test);
    it fixes the length T of every per-trial array downstream. ``n_frames`` is the container's count.
    A problem local to one trial raises (``on_bad_trial='fail'``) or drops that trial and records
    it in the second table (``'skip'``); problems with the dataset as a whole always raise.
    """
    if on_bad_trial not in ("fail", "skip"):
        raise ValueError(f"on_bad_trial must be 'fail' or 'skip', got '{on_bad_trial}'")
    if not layout.root.is_dir():
        raise DatasetError(f"{layout.root}: dataset root does not exist")
    annotated = layout.annotated_trials()
    test_trials = layout.test_trials()
    example_rows = layout.example_rows()
    videos = layout.raw_videos()
    crop_roots = [root for root in layout.crops if root.is_dir()]
    if not crop_roots:
        raise DatasetError(f"{layout.crops[0]}: face crops folder does not exist")
    both = sorted(set(test_trials) & set(annotated))
    if both:
        raise DatasetError(
            f"{layout.test_list or layout.example_submission}: test trial '{both[0]}' also has an annotation file"
        )
    unknown = sorted(set(example_rows) - set(test_trials))
    if unknown:
        raise DatasetError(f"{layout.example_submission}: trial '{unknown[0]}' is not in {layout.test_list}")

    trials = [(t, split, path) for t, (split, path) in annotated.items()]
    trials += [(t, TEST_SPLIT, None) for t in test_trials]
    records, skipped = [], []
    probed: dict[str, tuple[VideoInfo, VideoTiming] | DatasetError] = {}
    for trial, split, annotation_path in sorted(trials):
        try:
            records.append(
                _trial_record(
                    trial, split, annotation_path, layout, videos, crop_roots, example_rows, probed, require_audio
                )
            )
        except DatasetError as error:
            if on_bad_trial == "fail":
                raise
            log.warning("skipping trial %s: %s", trial, error)
            skipped.append({"trial": trial, "stage": "manifest", "reason": str(error)})
    if not records:
        raise DatasetError(f"{layout.root}: no usable trial")
    return (
        pd.DataFrame.from_records(records, columns=MANIFEST_COLUMNS),
        pd.DataFrame.from_records(skipped, columns=SKIPPED_COLUMNS),
    )


def _trial_record(
    trial, split, annotation_path, layout, videos, crop_roots, example_rows, probed, require_audio
) -> dict:
    """Check one trial's files and describe it; raises DatasetError naming the file at fault."""
    video = base_video(trial)
    if video not in videos:
        source = annotation_path or layout.test_list or layout.example_submission
        raise DatasetError(f"{source}: no raw video '{video}.mp4/.avi' under {layout.videos}")
    if video not in probed:  # _left and _right share one probe (and one verdict)
        try:
            probed[video] = probe_video(videos[video]), read_timing(videos[video])
        except InputError as error:
            probed[video] = DatasetError(str(error))
    if isinstance(probed[video], DatasetError):
        raise probed[video]
    info, timing = probed[video]
    note = timing.warning()
    if require_audio and timing.lengths_disagree():
        raise DatasetError(f"{videos[video]}: {note}")
    if note:
        log.warning("%s: %s", videos[video], note)
    if require_audio and not info.has_audio:
        raise DatasetError(f"{videos[video]}: no audio stream, but the config has audio backbones")
    crops_dir = layout.crop_folder(crop_roots, trial)
    crops, others = scan_crops(crops_dir) if crops_dir else ({}, [])
    n_crops = len(crops)
    if others:
        message = f"{crops_dir}: {len(others)} files not named NNNNN.jpg (5 digits, 1-based), e.g. '{others[0]}'"
        if n_crops == 0:
            raise DatasetError(f"{message}, and no face crops for trial '{trial}'")
        log.warning("%s; they are ignored", message)
    if n_crops == 0:
        raise DatasetError(f"{crops_dir or crop_roots[0] / trial}: no face crops for trial '{trial}'")
    if annotation_path is not None:
        n_rows, source = len(read_annotation(annotation_path)), annotation_path
    else:
        n_rows, source = example_rows.get(trial, 0), layout.example_submission
        if n_rows == 0:
            raise DatasetError(f"{source}: no rows for test trial '{trial}'")
    if n_rows > info.n_frames + max_extra_rows(info.n_frames):
        what = "rows" if annotation_path is not None else "rows (its highest frame number)"
        raise DatasetError(
            f"{source}: {n_rows} {what} for trial '{trial}', but {videos[video]} has only {info.n_frames} frames"
        )
    short = annotation_path is not None and info.n_frames - n_rows > max_extra_rows(info.n_frames)
    if short:
        log.warning(
            "%s: %d rows for trial '%s', but %s has %d frames: the labels may not cover the whole video",
            annotation_path,
            n_rows,
            trial,
            videos[video],
            info.n_frames,
        )
    return {
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
        "annotation_short": short,
        "variable_rate": timing.variable_rate,
        "audio_offset": round(timing.audio_offset or 0.0, 6),
        "video_seconds": round(timing.video_seconds, 6),
        "audio_seconds": round(timing.audio_seconds, 6),
        "timing_note": note,
        "labels_source": digest(Path(annotation_path).read_bytes()) if annotation_path else f"example rows {n_rows}",
        "video_source": file_stamp(videos[video]),
        "crops_source": digest("\n".join(sorted(str(frame) for frame in crops))),
    }


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


def shard_trials(manifest: pd.DataFrame, shard: int, n_shards: int) -> pd.DataFrame:
    """The manifest rows whose raw video falls in `shard` of `n_shards` (an extraction job's trials;
    the DAG reads this without importing torch)."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is outside 0 .. {n_shards - 1}")
    videos = sorted(manifest["video"].unique())
    chosen = set(videos[shard::n_shards])
    return manifest[manifest["video"].isin(chosen)].sort_values("trial")
