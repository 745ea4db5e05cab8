"""Deterministic synthetic demo dataset in the Aff-Wild2 / ABAW valence-arousal layout.

The real Aff-Wild2 is licensed, so the pipeline's default run uses data made here from a seed,
with no network. ``generate_demo_dataset(root, spec)`` writes::

    videos/batch1/<video>.mp4                 raw videos (libx264 + aac, 48 kHz mono)
    videos/batch2/<video>.mp4|.avi            (.avi: mpeg4 + pcm_s16le)
    cropped_aligned/<trial>/00001.jpg ...     112x112 aligned face crops, 1-based, with gaps
    cropped_aligned_new_50_vids/<trial>/...   two trials' crops live in this second folder
    annotations/VA_Estimation_Challenge/{Train_Set,Validation_Set}/<trial>.txt
    names_of_videos_in_each_test_set/Valence_Arousal_Estimation_Challenge_test_set_release.txt
    CVPR_6th_ABAW_VA_test_set_example.txt     organisers' example submission for the test trials
    ground_truth/<trial>.npz                  true labels, speaking, mouth opening, face visibility
    ground_truth/<video>.audio.npz            16 kHz clean voice, background, mixture, VAD
    ground_truth/splits.tsv                   trial, video, split
    README.txt

Quirks of the real release are reproduced on purpose: frame rates 30, 30000/1001, 25, 24 and one
10 fps video, video names whose middle number is not the frame rate, one raw video holding two
annotated people (``<video>_left`` / ``<video>_right``, split screen, taking turns to speak),
missing crops where the face is occluded, ``-5,-5`` rows, and annotation files one or two rows
longer than the video.

Cue design. Features downstream come from random-init CNNs with *global* average pooling, which
discard where things are and keep how much of each texture there is, so every label moves
*amounts* of colour and texture, not only shapes, and the cues are spread over the face (forehead,
eyes, cheeks, mouth, chin) so that nets sampling the crop sparsely still see some of them.
Valence: cheek blush (none when sad), mouth width, both rows of white teeth in a broad smile (AU12)
and thin brows grow with positive valence; heavy lowered brows shading the eye sockets, dark
vertical furrows (AU4), a pressed narrow mouth with downturned corners, depressor lines (AU15) and
chin dimpling (AU17) grow with negative valence. Arousal: eye opening (white sclera) and pupil
size, raised brows with horizontal forehead lines (AU1+2), and head-motion jitter amplitude; in the
voice, pitch, loudness and syllable rate. The voice carries valence too, as smiled speech does:
formants rise with it (up to +-25%: lip spreading shortens the vocal tract) and the voice gets
brighter (less low-pass tilt). A speaker's mouth opens (dark cavity) with the syllable
envelope of their own voice only. The crop is tight (face ~90% of its height) so that per-trial
background colour and lighting stay nuisances rather than the main content.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw
from scipy.signal import lfilter, resample_poly

AUDIO_RATE = 48_000
GT_AUDIO_RATE = 16_000
CROP_SIZE = 112
FRAME_HEIGHT = 192
PERSON_WIDTH = {1: 256, 2: 192}  # frame width per person: single view, or each split-screen half
ANNOTATION_DIR = Path("annotations") / "VA_Estimation_Challenge"
CROP_DIRS = ("cropped_aligned", "cropped_aligned_new_50_vids")
TEST_LIST = Path("names_of_videos_in_each_test_set") / ("Valence_Arousal_Estimation_Challenge_test_set_release.txt")
EXAMPLE_SUBMISSION = "CVPR_6th_ABAW_VA_test_set_example.txt"
SPLITS = ("Train_Set", "Validation_Set", "Test_Set")

_RATES = (Fraction(30), Fraction(30000, 1001), Fraction(25), Fraction(24))
_TEN_FPS_VIDEO = 2  # index of the single 10 fps video (clamped to the last video)
_SS = 2  # supersampling factor of the face renderer
_FACE_UNIT = 48.0  # pixels per face unit at 1x (face half-height): a tight crop, little background
_FACE_Y = 80.0  # vertical face centre in the raw frame
_EYE_Y = -0.05  # eye line in face units (chin at +1)
_ANGLES = np.linspace(0, 2 * np.pi, 28)
_CIRCLE = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], 1)  # top half is [14:] (y points down)
_U = np.linspace(-1.0, 1.0, 15)  # abscissa of mouth curves
_VOWELS = np.array(  # formants F1, F2, F3 in Hz of /a e i o u/
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
    dtype=np.float64,
)
_BANDWIDTHS = (80.0, 100.0, 130.0)
_CHIN_DIMPLES = ((-0.16, 0.78), (-0.05, 0.82), (0.06, 0.78), (0.17, 0.83), (-0.1, 0.88), (0.1, 0.89), (0.0, 0.74))
_IRIS = ((70, 45, 25), (50, 90, 140), (70, 110, 60), (35, 25, 20))

Color = tuple[int, int, int]
Segments = tuple[tuple[int, int], ...]
Floats = NDArray[np.float64]
Span = tuple[float, float]  # start, stop in seconds
Corner = tuple[int, int]  # x, y of a crop's top-left pixel


@dataclass(frozen=True)
class DemoSpec:
    """Size and seed of the demo dataset; one base video holds two annotated people."""

    seed: int = 0
    n_videos: int = 23
    min_frames: int = 200
    max_frames: int = 360
    n_test_videos: int = 4
    n_validation_videos: int = 5

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"DemoSpec.seed must be >= 0, got {self.seed}")
        if self.min_frames < 30 or self.max_frames < self.min_frames:
            raise ValueError(f"DemoSpec needs 30 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if self.n_test_videos < 0 or self.n_validation_videos < 0:
            raise ValueError("DemoSpec video counts must be >= 0")
        if self.n_videos < self.n_test_videos + self.n_validation_videos + 1:
            raise ValueError(
                f"DemoSpec.n_videos={self.n_videos} leaves no training video after "
                f"{self.n_test_videos} test and {self.n_validation_videos} validation videos"
            )


@dataclass(frozen=True)
class _Trial:
    """One annotated person in a raw video."""

    name: str
    side: int  # 0 for a single-person video, else 0 = left, 1 = right
    split: str
    n_rows: int
    invalid: Segments  # row ranges written as -5,-5
    gaps: Segments  # frame ranges without a crop (face occluded)
    crop_dir: str


@dataclass(frozen=True)
class _Video:
    """One raw video and the trials it holds."""

    index: int
    name: str
    batch: str
    ext: str
    fps: Fraction
    n_frames: int
    trials: tuple[_Trial, ...]

    @property
    def person_width(self) -> int:
        """Width of each person's part of the frame (the whole frame, or one split-screen half)."""
        return PERSON_WIDTH[len(self.trials)]


