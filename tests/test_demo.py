"""Tests of the synthetic Aff-Wild2-layout demo dataset (small spec, a few seconds)."""

from __future__ import annotations

import hashlib
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from scipy.signal import resample_poly

from vapipe.data.demo import DemoSpec, generate_demo_dataset

SMALL = DemoSpec(seed=3, n_videos=4, min_frames=40, max_frames=60, n_test_videos=1, n_validation_videos=1)
ANNOTATIONS = Path("annotations") / "VA_Estimation_Challenge"
TEST_LIST = Path("names_of_videos_in_each_test_set") / "Valence_Arousal_Estimation_Challenge_test_set_release.txt"
EXAMPLE = "CVPR_6th_ABAW_VA_test_set_example.txt"
NUMBER = re.compile(r"^-?\d+(\.\d{1,3})?$")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small demo dataset, generated once."""
    path = tmp_path_factory.mktemp("demo")
    generate_demo_dataset(path, SMALL)
    return path


def splits(root: Path) -> list[tuple[str, str, str]]:
    """(trial, video, split) rows of ground_truth/splits.tsv."""
    lines = (root / "ground_truth" / "splits.tsv").read_text().splitlines()
    assert lines[0] == "trial\tvideo\tsplit"
    return [tuple(line.split("\t")) for line in lines[1:]]  # type: ignore[misc]


def truth(root: Path, trial: str) -> dict[str, np.ndarray]:
    """Ground-truth arrays of one trial."""
    with np.load(root / "ground_truth" / f"{trial}.npz") as data:
        return {key: data[key] for key in data.files}


def video_path(root: Path, video: str) -> Path:
    """The one raw video file of `video`."""
    (path,) = [p for p in (root / "videos").rglob(f"{video}.*")]
    return path


def crop_folder(root: Path, trial: str) -> Path:
    """The one crops folder holding `trial`."""
    (folder,) = [d for d in (root / "cropped_aligned", root / "cropped_aligned_new_50_vids") if (d / trial).is_dir()]
    return folder / trial


def annotation_rows(root: Path, trial: str, split: str) -> list[str]:
    """Lines of a trial's annotation file, header included."""
    return (root / ANNOTATIONS / split / f"{trial}.txt").read_text().splitlines()


