"""Reader for the Aff-Wild2 / ABAW valence-arousal layout (the demo dataset uses the same one).

Conventions (see shared/affwild2.md): annotation row i (0-based, after the ``valence,arousal``
header) belongs to face crop ``str(i + 1).zfill(5) + '.jpg'``; -5 marks an unannotated frame;
``<video>_left`` / ``<video>_right`` are two people in one raw video; the frame rate comes from the
container, never from the file name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vapipe import INVALID_LABEL
from vapipe.errors import InputError

ANNOTATION_HEADER = "valence,arousal"
SUBMISSION_HEADER = "image_location,valence,arousal"
SPLIT_FOLDERS = ("Train_Set", "Validation_Set")
TEST_SPLIT = "Test_Set"
VIDEO_SUFFIXES = (".mp4", ".avi")
# Crops are <NNNNN>.jpg; file systems and copies from other systems may upper-case the suffix.
_CROP_NAME = re.compile(r"^(\d{5})\.jpg$", re.IGNORECASE)
_PERSON_SUFFIX = re.compile(r"_(left|right)$")


class DatasetError(InputError):
    """A dataset file breaks the Aff-Wild2 conventions; the message names the file."""


def base_video(trial: str) -> str:
    """Raw video name of a trial: ``<video>_left`` and ``<video>_right`` share ``<video>``."""
    return _PERSON_SUFFIX.sub("", trial)


def crop_name(frame: int) -> str:
    """File name of 1-based frame number `frame`: 1 -> '00001.jpg'."""
    return f"{frame:05d}.jpg"


def read_text(path: str | Path, what: str) -> str:
    """A text file's content: UTF-8 with or without a byte-order mark, any line ending; any other
    encoding is a one-line error naming the file (UTF-16 from a Windows editor, Latin-1 bytes)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read {what} ({error.strerror})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DatasetError(f"{path}: {what} is UTF-16 text; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(
            f"{path}: {what} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
            "save it as UTF-8"
        ) from None


def read_annotation(path: str | Path) -> np.ndarray:
    """Read one trial's ``valence,arousal`` file into float32 [rows, 2]; -5 rows are kept as -5.

    Row i is frame i + 1, so a blank line between rows is an error (dropping it would shift every
    later label by a frame); blank lines at the end are ignored."""
    path = Path(path)
    lines = read_text(path, "annotation file").splitlines()
    if not lines or lines[0].strip().replace(" ", "") != ANNOTATION_HEADER:
        found = lines[0].strip() if lines else "an empty file"
        raise DatasetError(f"{path}: expected header '{ANNOTATION_HEADER}', found '{found}'")
    rows = lines[1:]
    while rows and not rows[-1].strip():
        rows.pop()
    if not rows:
        raise DatasetError(f"{path}: no annotation rows after the header")
    blank = next((i for i, line in enumerate(rows) if not line.strip()), None)
    if blank is not None:
        raise DatasetError(
            f"{path}:{blank + 2}: blank line between annotation rows (every row is a frame; "
            "removing it would shift the later labels)"
        )
    values = np.empty((len(rows), 2), dtype=np.float32)
    for i, line in enumerate(rows):
        fields = line.split(",")
        if len(fields) != 2:
            raise DatasetError(f"{path}:{i + 2}: expected 2 values, found {len(fields)}: '{line}'")
        try:
            values[i] = [float(fields[0]), float(fields[1])]
        except ValueError:
            raise DatasetError(f"{path}:{i + 2}: non-numeric value in '{line}'") from None
    invalid_row = np.all(values == INVALID_LABEL, axis=1)
    out_of_range = ~invalid_row[:, None] & ((values < -1) | (values > 1) | ~np.isfinite(values))
    if out_of_range.any():
        line_no = int(np.argwhere(out_of_range)[0, 0]) + 2
        raise DatasetError(f"{path}:{line_no}: value outside [-1, 1] that is not the -5 marker: '{rows[line_no - 2]}'")
    return values


def find_annotations(annotations_root: str | Path) -> dict[str, tuple[str, Path]]:
    """Map trial -> (split folder, annotation path) over Train_Set and Validation_Set."""
    root = Path(annotations_root)
    if not root.is_dir():
        raise DatasetError(f"{root}: annotation folder does not exist")
    found: dict[str, tuple[str, Path]] = {}
    for split in SPLIT_FOLDERS:
        folder = root / split
        if not folder.is_dir():
            raise DatasetError(f"{folder}: annotation split folder does not exist")
        for path in sorted(folder.glob("*.txt")):
            if path.stem in found:
                raise DatasetError(f"{path}: trial '{path.stem}' is annotated in two splits")
            found[path.stem] = (split, path)
    if not found:
        raise DatasetError(f"{root}: no annotation files under {', '.join(SPLIT_FOLDERS)}")
    return found


