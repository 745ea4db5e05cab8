"""When each video row happens: presentation timestamps, and where the audio sits.

YouTube videos (Aff-Wild2's source) may have a variable frame rate, and an audio stream that starts
later than the video. A frame's time is its presentation timestamp (PTS) measured from the first
frame's; the audio is placed on that clock by its stream start time. For a constant-rate video
the PTS are i / fps (within a millisecond) and rows keep exactly i / fps, so nothing moves; a
variable-rate video's rows take their PTS. Rows beyond the video's frames (annotation files often
have one or two more) continue at the median frame duration.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vapipe.errors import InputError

# Frames further than this from the constant-rate grid i / fps make a video variable-rate.
GRID_TOLERANCE = 1e-3
# Video and audio durations that differ by more than this disagree (a bad container or a cut).
DURATION_TOLERANCE = 0.5
SAMPLE_RATE_FOR_NOTES = 1000  # audio offsets under a millisecond are not worth a note


@dataclass(frozen=True)
class VideoTiming:
    """Presentation times of a video's frames and where its audio starts, in seconds."""

    fps: Fraction
    frame_times: np.ndarray  # [n_frames] from the first frame's presentation
    video_start: float  # the first frame's presentation time on the container's clock
    audio_offset: float | None  # first decoded audio sample minus first frame, None without audio
    audio_seconds: float

    @property
    def variable_rate(self) -> bool:
        grid = np.arange(len(self.frame_times)) / float(self.fps)
        return bool(np.abs(self.frame_times - grid).max(initial=0.0) > GRID_TOLERANCE)

    @property
    def frame_seconds(self) -> float:
        """Median frame duration (1 / fps for one frame)."""
        steps = np.diff(self.frame_times)
        return float(np.median(steps)) if len(steps) else 1 / float(self.fps)

    @property
    def video_seconds(self) -> float:
        return float(self.frame_times[-1]) + self.frame_seconds if len(self.frame_times) else 0.0

    def row_spans(self, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """[start, end) of rows 0 .. n_rows - 1: the i / fps grid, or each row's PTS to the next."""
        if not self.variable_rate:
            return grid_spans(n_rows, float(self.fps))
        starts = self.row_times(n_rows)
        return starts, np.append(starts[1:], starts[-1] + self.frame_seconds)

    def row_times(self, n_rows: int) -> np.ndarray:
        """Start time of rows 0 .. n_rows - 1: i / fps for a constant rate, else the PTS."""
        if not self.variable_rate:
            return np.arange(n_rows, dtype=np.float64) / float(self.fps)
        times = self.frame_times[:n_rows]
        extra = n_rows - len(times)
        if extra > 0:
            times = np.concatenate([times, times[-1] + self.frame_seconds * np.arange(1, extra + 1)])
        return times.astype(np.float64)

    def warning(self) -> str:
        """What is unusual about the timing ('' if nothing): a variable rate, late audio, lengths that disagree."""
        notes = []
        if self.variable_rate:
            steps = np.diff(self.frame_times)
            low, high = 1 / steps.max(), 1 / steps.min()
            rate = f"{low:.2f}-{high:.2f} fps" if high - low > 0.01 else f"a constant {low:.2f} fps"
            notes.append(f"frames at {rate}, off the container's {float(self.fps):.2f} fps grid; rows use timestamps")
        if self.audio_offset and abs(self.audio_offset) > 1 / SAMPLE_RATE_FOR_NOTES:
            notes.append(f"audio starts {self.audio_offset:+.3f} s from the first frame; placed there")
        if self.lengths_disagree():
            notes.append(f"video lasts {self.video_seconds:.2f} s but audio ends at {self.audio_end:.2f} s")
        return "; ".join(notes)

    @property
    def audio_end(self) -> float:
        """When the audio ends on the video's clock."""
        return (self.audio_offset or 0.0) + self.audio_seconds

    def lengths_disagree(self) -> bool:
        """Video and audio end more than DURATION_TOLERANCE apart (a bad container, a cut track)."""
        return self.audio_offset is not None and abs(self.video_seconds - self.audio_end) > DURATION_TOLERANCE


def grid_spans(n_rows: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """[i / fps, (i + 1) / fps) of rows 0 .. n_rows - 1: a constant-rate video's rows."""
    index = np.arange(n_rows, dtype=np.float64)
    return index / fps, (index + 1.0) / fps


def row_spans(row) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) in seconds of the rows of a manifest row (a trial): its video's timestamps when
    the manifest marks it variable-rate, else the i / fps grid."""
    if bool(getattr(row, "variable_rate", False)):
        return read_timing(row.video_path).row_spans(int(row.n_rows))
    return grid_spans(int(row.n_rows), float(row.fps))


def first_audio_time(path: str | Path) -> float | None:
    """Presentation time of the first decoded audio sample (after the decoder drops any encoder
    priming), on the container's clock; None without audio."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        for frame in container.decode(container.streams.audio[0]):
            if frame.pts is not None:
                return float(frame.pts * frame.time_base)
    return None


def read_timing(path: str | Path) -> VideoTiming:
    """Frame PTS (demuxed, not decoded) and where the audio stream starts, from the container."""
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            video = container.streams.video[0]
            fps = Fraction(video.average_rate or video.guessed_rate or 0)
            if fps <= 0:
                raise InputError(f"{path}: the container declares no frame rate")
            audio = container.streams.audio[0] if container.streams.audio else None
            pts, audio_end = [], 0.0
            for packet in container.demux(*[s for s in (video, audio) if s is not None]):
                if not packet.size:
                    continue
                if packet.stream is video:
                    pts.append(None if packet.pts is None else packet.pts * packet.time_base)
                elif packet.pts is not None:
                    end = (packet.pts + (packet.duration or 0)) * packet.time_base
                    audio_end = max(audio_end, float(end))
        audio_start = first_audio_time(path) if audio is not None else None
    except av.error.FFmpegError as error:
        raise InputError(f"{path}: unreadable video ({error})") from None
    if not pts:
        raise InputError(f"{path}: video has zero frames")
    if any(p is None for p in pts):  # e.g. AVI: no timestamps, a constant rate by construction
        first, times = 0.0, np.arange(len(pts)) / float(fps)
    else:
        stamps = np.sort(np.array([float(p) for p in pts]))
        first, times = float(stamps[0]), stamps - float(stamps[0])
    offset = None if audio_start is None else audio_start - first
    audio_seconds = 0.0 if audio_start is None else max(0.0, audio_end - audio_start)
    return VideoTiming(fps, times, first, offset, audio_seconds)