@dataclass(frozen=True)
class _Identity:
    """Looks and voice of one person."""

    skin: Color
    hair: Color
    hair_style: int  # 0 short, 1 long, 2 cap
    shirt: Color
    iris: Color
    lips: Color
    background: Color
    picture: Color
    face_width: float
    chin: float
    eye_x: float
    scale: float
    f0: float
    formant_scale: float


class _Pose(NamedTuple):
    """Face-to-canvas transform: centre (px), pixels per face unit, in-plane rotation."""

    cx: float
    cy: float
    scale: float
    cos: float
    sin: float


class _Expression(NamedTuple):
    """Per-frame face state."""

    valence: float
    arousal: float
    mouth: float  # speech opening in [0, 1]
    eye: float  # blink factor in [0, 1]
    gaze: float


def _rng(seed: int, *keys: int) -> np.random.Generator:
    """Independent generator for one purpose, derived from the spec seed."""
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _fmt(value: float) -> str:
    """Aff-Wild2 number style: up to 3 decimals, no trailing zeros ('0.125', '-0.3', '0')."""
    text = f"{round(float(value), 3) + 0.0:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _place_segments(rng: np.random.Generator, n: int, count: int, lo: int, hi: int) -> Segments:
    """`count` sorted, disjoint [start, stop) ranges of length lo..hi inside range(n)."""
    if count == 0:
        return ()
    hi = max(lo, min(hi, (n - count + 1) // (2 * count)))
    lengths = rng.integers(lo, hi + 1, count)
    free = n - int(lengths.sum()) - (count - 1)
    cuts = np.sort(rng.integers(0, free + 1, count))
    starts = cuts + np.concatenate([[0], np.cumsum(lengths)[:-1]]) + np.arange(count)
    return tuple((int(s), int(s + length)) for s, length in zip(starts, lengths))


def _video_names(rng: np.random.Generator, n_videos: int) -> list[str]:
    """Aff-Wild2-style names; the middle number is not the frame rate (video 0 says 60, is 30)."""
    numbers = rng.choice(np.arange(1, 141), n_videos, replace=False)
    names = []
    for i, number in enumerate(numbers):
        width = PERSON_WIDTH[2] * 2 if i == 0 else PERSON_WIDTH[1]
        middle = 60 if i == 0 else int(rng.choice([24, 25, 30, 60]))
        if i % 2 == 1 and (i // 2) % 2 == 0:
            names.append(f"video{number}")
        else:
            names.append(f"{number}-{middle}-{width}x{FRAME_HEIGHT}")
    return names


def _frame_rates(n_videos: int) -> list[Fraction]:
    """Cycle 30, 30000/1001, 25, 24 over the videos, with exactly one at 10 fps."""
    ten = min(_TEN_FPS_VIDEO, n_videos - 1)
    others = iter(_RATES[j % len(_RATES)] for j in range(n_videos))
    return [Fraction(10) if i == ten else next(others) for i in range(n_videos)]


def _video_splits(spec: DemoSpec) -> list[str]:
    """Train first (video 0, the two-person one, is always training), then validation, then test."""
    n_train = spec.n_videos - spec.n_test_videos - spec.n_validation_videos
    return [SPLITS[0]] * n_train + [SPLITS[1]] * spec.n_validation_videos + [SPLITS[2]] * spec.n_test_videos


def _plan(spec: DemoSpec) -> list[_Video]:
    """Names, rates, lengths, splits and per-trial quirks of every video."""
    rng = _rng(spec.seed, 0)
    names = _video_names(rng, spec.n_videos)
    rates = _frame_rates(spec.n_videos)
    splits = _video_splits(spec)
    lengths = rng.integers(spec.min_frames, spec.max_frames + 1, spec.n_videos)
    trial_keys = [(i, side) for i in range(spec.n_videos) for side in range(2 if i == 0 else 1)]
    annotated = [k for k in trial_keys if splits[k[0]] != SPLITS[2]]
    # Quirks go to seeded subsets so that even a tiny spec has some of each.
    order = rng.permutation(len(annotated))
    n_longer = max(1, round(len(annotated) / 3))
    longer = {annotated[j]: int(rng.integers(1, 3)) for j in order[:n_longer]}
    order = rng.permutation(len(annotated))
    with_invalid = {annotated[j] for j in order[: max(1, -(-len(annotated) // 2))]}
    new_folder = {trial_keys[j] for j in rng.choice(len(trial_keys), 2, replace=False)}
    videos = []
    for i, name in enumerate(names):
        n_frames = int(lengths[i])
        trials = []
        for side in range(2 if i == 0 else 1):
            key = (i, side)
            n_rows = n_frames + longer.get(key, 0)
            n_invalid = int(rng.integers(1, 3)) if key in with_invalid else 0
            trials.append(
                _Trial(
                    name=f"{name}_{('left', 'right')[side]}" if i == 0 else name,
                    side=side,
                    split=splits[i],
                    n_rows=n_rows,
                    invalid=_place_segments(rng, n_rows, n_invalid, 10, 40),
                    gaps=_place_segments(rng, n_frames, int(rng.integers(1, 4)), 5, 25),
                    crop_dir=CROP_DIRS[key in new_folder],
                )
            )
        batch = "batch2" if i % 2 else "batch1"
        ext = ".avi" if i % 2 and (i // 2) % 3 == 0 else ".mp4"
        videos.append(_Video(i, name, batch, ext, rates[i], n_frames, tuple(trials)))
    return videos


def _smooth_track(rng: np.random.Generator, t: Floats) -> Floats:
    """A label track: per-trial offset and range, a few 0.03-0.3 Hz sinusoids, squashed."""
    freqs = np.exp(rng.uniform(np.log(0.03), np.log(0.3), 3))
    amps = rng.uniform(0.5, 1.0, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    wave = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0)
    wave /= np.sqrt((amps**2).sum() / 2)
    raw = rng.uniform(-0.6, 0.6) + rng.uniform(0.3, 0.9) * wave
    return np.round(0.95 * np.tanh(raw), 3)


def _wobble(rng: np.random.Generator, t: Floats, lo: float, hi: float) -> Floats:
    """Smooth random motion in [-1, 1] with frequencies lo..hi Hz."""
    freqs = rng.uniform(lo, hi, 4)
    phases = rng.uniform(0, 2 * np.pi, 4)
    return np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None]).mean(0)


def _mix(a: Color, b: Color, k: float) -> Color:
    """Colour a blended towards b by k in [0, 1]."""
    return tuple(int(round(x + (y - x) * k)) for x, y in zip(a, b))  # type: ignore[return-value]


def _random_color(rng: np.random.Generator, lo: int, hi: int) -> Color:
    """Uniform random RGB colour with channels in lo..hi."""
    r, g, b = (int(c) for c in rng.integers(lo, hi, 3))
    return r, g, b


def _muted_color(rng: np.random.Generator) -> Color:
    """Greyish wall colour: random brightness, slight tint."""
    r, g, b = (int(c) for c in rng.uniform(90, 170) + rng.uniform(-12, 12, 3))
    return r, g, b


def _identity(rng: np.random.Generator) -> _Identity:
    """Random person: face shape, skin, hair, clothes, background, voice."""
    tone = rng.uniform(0, 1)
    skin = _mix((242, 206, 180), (105, 70, 50), tone)
    hair = _mix((25, 20, 15), (150, 110, 60), rng.uniform(0, 1) ** 2)
    f0 = float(rng.uniform(100, 220))
    return _Identity(
        skin=skin,
        hair=hair,
        hair_style=int(rng.integers(3)),
        shirt=_random_color(rng, 30, 220),
        iris=_IRIS[int(rng.integers(len(_IRIS)))],
        lips=_mix(_mix(skin, (170, 60, 70), 0.55), (0, 0, 0), 0.1),
        background=_muted_color(rng),
        picture=_random_color(rng, 20, 235),
        face_width=float(rng.uniform(0.70, 0.84)),
        chin=float(rng.uniform(0.1, 0.3)),
        eye_x=float(rng.uniform(0.30, 0.36)),
        scale=float(rng.uniform(0.95, 1.05)),
        f0=f0,
        formant_scale=1.0 + 0.15 * (f0 - 100) / 120 + float(rng.uniform(-0.03, 0.03)),
    )


# ---------------------------------------------------------------- face drawing


class _Canvas(NamedTuple):
    """An ImageDraw and the face-to-canvas transform that shapes are given in."""

    draw: ImageDraw.ImageDraw
    pose: _Pose

    def fill(self, points: Floats, color: Color) -> None:
        """Fill a polygon given in face units."""
        self.draw.polygon(_px(points, self.pose), fill=color)


def _px(points: Floats, pose: _Pose) -> list[float]:
    """Face units -> flat canvas pixel list for ImageDraw."""
    rotate = pose.scale * np.array([[pose.cos, pose.sin], [-pose.sin, pose.cos]])
    return (points @ rotate + (pose.cx, pose.cy)).ravel().tolist()


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> Floats:
    """Ellipse outline in face units."""
    return _CIRCLE * (rx, ry) + (cx, cy)


def _band(x0: float, y0: float, x1: float, y1: float, w0: float, w1: float) -> Floats:
    """Quadrilateral stroke from (x0, y0) to (x1, y1), half-thickness w0 -> w1 (vertical)."""
    return np.array([[x0, y0 - w0], [x1, y1 - w1], [x1, y1 + w1], [x0, y0 + w0]])


def _stroke(x0: float, y0: float, x1: float, y1: float, w: float) -> Floats:
    """Straight line of half-width w from (x0, y0) to (x1, y1) as a polygon."""
    dx, dy = x1 - x0, y1 - y0
    normal = np.array([-dy, dx]) * w / np.hypot(dx, dy)
    ends = np.array([[x0, y0], [x1, y1]])
    return np.concatenate([ends + normal, ends[::-1] - normal])


def _between(x: Floats, top: Floats, bottom: Floats) -> Floats:
    """Polygon enclosed by two curves sampled at the same abscissae."""
    return np.stack([np.concatenate([x, x[::-1]]), np.concatenate([top, bottom[::-1]])], 1)


def _face_outline(ident: _Identity) -> Floats:
    """Egg-shaped face: narrower towards the chin."""
    x, y = _CIRCLE[:, 0], _CIRCLE[:, 1]
    return np.stack([ident.face_width * x * (1 - ident.chin * np.clip(y, 0, 1)), y], 1)


def _draw_body(c: _Canvas, ident: _Identity) -> None:
    """Shoulders, neck and back hair; upright (only the head rotates)."""
    upright = _Canvas(c.draw, c.pose._replace(cos=1.0, sin=0.0))
    shoulders = np.array([[-2.2, 4], [-2, 2], [-1.3, 1.55], [1.3, 1.55], [2, 2], [2.2, 4]])
    upright.fill(shoulders, ident.shirt)
    neck = np.array([[-0.3, 0.6], [0.3, 0.6], [0.34, 1.75], [0, 1.95], [-0.34, 1.75]])
    upright.fill(neck, _mix(ident.skin, (0, 0, 0), 0.15))
    if ident.hair_style == 1:
        rx = ident.face_width + 0.22
        corners = [[rx + 0.05, 1.25], [-rx - 0.05, 1.25]]
        c.fill(np.concatenate([_ellipse(0, -0.1, rx, 1.05)[14:], corners]), ident.hair)


def _draw_head(c: _Canvas, ident: _Identity) -> None:
    """Ears, face, and hair or cap."""
    w = ident.face_width
    for s in (-1, 1):
        c.fill(_ellipse(s * w, 0.02, 0.12, 0.2), _mix(ident.skin, (0, 0, 0), 0.08))
    c.fill(_face_outline(ident), ident.skin)
    top = _ellipse(0, -0.62, w + 0.06, 0.52)[14:]
    if ident.hair_style == 2:
        c.fill(np.concatenate([top, [[w + 0.08, -0.66], [-w - 0.08, -0.66]]]), ident.hair)
        brim = _band(-w - 0.1, -0.66, w + 0.35, -0.66, 0.05, 0.05)
        c.fill(brim, _mix(ident.hair, (0, 0, 0), 0.3))
    else:
        hairline = [[w + 0.04, -0.78], [0.2, -0.74], [-0.3, -0.8], [-w - 0.04, -0.7]]
        c.fill(np.concatenate([top, hairline]), ident.hair)


def _draw_brows(c: _Canvas, ident: _Identity, e: _Expression) -> None:
    """Brows (raised by arousal, lowered/heavy when negative), furrows, forehead lines."""
    neg, pos_a = max(-e.valence, 0.0), max(e.arousal, 0.0)
    base = -0.35 - 0.13 * e.arousal + 0.07 * neg
    inner = base + 0.13 * neg - 0.06 * pos_a  # AU4 pulls the inner ends down, AU1 lifts them
    thick = 0.045 - 0.025 * e.valence + 0.03 * neg  # thin when happy, heavy when angry
    if neg > 0.05:  # lowered brows shade the eye sockets
        shadow = _mix(ident.skin, (30, 15, 10), 0.45 * neg)
        for s in (-1, 1):
            x = s * ident.eye_x + 0.24 * _U
            brow_line = base + (inner - base) * (1 - s * _U) / 2
            c.fill(_between(x, brow_line, np.full_like(x, _EYE_Y)), shadow)
    for s in (-1, 1):
        brow = _band(s * 0.09, inner, s * 0.47, base, thick, 0.6 * thick)
        c.fill(brow, _mix(ident.hair, (0, 0, 0), 0.4))
    if neg > 0.05:
        _draw_furrows(c, ident, neg, inner)
    if pos_a > 0.1:
        _draw_forehead_lines(c, ident, pos_a, base)


def _draw_furrows(c: _Canvas, ident: _Identity, neg: float, inner: float) -> None:
    """Vertical glabella furrows (AU4), longer and deeper when angrier; lit edge, dark fold."""
    shade = _mix(ident.skin, (40, 20, 15), min(1.0, 0.5 + 0.5 * neg))
    light = _mix(ident.skin, (255, 255, 255), 0.45 * min(1.0, 2 * neg))
    top, bottom = inner - 0.1 - 0.22 * neg, inner + 0.05
    for x in (-0.07, 0.0, 0.07):
        c.fill(_stroke(x + 0.035, top, x + 0.035, bottom, 0.015), light)
        c.fill(_stroke(x, top, x, bottom, 0.025), shade)


def _draw_forehead_lines(c: _Canvas, ident: _Identity, pos_a: float, base: float) -> None:
    """Horizontal forehead lines of raised brows (AU1+2) across the whole forehead."""
    shade = _mix(ident.skin, (50, 25, 15), min(0.9, 0.3 + 0.7 * pos_a))
    light = _mix(ident.skin, (255, 255, 255), 0.45 * min(1.0, 2 * pos_a))
    for k, y in enumerate((base - 0.09, base - 0.16, base - 0.23)):
        half = 0.55 - 0.08 * k
        for dy, color, w in ((0.03, light, 0.012), (0.0, shade, 0.018)):  # lit ridge, then fold
            c.fill(_stroke(-half, y + 0.02 + dy, 0, y + dy, w), color)
            c.fill(_stroke(0, y + dy, half, y + 0.02 + dy, w), color)


def _draw_eyes(c: _Canvas, ident: _Identity, e: _Expression) -> None:
    """Eyes opening with arousal: white sclera, iris, pupil (dilating), lash line."""
    level = (e.arousal + 1) / 2
    half_h = (0.03 + 0.17 * level) * e.eye
    pupil = 0.03 + 0.025 * level
    prof = np.sqrt(1 - _U**2)
    for s in (-1, 1):
        cx = s * ident.eye_x
        x = cx + 0.19 * _U
        upper, lower = _EYE_Y - half_h * prof, _EYE_Y + 0.8 * half_h * prof
        if half_h > 0.012:
            c.fill(_between(x, upper, lower), (246, 244, 238))
            ix, iy = cx + 0.04 * e.gaze, _EYE_Y - 0.1 * half_h
            c.fill(_ellipse(ix, iy, 0.085, min(0.085, 0.85 * half_h)), ident.iris)
            c.fill(_ellipse(ix, iy, pupil, min(pupil, 0.8 * half_h)), (10, 8, 8))
        c.fill(_between(x, upper - 0.02, upper + 0.012), (35, 25, 22))


def _draw_cheeks(c: _Canvas, ident: _Identity, e: _Expression) -> None:
    """Cheek blush: absent when sad, growing with valence (under the eyes, drawn on top)."""
    level = (e.valence + 1) / 2
    if level > 0.05:
        blush = _mix(ident.skin, (225, 60, 85), 0.85 * level)
        for s in (-1, 1):
            c.fill(_ellipse(s * 0.43, 0.26, 0.12 + 0.17 * level, 0.07 + 0.13 * level), blush)


def _draw_nose(c: _Canvas, ident: _Identity) -> None:
    """Nose shading and nostrils."""
    ridge = np.array([[0, -0.05], [0.1, 0.26], [0.06, 0.28], [-0.02, -0.02]])
    c.fill(ridge, _mix(ident.skin, (0, 0, 0), 0.22))
    for s in (-1, 1):
        c.fill(_ellipse(s * 0.065, 0.3, 0.035, 0.018), _mix(ident.skin, (0, 0, 0), 0.55))


def _draw_frown_marks(c: _Canvas, ident: _Identity, neg: float, half_w: float, y0: float) -> None:
    """AU17 chin dimpling and AU15 depressor lines below downturned mouth corners."""
    dimple = _mix(ident.skin, (40, 20, 15), min(0.6, 0.15 + 0.45 * neg))
    for dx, dy in _CHIN_DIMPLES:
        c.fill(_ellipse(dx, dy, 0.02 + 0.015 * neg, 0.016 + 0.012 * neg), dimple)
    shade = _mix(ident.skin, (40, 20, 15), min(0.9, 0.2 + 0.7 * neg))
    for s in (-1, 1):
        c.fill(_stroke(s * half_w, y0, s * (half_w + 0.06), y0 + 0.08 + 0.16 * neg, 0.02), shade)


def _draw_mouth(c: _Canvas, ident: _Identity, e: _Expression) -> None:
    """Lips, dark speech cavity and white teeth; width, corner lift and teeth follow valence."""
    pos, neg = max(e.valence, 0.0), max(-e.valence, 0.0)
    half_w = 0.28 + 0.13 * e.valence
    teeth = 0.2 * pos  # AU12 smile bares the teeth
    gap = teeth + 0.22 * e.mouth
    x = half_w * _U
    centre = 0.56 - 0.13 * e.valence * (_U**2 - 0.35)  # corners up when positive
    prof = (1 - _U**2) ** 0.6
    upper_in, lower_in = centre - 0.3 * gap * prof, centre + 0.7 * gap * prof
    lip = 1 - 0.55 * neg  # pressed lips when negative
    upper_out = upper_in - (0.04 * lip + 0.01) * np.sqrt(1 - _U**2) - 0.005
    lower_out = lower_in + (0.06 * lip + 0.01) * np.sqrt(1 - _U**2) + 0.005
    if neg > 0.15:
        _draw_frown_marks(c, ident, neg, half_w, centre[0] + 0.02)
    c.fill(_between(x, upper_out, lower_out), ident.lips)
    if gap > 0.01:
        c.fill(_between(x, upper_in, lower_in), (70, 20, 25))
    if teeth > 0.01:  # both rows of teeth, parted by the speech opening
        upper_teeth, lower_teeth = upper_in + 0.6 * teeth * prof, lower_in - 0.4 * teeth * prof
        c.fill(_between(x, upper_in, upper_teeth), (240, 236, 222))
        c.fill(_between(x, lower_teeth, lower_in), (228, 224, 210))
        for tx in np.linspace(-0.6, 0.6, 5) * half_w:
            for top, bottom in ((upper_in, upper_teeth), (lower_teeth, lower_in)):
                gap_line = _stroke(tx, np.interp(tx, x, top), tx, np.interp(tx, x, bottom), 0.006)
                c.fill(gap_line, (150, 140, 130))
    else:
        lips_meet = _px(np.stack([x, centre], 1), c.pose)
        c.draw.line(lips_meet, fill=_mix(ident.lips, (0, 0, 0), 0.45), width=2)


def _draw_person(c: _Canvas, ident: _Identity, e: _Expression) -> None:
    """One person, back to front."""
    _draw_body(c, ident)
    _draw_head(c, ident)
    _draw_brows(c, ident, e)
    _draw_cheeks(c, ident, e)
    _draw_eyes(c, ident, e)
    _draw_nose(c, ident)
    _draw_mouth(c, ident, e)


def _draw_hand(c: _Canvas, ident: _Identity, tilt: float) -> None:
    """A hand held in front of the face (the face detector then finds nothing)."""
    hand = _mix(ident.skin, (255, 220, 200), 0.15)
    c = _Canvas(c.draw, c.pose._replace(cos=np.cos(tilt), sin=np.sin(tilt)))
    c.fill(_ellipse(0.05, 0.4, 0.55, 0.6), hand)
    for fx, tip in ((-0.36, -0.7), (-0.12, -0.85), (0.12, -0.85), (0.36, -0.7)):
        c.fill(_stroke(fx, 0.2, fx, tip, 0.1), hand)
        c.fill(_ellipse(fx, tip, 0.1, 0.1), hand)
    c.fill(_stroke(0.5, 0.7, 1.0, 0.2, 0.1), hand)


# ---------------------------------------------------------------- per-trial signals


class _TrialSignals(NamedTuple):
    """Everything drawn or heard for one trial."""

    valence: Floats  # [n_rows]
    arousal: Floats
    identity: _Identity
    blink: Floats  # [n_frames] eye factor
    gaze: Floats
    rotation: Floats  # radians
    shift: Floats  # [n_frames, 2] face offset in the raw frame, px
    residual: Floats  # [n_frames, 2] face offset inside the crop, px
    gain: NDArray[np.float32]  # [H, width, 3] lighting of this person's part of the frame
    noise: float  # crop noise sigma
    hand_tilt: float  # radians; the hand held over the face during gaps


def _lighting(rng: np.random.Generator, width: int) -> NDArray[np.float32]:
    """Brightness gradient times colour cast over one person's frame region."""
    yy, xx = np.mgrid[0:FRAME_HEIGHT, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - width / 2) * np.cos(angle) + (yy - FRAME_HEIGHT / 2) * np.sin(angle)) / width
    shade = rng.uniform(0.9, 1.1) * (1 + rng.uniform(0.1, 0.3) * ramp)
    cast = rng.uniform(0.97, 1.03, 3).astype(np.float32)
    return (shade[..., None] * cast).astype(np.float32)


def _trial_signals(seed: int, video: _Video, trial: _Trial) -> _TrialSignals:
    """Labels, looks, blinks, head motion and lighting of one trial."""
    rng = _rng(seed, 1, video.index, trial.side)
    fps = float(video.fps)
    t_rows = np.arange(trial.n_rows) / fps
    valence, arousal = _smooth_track(rng, t_rows), _smooth_track(rng, t_rows)
    ident = _identity(rng)
    t = t_rows[: video.n_frames]
    level = (arousal[: video.n_frames] + 1) / 2
    blink = np.ones(video.n_frames)
    for start in np.cumsum(rng.uniform(2.0, 6.0, int(t[-1] / 2) + 1)):
        blink[(t >= start) & (t < start + 0.15)] = 0.1
    shift = np.stack([_wobble(rng, t, 0.3, 2.0), _wobble(rng, t, 0.3, 2.0)], 1)
    residual = np.stack([_wobble(rng, t, 0.5, 3.0), _wobble(rng, t, 0.5, 3.0)], 1)
    rotation = np.deg2rad(rng.uniform(-3, 3) + _wobble(rng, t, 0.3, 2.0) * (2 + 8 * level))
    return _TrialSignals(
        valence=valence,
        arousal=arousal,
        identity=ident,
        blink=blink,
        gaze=_wobble(rng, t, 0.1, 0.5),
        rotation=rotation,
        shift=shift * (2 + 10 * level)[:, None],  # jitter grows with arousal
        residual=residual * (0.5 + 2.5 * level)[:, None],
        gain=_lighting(rng, video.person_width),
        noise=float(rng.uniform(1.0, 5.0)),
        hand_tilt=float(rng.uniform(-0.5, 0.5)),
    )


# ---------------------------------------------------------------- audio


def _speech_turns(rng: np.random.Generator, duration: float, n_people: int) -> list[list[Span]]:
    """Non-overlapping 1-4 s speaking segments (seconds) per person, ~40-60% of the time overall."""
    turns: list[list[Span]] = [[] for _ in range(n_people)]
    speaker = int(rng.integers(n_people))
    t = float(rng.uniform(0.1, 0.8))
    while t < duration - 0.4:
        end = min(t + float(rng.uniform(1.0, 4.0)), duration - 0.05)
        turns[speaker].append((t, end))
        t = end + float(rng.uniform(1.0, 4.0))
        # Turn-taking: a speaker's first turn always passes the word, later ones usually do.
        speaker = (speaker + int(len(turns[speaker]) == 1 or rng.uniform() < 0.75)) % n_people
    return turns


def _sawtooth(phase: Floats, step: Floats) -> Floats:
    """Band-limited (polyBLEP) sawtooth from a phase in cycles and per-sample increment."""
    t = phase % 1.0
    saw = 2 * t - 1
    head, tail = t < step, t > 1 - step
    x = t[head] / step[head]
    saw[head] -= 2 * x - x * x - 1
    x = (t[tail] - 1) / step[tail]
    saw[tail] -= x * x + 2 * x + 1
    return saw


def _formant_filter(formants: Floats) -> tuple[Floats, Floats]:
    """Cascade of unity-DC-gain two-pole resonators (Klatt style) as one (b, a)."""
    den, gain = np.array([1.0]), 1.0
    for freq, bandwidth in zip(formants, _BANDWIDTHS):
        r = np.exp(-np.pi * bandwidth / AUDIO_RATE)
        a = np.array([1.0, -2 * r * np.cos(2 * np.pi * freq / AUDIO_RATE), r * r])
        den, gain = np.polymul(den, a), gain * a.sum()
    return np.array([gain]), den


def _voice(
    rng: np.random.Generator, n: int, turns: list[Span], arousal: Floats, valence: Floats, ident: _Identity
) -> tuple[Floats, Floats]:
    """One speaker at 48 kHz and its syllable envelope; pitch, rate, loudness rise with arousal,
    formants and brightness with valence (smiled speech)."""
    voice, envelope = np.zeros(n), np.zeros(n)
    for start, stop in turns:
        s0, s1 = int(start * AUDIO_RATE), min(n, int(stop * AUDIO_RATE))
        a, v = arousal[s0:s1], valence[s0:s1]
        t = np.arange(s1 - s0) / AUDIO_RATE
        intonation = 1 + 0.06 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t)
        f0 = ident.f0 * (1 + 0.6 * (a + 1) / 2) * intonation
        source = _sawtooth(np.cumsum(f0) / AUDIO_RATE, f0 / AUDIO_RATE)
        syllable = np.cumsum(2 + 4 * (a + 1) / 2) / AUDIO_RATE  # 2-6 syllables per second
        fade_out = np.minimum(1.0, (s1 - s0 - np.arange(s1 - s0)) / (0.03 * AUDIO_RATE))
        env = np.sin(np.pi * (syllable % 1.0)) ** 2 * fade_out
        index = syllable.astype(int)
        bounds = np.searchsorted(index, np.arange(index[-1] + 2))
        shaped = np.empty_like(source)
        for k, vowel in enumerate(rng.integers(len(_VOWELS), size=index[-1] + 1)):
            part = slice(bounds[k], bounds[k + 1])
            smile = float(np.mean(v[part])) if bounds[k + 1] > bounds[k] else 0.0
            b, den = _formant_filter(_VOWELS[vowel] * ident.formant_scale * (1 + 0.25 * smile))
            y = lfilter(b, den, source[part])
            y = lfilter([1.0 - 0.6 * (1 - smile) / 2], [1.0, -0.6 * (1 - smile) / 2], y)  # darker when sad
            shaped[part] = y / (np.sqrt(np.mean(y**2)) + 1e-9)
        shaped += 0.05 * rng.standard_normal(len(shaped))
        voice[s0:s1] = 0.07 * 10 ** (0.35 * a) * env * shaped  # +-7 dB with arousal
        envelope[s0:s1] = env
    return voice, envelope


def _background(rng: np.random.Generator, n: int) -> Floats:
    """Quiet music (sine chords changing every ~2 s) plus low-passed noise, unit RMS."""
    music = np.zeros(n)
    start = 0
    while start < n:
        stop = min(n, start + int(rng.uniform(1.6, 2.4) * AUDIO_RATE))
        t = np.arange(stop - start) / AUDIO_RATE
        root = int(rng.integers(45, 58))
        third = 4 if rng.uniform() < 0.5 else 3
        chord = sum(
            np.sin(2 * np.pi * 440 * 2 ** ((root + step - 69) / 12) * t + rng.uniform(0, 2 * np.pi))
            for step in (0, third, 7, 12)
        )
        fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.04)
        music[start:stop] = chord * fade
        start = stop
    noise = lfilter([0.1], [1, -0.9], rng.standard_normal(n))
    music /= np.sqrt(np.mean(music**2)) + 1e-9
    noise /= np.sqrt(np.mean(noise**2)) + 1e-9
    share = rng.uniform(0.3, 0.8)
    return np.sqrt(share) * music + np.sqrt(1 - share) * noise


class _Audio(NamedTuple):
    """Soundtrack of one video at 48 kHz plus per-person truth."""

    mixture: Floats
    clean: Floats
    background: Floats
    envelopes: list[Floats]
    speaking: list[NDArray[np.bool_]]  # sample-level, per person


def _audio(seed: int, video: _Video, signals: list[_TrialSignals]) -> _Audio:
    """Voices of all people in turn, background at a per-video SNR of 5-20 dB."""
    rng = _rng(seed, 2, video.index)
    n16 = round(video.n_frames * GT_AUDIO_RATE / video.fps)
    n = 3 * n16
    t = np.arange(n) / AUDIO_RATE
    turns = _speech_turns(rng, n / AUDIO_RATE, len(video.trials))
    clean, envelopes, speaking = np.zeros(n), [], []
    for person, sig in zip(turns, signals):
        arousal = np.interp(t, np.arange(len(sig.arousal)) / float(video.fps), sig.arousal)
        valence = np.interp(t, np.arange(len(sig.valence)) / float(video.fps), sig.valence)
        voice, env = _voice(rng, n, person, arousal, valence, sig.identity)
        clean += voice
        envelopes.append(env)
        mask = np.zeros(n, dtype=bool)
        for start, stop in person:
            mask[int(start * AUDIO_RATE) : int(stop * AUDIO_RATE)] = True
        speaking.append(mask)
    active = np.logical_or.reduce(speaking)
    voice_power = np.mean(clean[active] ** 2) if active.any() else 1e-4
    background = _background(rng, n) * np.sqrt(voice_power / 10 ** (rng.uniform(5, 20) / 10))
    peak = np.max(np.abs(clean + background))
    scale = min(1.0, 0.95 / peak)  # headroom for the 16-bit and AAC encoders
    clean, background = clean * scale, background * scale
    return _Audio(clean + background, clean, background, envelopes, speaking)


# ---------------------------------------------------------------- writing


def _frame_spans(n_frames: int, fps: Fraction, rate: int) -> NDArray[np.int64]:
    """Sample index where each video frame starts, plus the end: [n_frames + 1]."""
    return np.array([int(i * rate / fps) for i in range(n_frames + 1)])


def _per_frame(values: Floats, spans: NDArray[np.int64]) -> Floats:
    """Mean of a sample-level signal over each frame's span."""
    spans = np.minimum(spans, len(values))
    total = np.r_[0.0, np.cumsum(values)]
    return (total[spans[1:]] - total[spans[:-1]]) / np.maximum(np.diff(spans), 1)


def _scene(width: int, side: int, ident: _Identity) -> Image.Image:
    """Static supersampled background of one person's view: wall colour and a picture."""
    canvas = Image.new("RGB", (width * _SS, FRAME_HEIGHT * _SS), ident.background)
    x0 = (4 if side == 0 else width - 40) * _SS  # near the outer edge, mostly outside the crop
    ImageDraw.Draw(canvas).rectangle([x0, 16 * _SS, x0 + 36 * _SS, 56 * _SS], fill=ident.picture)
    return canvas


def _open_container(path: Path, video: _Video) -> tuple[av.container.OutputContainer, av.VideoStream, av.AudioStream]:
    """Output container with one video and one 48 kHz mono audio stream."""
    container = av.open(str(path), mode="w")
    avi = path.suffix == ".avi"
    vstream = container.add_stream("mpeg4" if avi else "libx264", rate=video.fps)
    vstream.width = video.person_width * len(video.trials)
    vstream.height, vstream.pix_fmt = FRAME_HEIGHT, "yuv420p"
    if avi:
        vstream.bit_rate = 1_500_000
    else:
        vstream.options = {"preset": "ultrafast", "crf": "23"}
    vstream.codec_context.thread_count = 1  # deterministic and fair on small machines
    astream = container.add_stream("pcm_s16le" if avi else "aac", rate=AUDIO_RATE, layout="mono")
    return container, vstream, astream


def _audio_frame(samples: Floats, start: int, codec: str) -> av.AudioFrame:
    """One mono audio frame in the encoder's sample format."""
    if codec == "pcm_s16le":
        data, fmt = np.round(samples * 32767).astype(np.int16)[None], "s16"
    else:
        data, fmt = samples.astype(np.float32)[None], "fltp"
    frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
    return frame


def _gap_mask(n_frames: int, gaps: Segments) -> NDArray[np.bool_]:
    """True where the trial's face is hidden (no crop)."""
    mask = np.zeros(n_frames, dtype=bool)
    for start, stop in gaps:
        mask[start:stop] = True
    return mask


def _render_person(
    scene: Image.Image, sig: _TrialSignals, i: int, mouth: float, hidden: bool
) -> tuple[NDArray[np.float32], Corner]:
    """One person's view of frame i (lit, float RGB) and the top-left corner of their face crop."""
    image = scene.copy()
    cx = image.width / (2 * _SS) + sig.shift[i, 0]
    cy = _FACE_Y + sig.shift[i, 1]
    scale = _FACE_UNIT * sig.identity.scale * _SS
    angle = sig.rotation[i]
    pose = _Pose(cx * _SS, cy * _SS, scale, np.cos(angle), np.sin(angle))
    canvas = _Canvas(ImageDraw.Draw(image), pose)
    expression = _Expression(sig.valence[i], sig.arousal[i], mouth, sig.blink[i], sig.gaze[i])
    _draw_person(canvas, sig.identity, expression)
    if hidden:
        _draw_hand(canvas, sig.identity, sig.hand_tilt)
    # The aligner centres the crop on the face, up to a small residual error.
    x0 = int(round(cx - sig.residual[i, 0])) - CROP_SIZE // 2
    y0 = int(round(cy - 0.1 * _FACE_UNIT - sig.residual[i, 1])) - CROP_SIZE // 2
    return np.asarray(image.reduce(_SS), dtype=np.float32) * sig.gain, (x0, y0)


def _save_crop(path: Path, frame: NDArray[np.uint8], corner: Corner, noise: NDArray[np.float32]) -> None:
    """Cut a face crop out of the frame, add sensor noise, save as JPEG."""
    x0, y0 = corner
    crop = frame[y0 : y0 + CROP_SIZE, x0 : x0 + CROP_SIZE].astype(np.float32) + noise
    Image.fromarray(np.clip(crop + 0.5, 0, 255).astype(np.uint8)).save(path, quality=90)


def _write_video(root: Path, seed: int, video: _Video, signals: list[_TrialSignals], audio: _Audio) -> list[Floats]:
    """Render, encode and crop every frame; return each person's per-frame mouth opening."""
    path = root / "videos" / video.batch / f"{video.name}{video.ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    spans = _frame_spans(video.n_frames, video.fps, AUDIO_RATE)
    mouths = [
        np.where(_per_frame(speaking.astype(float), spans) > 0.5, _per_frame(env, spans), 0.0)
        for env, speaking in zip(audio.envelopes, audio.speaking)
    ]
    scenes = [_scene(video.person_width, t.side, s.identity) for t, s in zip(video.trials, signals)]
    hidden = [_gap_mask(video.n_frames, t.gaps) for t in video.trials]
    crop_rngs = [_rng(seed, 3, video.index, t.side) for t in video.trials]
    folders = [root / t.crop_dir / t.name for t in video.trials]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    container, vstream, astream = _open_container(path, video)
    codec, chunk, written = astream.codec_context.name, 1024, 0
    for i in range(video.n_frames):
        views = [
            _render_person(scene, sig, i, mouth[i], gap[i])
            for scene, sig, mouth, gap in zip(scenes, signals, mouths, hidden)
        ]
        lit = np.concatenate([view for view, _ in views], axis=1)
        frame = np.clip(lit + 0.5, 0, 255).astype(np.uint8)
        for k, (_, (x0, y0)) in enumerate(views):
            if not hidden[k][i]:
                noise = crop_rngs[k].standard_normal((CROP_SIZE, CROP_SIZE, 3), dtype=np.float32)
                corner = (x0 + k * video.person_width, y0)
                _save_crop(folders[k] / f"{i + 1:05d}.jpg", frame, corner, noise * signals[k].noise)
        vframe = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vframe.pts, vframe.time_base = i, 1 / video.fps
        container.mux(vstream.encode(vframe))
        while written < min(len(audio.mixture), spans[i + 1]):  # interleave the audio
            samples = audio.mixture[written : written + chunk]
            container.mux(astream.encode(_audio_frame(samples, written, codec)))
            written += chunk
    container.mux(vstream.encode(None))
    container.mux(astream.encode(None))
    container.close()
    return mouths


def _write_annotation(root: Path, trial: _Trial, sig: _TrialSignals) -> None:
    """valence,arousal file with -5 rows over the trial's invalid segments."""
    invalid = np.zeros(trial.n_rows, dtype=bool)
    for start, stop in trial.invalid:
        invalid[start:stop] = True
    labels = zip(sig.valence, sig.arousal, invalid)
    rows = ["-5,-5" if bad else f"{_fmt(v)},{_fmt(a)}" for v, a, bad in labels]
    path = root / ANNOTATION_DIR / trial.split / f"{trial.name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("valence,arousal\n" + "\n".join(rows) + "\n")


def _write_truth(root: Path, video: _Video, signals: list[_TrialSignals], audio: _Audio, mouths: list[Floats]) -> None:
    """Per-trial and per-video ground truth next to the data."""
    folder = root / "ground_truth"
    folder.mkdir(parents=True, exist_ok=True)
    spans = _frame_spans(video.n_frames, video.fps, AUDIO_RATE)
    for trial, sig, mouth, speaking in zip(video.trials, signals, mouths, audio.speaking):
        np.savez(
            folder / f"{trial.name}.npz",
            fps=np.float64(video.fps),
            n_frames=np.int64(video.n_frames),
            valence=sig.valence.astype(np.float32),
            arousal=sig.arousal.astype(np.float32),
            speaking=_per_frame(speaking.astype(float), spans) > 0.5,
            mouth_open=np.clip(mouth, 0, 1).astype(np.float32),
            face_visible=~_gap_mask(video.n_frames, trial.gaps),
        )
    clean = resample_poly(audio.clean, 1, 3).astype(np.float32)
    background = resample_poly(audio.background, 1, 3).astype(np.float32)
    active = np.logical_or.reduce(audio.speaking)[::3]
    n_vad = len(clean) // 160
    np.savez(
        folder / f"{video.name}.audio.npz",
        sample_rate=np.int64(GT_AUDIO_RATE),
        clean_voice=clean,
        background=background,
        mixture=clean + background,
        voice_active=active[: n_vad * 160].reshape(n_vad, 160).mean(1) >= 0.5,
    )


def _write_lists(root: Path, seed: int, videos: list[_Video]) -> None:
    """Test list, organisers' example submission, splits table and README."""
    tests = [(t.name, v.n_frames) for v in videos for t in v.trials if t.split == SPLITS[2]]
    (root / TEST_LIST).parent.mkdir(parents=True, exist_ok=True)
    (root / TEST_LIST).write_text("".join(f"{name}\n" for name, _ in tests))
    rng = _rng(seed, 4)
    lines = ["image_location,valence,arousal"]
    for name, n_frames in tests:
        values = rng.uniform(-1, 1, (n_frames, 2))
        lines += [f"{name}/{i + 1:05d}.jpg,{_fmt(v)},{_fmt(a)}" for i, (v, a) in enumerate(values)]
    (root / EXAMPLE_SUBMISSION).write_text("\n".join(lines) + "\n")
    table = ["trial\tvideo\tsplit"]
    table += [f"{t.name}\t{v.name}\t{t.split}" for v in videos for t in v.trials]
    (root / "ground_truth" / "splits.tsv").write_text("\n".join(table) + "\n")
    (root / "README.txt").write_text(
        "Synthetic vapipe demo data in the Aff-Wild2 / ABAW valence-arousal layout.\n"
        f"Generated by vapipe.data.demo.generate_demo_dataset with seed {seed}.\n"
        "Faces, voices and labels are synthetic; ground_truth/ holds the generator's truth.\n"
    )


def generate_demo_dataset(root: str | Path, spec: DemoSpec = DemoSpec()) -> None:
    """Write the demo dataset for `spec` under `root` (see the module docstring for the layout)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    videos = _plan(spec)
    for video in videos:
        signals = [_trial_signals(spec.seed, video, trial) for trial in video.trials]
        audio = _audio(spec.seed, video, signals)
        mouths = _write_video(root, spec.seed, video, signals, audio)
        for trial, sig in zip(video.trials, signals):
            if trial.split != SPLITS[2]:
                _write_annotation(root, trial, sig)
        _write_truth(root, video, signals, audio, mouths)
    _write_lists(root, spec.seed, videos)
