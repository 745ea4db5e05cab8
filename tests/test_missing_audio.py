"""The missing-audio sweep (IACA, paper 002, Fig. 3): audio silenced before its backbone and the
features re-extracted (Stage 1), then systems scored on those stores (Stage 2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vapipe.evaluation.metrics import va_scores
from vapipe.evaluation.sweep import silenced_audio_sweep, sweep_summary, with_silenced_audio
from vapipe.features.audio import SAMPLE_RATE, write_wav
from vapipe.features.cache import read_store, store_path, write_store
from vapipe.features.extract import extract_shard
from vapipe.features.silence import extract_silenced, silence_audio, silenced_segments
from vapipe.specs import SystemSpec, TrainSpec
from vapipe.training.data import TrialData
from vapipe.training.system import System

LOGMEL = {"kind": "logmel", "id": "logmel", "n_mels": 32, "input": "mixture"}
FPS, SECONDS = 25.0, 6.0


def test_each_share_silences_exactly_its_segments_the_same_for_every_call():
    first = silenced_segments(50, 0.2, seed=3, video="v1")
    assert first.sum() == 10
    np.testing.assert_array_equal(first, silenced_segments(50, 0.2, seed=3, video="v1"))  # any backbone, system
    assert not np.array_equal(first, silenced_segments(50, 0.2, seed=4, video="v1"))
    assert not np.array_equal(first, silenced_segments(50, 0.2, seed=3, video="v2"))
    larger = silenced_segments(50, 0.6, seed=3, video="v1")
    assert larger.sum() == 30 and (larger >= first).all()  # a larger share silences a superset
    with pytest.raises(ValueError, match="share 1.5"):
        silenced_segments(50, 1.5, seed=0, video="v1")


def test_silencing_zeroes_whole_segments_and_leaves_the_rest_untouched():
    rng = np.random.default_rng(0)
    samples = rng.uniform(-0.5, 0.5, 10 * SAMPLE_RATE + 123).astype(np.float32)  # a last, partial segment
    quiet, silenced = silence_audio(samples, 0.4, seed=1, video="v", segment_seconds=1.0)
    segments = silenced_segments(11, 0.4, seed=1, video="v")
    for k in range(11):
        part = slice(k * SAMPLE_RATE, (k + 1) * SAMPLE_RATE)
        assert silenced[part].all() == segments[k] and silenced[part].any() == segments[k]
        np.testing.assert_array_equal(quiet[part], 0.0 if segments[k] else samples[part])


@pytest.fixture
def one_video(tmp_path):
    """A video's track (a chirp with noise, so every second sounds different) and its two trials."""
    t = np.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    rng = np.random.default_rng(0)
    samples = 0.3 * np.sin(2 * np.pi * (200 + 150 * t) * t) + 0.05 * rng.standard_normal(len(t))
    write_wav(tmp_path / "v.wav", samples.astype(np.float32))
    n_rows = int(SECONDS * FPS)
    manifest = pd.DataFrame(
        {
            "trial": ["v_left", "v_right"],
            "video": ["v", "v"],
            "fps": [FPS, FPS],
            "n_rows": [n_rows, n_rows],
            "variable_rate": [False, False],
            "video_source": ["stamp", "stamp"],
        }
    )
    return manifest, {"v": str(tmp_path / "v.wav")}, tmp_path


def silenced_features(one_video, share, seed=0, root="silenced"):
    manifest, audio, tmp = one_video
    summary = extract_silenced("voice", LOGMEL, manifest, ["v_left", "v_right"], audio, tmp / root, share, seed)
    return summary, read_store(store_path(tmp / root, "voice", "v_left"))


def test_share_zero_re_extracts_exactly_what_the_cache_holds(one_video):
    """The same extraction code as the pipeline's: an unsilenced re-extraction is the cached store."""
    manifest, audio, tmp = one_video
    extract_shard("voice", LOGMEL, manifest, 0, 1, tmp / "cache", audio)
    cached = read_store(store_path(tmp / "cache", "voice", "v_left"))
    _, again = silenced_features(one_video, 0.0)
    np.testing.assert_array_equal(again.features, cached.features)
    np.testing.assert_array_equal(again.valid, cached.valid)


def test_silenced_rows_hold_the_backbone_s_features_of_silence_and_stay_valid(one_video):
    """Fig. 3's protocol: the audio is zeroed before the backbone, so the rows of a silenced second
    get what the backbone makes of silence (not a neighbour's features, not a missing mark), and
    the rows of the other seconds keep their features."""
    manifest, audio, tmp = one_video
    extract_shard("voice", LOGMEL, manifest, 0, 1, tmp / "cache", audio)
    intact = read_store(store_path(tmp / "cache", "voice", "v_left")).features
    _, quiet = silenced_features(one_video, 1.0, root="all")
    summary, half = silenced_features(one_video, 0.5)
    assert summary["silenced_fraction"].tolist() == [0.5, 0.5]
    assert half.valid.all()
    segments = silenced_segments(int(SECONDS), 0.5, seed=0, video="v")
    per_second = int(FPS)
    for k, silent in enumerate(segments):
        inner = slice(k * per_second + 2, (k + 1) * per_second - 2)  # away from the neighbours' windows
        want = quiet.features[inner] if silent else intact[inner]
        np.testing.assert_allclose(half.features[inner], want, atol=1e-3)
    assert not np.allclose(quiet.features, intact, atol=1e-2)