def read_test_list(path: str | Path) -> list[str]:
    """Trial names of the test set, one per line, in file order."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: test list does not exist")
    names = [line.strip() for line in read_text(path, "test list").splitlines() if line.strip()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DatasetError(f"{path}: trial listed twice: {duplicates[0]}")
    return names


def walk_files(root: Path):
    """Every file under `root`, following symlinked folders (batch folders on clusters often are)
    but never visiting a real folder twice (a link cycle)."""
    seen = set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders.sort()
        for name in sorted(files):
            yield Path(folder) / name


def find_videos(videos_root: str | Path) -> dict[str, Path]:
    """Map raw video name (file stem) -> path, searching batch subfolders (symlinked ones too)."""
    root = Path(videos_root)
    if not root.is_dir():
        raise DatasetError(f"{root}: video folder does not exist")
    videos: dict[str, Path] = {}
    for path in walk_files(root):
        if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
            if path.stem in videos:
                raise DatasetError(f"{path}: video '{path.stem}' also at {videos[path.stem]}")
            videos[path.stem] = path
    return videos


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a raw video."""

    fps: Fraction
    n_frames: int
    has_audio: bool
    audio_seconds: float


def probe_video(path: str | Path) -> VideoInfo:
    """Frame rate, frame count and audio presence, read from the container itself."""
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate or rate <= 0:
                raise DatasetError(f"{path}: the container declares no frame rate")
            n_frames = stream.frames
            if n_frames <= 0:  # some containers do not store a count: count the packets
                n_frames = sum(1 for packet in container.demux(stream) if packet.size)
            audio = container.streams.audio
            audio_seconds = 0.0
            if audio and audio[0].duration and audio[0].time_base:
                audio_seconds = float(audio[0].duration * audio[0].time_base)
    except av.error.FFmpegError as error:
        raise DatasetError(f"{path}: unreadable video ({error})") from None
    if n_frames <= 0:
        raise DatasetError(f"{path}: video has zero frames")
    return VideoInfo(Fraction(rate), int(n_frames), bool(audio), audio_seconds)


def find_crop_folder(crop_roots: list[Path], trial: str) -> Path | None:
    """The folder holding a trial's face crops, looking in every crops root (releases ship two)."""
    hits = [root / trial for root in crop_roots if (root / trial).is_dir()]
    if len(hits) > 1:
        raise DatasetError(f"{hits[1]}: crops of trial '{trial}' also in {hits[0]}")
    return hits[0] if hits else None


def index_crops(folder: str | Path) -> dict[int, Path]:
    """Map 1-based frame number -> crop path; names are parsed, never taken by position."""
    return scan_crops(folder)[0]


def scan_crops(folder: str | Path) -> tuple[dict[int, Path], list[str]]:
    """(1-based frame number -> crop path, sorted names of the other files in the folder).
    ``00012.jpg`` and ``00012.JPG`` are crops; ``000012.jpg`` or ``notes.txt`` are not."""
    crops: dict[int, Path] = {}
    others = []
    for path in Path(folder).iterdir():
        match = _CROP_NAME.match(path.name)
        if not match:
            others.append(path.name)
            continue
        frame = int(match.group(1))
        if frame in crops:
            raise DatasetError(f"{path}: frame {frame} also in {crops[frame].name}")
        crops[frame] = path
    return crops, sorted(others)


def read_example_submission(path: str | Path) -> list[tuple[str, int]]:
    """(trial, 1-based frame) of every row of the organisers' example file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: example submission file does not exist")
    lines = read_text(path, "example submission").splitlines()
    header = lines[0].strip() if lines else ""
    if header != SUBMISSION_HEADER:
        raise DatasetError(f"{path}: expected header '{SUBMISSION_HEADER}', found '{header}'")
    rows, first_line = [], {}
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        row = parse_image_location(line.split(",", 1)[0], f"{path}:{line_no}")
        if row in first_line:
            raise DatasetError(f"{path}:{line_no}: row for {row[0]}/{crop_name(row[1])} repeats line {first_line[row]}")
        first_line[row] = line_no
        rows.append(row)
    if not rows:
        raise DatasetError(f"{path}: no rows after the header")
    return rows


def parse_image_location(location: str, where: str) -> tuple[str, int]:
    """Split '<trial>/<NNNNN>.jpg' into (trial, frame number)."""
    trial, _, name = location.strip().rpartition("/")
    match = _CROP_NAME.match(name)
    if not trial or not match:
        raise DatasetError(f"{where}: image_location '{location}' is not '<trial>/<NNNNN>.jpg'")
    return trial, int(match.group(1))