def digest(root: Path, pattern: str) -> dict[str, str]:
    """sha256 of every file under root matching the glob pattern."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.glob(pattern))}


def test_spec_from_dict_and_validation() -> None:
    assert DemoSpec(**{"seed": 1, "n_videos": 12}) == DemoSpec(seed=1, n_videos=12)
    with pytest.raises(ValueError):
        DemoSpec(n_videos=3, n_test_videos=2, n_validation_videos=1)
    with pytest.raises(ValueError):
        DemoSpec(min_frames=100, max_frames=50)


def test_layout(root: Path) -> None:
    for sub in (
        "videos/batch1",
        "videos/batch2",
        "cropped_aligned",
        "cropped_aligned_new_50_vids",
        ANNOTATIONS / "Train_Set",
        ANNOTATIONS / "Validation_Set",
    ):
        assert (root / sub).is_dir(), sub
    assert "seed 3" in (root / "README.txt").read_text()
    rows = splits(root)
    assert len(rows) == SMALL.n_videos + 1
    assert {split for _, _, split in rows} == {"Train_Set", "Validation_Set", "Test_Set"}
    videos = sorted((root / "videos").rglob("*.*"))
    assert len(videos) == SMALL.n_videos == len({v for _, v, _ in rows})
    assert sum(p.suffix == ".avi" for p in videos) >= 1
    assert all(p.suffix == ".mp4" for p in videos if p.suffix != ".avi")
    assert all(p.suffix == ".mp4" for p in (root / "videos" / "batch1").iterdir())
    assert len(list((root / "cropped_aligned_new_50_vids").iterdir())) == 2
    for trial, _, split in rows:
        annotated = (root / ANNOTATIONS / split / f"{trial}.txt").is_file()
        assert annotated == (split != "Test_Set")


def test_annotations(root: Path) -> None:
    n_invalid = n_longer = 0
    for trial, _, split in splits(root):
        if split == "Test_Set":
            continue
        lines = annotation_rows(root, trial, split)
        assert lines[0] == "valence,arousal"
        gt = truth(root, trial)
        n_frames = int(gt["n_frames"])
        assert len(lines) - 1 in (n_frames, n_frames + 1, n_frames + 2)
        assert len(lines) - 1 == len(gt["valence"]) == len(gt["arousal"])
        n_longer += len(lines) - 1 > n_frames
        for line, v, a in zip(lines[1:], gt["valence"], gt["arousal"]):
            if line == "-5,-5":
                n_invalid += 1
                continue
            fields = line.split(",")
            assert len(fields) == 2 and all(NUMBER.match(f) for f in fields), line
            values = np.array(fields, dtype=np.float32)
            assert np.all(np.abs(values) <= 1) and np.array_equal(values, np.float32([v, a]))
    assert n_invalid >= 10 and n_longer >= 1


def test_crops_follow_visibility(root: Path) -> None:
    for trial, _, _ in splits(root):
        gt = truth(root, trial)
        folder = crop_folder(root, trial)
        names = sorted(p.name for p in folder.iterdir())
        assert all(re.fullmatch(r"\d{5}\.jpg", n) for n in names)
        frames = np.array([int(n[:5]) for n in names])
        assert np.array_equal(frames, np.flatnonzero(gt["face_visible"]) + 1)  # 1-based
        hidden = np.diff(np.r_[0, (~gt["face_visible"]).astype(int), 0])
        starts, stops = np.flatnonzero(hidden == 1), np.flatnonzero(hidden == -1)
        assert 1 <= len(starts) <= 3 and np.all(stops - starts >= 5)
        with Image.open(folder / names[0]) as image:
            assert image.size == (112, 112) and image.mode == "RGB"


def test_containers(root: Path) -> None:
    rates = []
    for video in sorted({v for _, v, _ in splits(root)}):
        trials = [t for t, v, _ in splits(root) if v == video]
        gt = truth(root, trials[0])
        path = video_path(root, video)
        with av.open(str(path)) as container:
            vstream, astream = container.streams.video[0], container.streams.audio[0]
            rate = Fraction(vstream.average_rate)
            assert rate == Fraction(float(gt["fps"])).limit_denominator(1001)
            assert (vstream.width, vstream.height) == ((384 if len(trials) == 2 else 256), 192)
            assert astream.rate == 48000 and astream.channels == 1
            codecs = (vstream.codec_context.name, astream.codec_context.name)
            assert codecs == (("mpeg4", "pcm_s16le") if path.suffix == ".avi" else ("h264", "aac"))
            n_frames = sum(1 for _ in container.decode(video=0))
        with av.open(str(path)) as container:
            samples = sum(frame.samples for frame in container.decode(audio=0))
        assert n_frames == int(gt["n_frames"])
        assert abs(samples / 48000 - n_frames / rate) < 0.1
        rates.append(rate)
    assert sorted(rates) == sorted([Fraction(30), Fraction(30000, 1001), Fraction(10), Fraction(25)])


def test_names_do_not_give_the_rate(root: Path) -> None:
    mismatched = 0
    for trial, video, _ in splits(root):
        match = re.fullmatch(r"\d+-(\d+)-\d+x\d+", video)
        if match:
            mismatched += int(match.group(1)) != round(float(truth(root, trial)["fps"]))
    assert mismatched >= 1


def test_ground_truth_signals(root: Path) -> None:
    for trial, _video, _ in splits(root):
        gt = truth(root, trial)
        n = int(gt["n_frames"])
        assert gt["fps"].dtype == np.float64 and gt["valence"].dtype == np.float32
        assert gt["speaking"].shape == gt["mouth_open"].shape == gt["face_visible"].shape == (n,)
        assert gt["speaking"].dtype == bool and gt["face_visible"].dtype == bool
        assert np.all((gt["mouth_open"] >= 0) & (gt["mouth_open"] <= 1))
        assert np.all(gt["mouth_open"][~gt["speaking"]] == 0)
        assert np.all(np.abs(gt["valence"]) <= 0.95) and np.all(np.abs(gt["arousal"]) <= 0.95)
    for video in {v for _, v, _ in splits(root)}:
        with np.load(root / "ground_truth" / f"{video}.audio.npz") as audio:
            assert int(audio["sample_rate"]) == 16000
            n = len(audio["mixture"])
            assert audio["clean_voice"].shape == audio["background"].shape == (n,)
            np.testing.assert_allclose(audio["mixture"], audio["clean_voice"] + audio["background"], atol=1e-6)
            assert audio["voice_active"].shape == (n // 160,) and audio["voice_active"].any()
            power = (audio["clean_voice"][: len(audio["voice_active"]) * 160].reshape(-1, 160) ** 2).mean(1)
            active = audio["voice_active"]
            assert power[~active].mean() < 1e-3 * power[active].mean()  # only segment edges leak


def test_avi_soundtrack_is_the_ground_truth_mixture(root: Path) -> None:
    path = next((root / "videos").rglob("*.avi"))
    with av.open(str(path)) as container:
        pcm = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)]) / 32768.0
    with np.load(root / "ground_truth" / f"{path.stem}.audio.npz") as audio:
        mixture = audio["mixture"]
    decoded = resample_poly(pcm, 1, 3)[: len(mixture)]
    assert np.corrcoef(decoded, mixture)[0, 1] > 0.99


def test_two_people_share_one_video(root: Path) -> None:
    rows = splits(root)
    pairs = [t for t, _, _ in rows if t.endswith(("_left", "_right"))]
    assert len(pairs) == 2
    left, right = sorted(pairs)
    assert left.removesuffix("_left") == right.removesuffix("_right")
    video = left.removesuffix("_left")
    assert {v for t, v, _ in rows if t in pairs} == {video}
    assert video_path(root, video).is_file()
    speaking = [truth(root, t)["speaking"] for t in (left, right)]
    assert not np.any(speaking[0] & speaking[1]) and (speaking[0].any() or speaking[1].any())


def test_test_list_and_example_submission(root: Path) -> None:
    tests = (root / TEST_LIST).read_text().split()
    assert tests == [t for t, _, split in splits(root) if split == "Test_Set"]
    lines = (root / EXAMPLE).read_text().splitlines()
    assert lines[0] == "image_location,valence,arousal"
    expected = [f"{t}/{i:05d}.jpg" for t in tests for i in range(1, int(truth(root, t)["n_frames"]) + 1)]
    assert [line.split(",")[0] for line in lines[1:]] == expected
    values = np.array([line.split(",")[1:] for line in lines[1:]], dtype=float)
    assert np.all(np.abs(values) <= 1)


def test_deterministic_per_seed(root: Path, tmp_path: Path) -> None:
    generate_demo_dataset(tmp_path / "same", SMALL)
    generate_demo_dataset(tmp_path / "other", DemoSpec(**{**SMALL.__dict__, "seed": 4}))
    for pattern in (
        "annotations/**/*.txt",
        "*.txt",
        "names_of_videos_in_each_test_set/*",
        "ground_truth/*.tsv",
        "cropped_aligned*/*/*.jpg",
    ):
        assert digest(root, pattern) == digest(tmp_path / "same", pattern), pattern
    for path in sorted((root / "ground_truth").glob("*.npz")):
        with np.load(path) as a, np.load(tmp_path / "same" / "ground_truth" / path.name) as b:
            assert a.files == b.files
            for key in a.files:
                assert np.array_equal(a[key], b[key]), (path.name, key)
    other = tmp_path / "other"
    assert digest(root, "annotations/**/*.txt") != digest(other, "annotations/**/*.txt")
    assert digest(root, "cropped_aligned*/*/*.jpg") != digest(other, "cropped_aligned*/*/*.jpg")