def test_both_people_of_a_video_hear_the_same_silence(one_video):
    manifest, audio, tmp = one_video
    extract_silenced("voice", LOGMEL, manifest, ["v_left", "v_right"], audio, tmp / "s", 0.4, 2)
    left, right = (read_store(store_path(tmp / "s", "voice", t)).features for t in ("v_left", "v_right"))
    np.testing.assert_array_equal(left, right)


def test_a_face_backbone_is_not_silenced(one_video):
    manifest, audio, tmp = one_video
    face = {"kind": "timm", "id": "resnet18", "input": "face"}
    with pytest.raises(ValueError, match="backbone 'face' reads face crops"):
        extract_silenced("face", face, manifest, ["v_left"], audio, tmp / "s", 0.4, 0)


class AudioMinusFace(System):
    """A fixed system: valence = mean of the audio row, arousal = mean of the face row (raw frames)."""

    kind = "test_audio_minus_face"

    def fit(self, train, monitor=None, validation=None):
        return self

    def _predict(self, trial):
        va = np.stack([trial.inputs["voice"].mean(axis=1), trial.inputs["face"].mean(axis=1)], axis=1)
        return trial.times, np.tanh(va)

    def score(self, trials):
        return {}

    def _state(self):
        return {}, {}

    @classmethod
    def _from_state(cls, spec, state, arrays, device):
        return cls(spec)


def sweep_trials(n=3, rows=80):
    rng = np.random.default_rng(1)
    trials = []
    for i in range(n):
        voice, face = rng.normal(size=(rows, 4)), rng.normal(size=(rows, 3))
        labels = np.tanh(np.stack([voice.mean(axis=1), face.mean(axis=1)], axis=1))  # the system is exact
        ones = np.ones(rows, bool)
        trials.append(TrialData(f"t{i}", FPS, {"voice": voice, "face": face}, {"voice": ones, "face": ones}, labels))
    return trials


def write_silenced(root, trials, scale):
    for trial in trials:
        attrs = {"backbone": "voice", "trial": trial.trial}
        write_store(store_path(root, "voice", trial.trial), scale * trial.inputs["voice"], trial.valid["voice"], attrs)


def test_the_sweep_scores_each_draw_on_its_silenced_audio_stores_and_the_intact_face(tmp_path):
    trials = sweep_trials()
    system = AudioMinusFace(SystemSpec(model="test", features=("voice", "face"), train=TrainSpec(device="cpu")))
    roots = {(0.5, 0): tmp_path / "a", (0.5, 1): tmp_path / "b"}
    write_silenced(roots[(0.5, 0)], trials, 0.0)  # all audio silent: valence constant
    write_silenced(roots[(0.5, 1)], trials, -1.0)  # valence mirrored
    draws = silenced_audio_sweep(system, trials, ["voice"], roots)
    assert list(zip(draws["share"], draws["seed"], strict=True)) == [(0.0, -1), (0.5, 0), (0.5, 1)]
    assert draws.loc[0, "valence"] == pytest.approx(1.0) and draws.loc[0, "arousal"] == pytest.approx(1.0)
    assert draws.loc[1, "valence"] == pytest.approx(0.0) and draws.loc[1, "arousal"] == pytest.approx(1.0)
    labels = np.concatenate([t.labels for t in trials])
    mirrored = np.concatenate([np.stack([-t.labels[:, 0], t.labels[:, 1]], axis=1) for t in trials])
    assert draws.loc[2, "valence"] == pytest.approx(va_scores(mirrored, labels)["valence"], abs=1e-5)
    summary = sweep_summary(draws)
    assert list(summary["share"]) == [0.0, 0.5]
    assert summary.loc[1, "valence"] == pytest.approx((draws.loc[1, "valence"] + draws.loc[2, "valence"]) / 2)
    assert summary.loc[1, "valence_sd"] == pytest.approx(abs(draws.loc[1, "valence"] - draws.loc[2, "valence"]) / 2)
    assert summary["n_seeds"].tolist() == [1, 2]
    with pytest.raises(ValueError, match="no audio features"):
        silenced_audio_sweep(system, trials, [], roots)


def test_a_silenced_store_of_another_length_is_named(tmp_path):
    trial = sweep_trials(1)[0]
    write_store(store_path(tmp_path, "voice", "t0"), np.zeros((5, 4)), np.ones(5, bool), {})
    with pytest.raises(ValueError, match=r"voice/t0.zarr: 5 rows, the trial has 80"):
        with_silenced_audio(trial, ["voice"], tmp_path)
