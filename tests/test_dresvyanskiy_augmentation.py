"""The audio augmentation of Dresvyanskiy et al. (sec. 4.2.1): augmented waveforms through the frozen
backbone, cached as copies (Stage 1), one copy per training window per epoch (Stage 2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from vapipe.features.audio import write_wav
from vapipe.features.augment import (
    AUGMENTATIONS,
    augment_waveform,
    augmented_copy,
    augmented_name,
    extract_augmented_shard,
)
from vapipe.features.backbones import create_backbone
from vapipe.features.cache import read_extra, read_store, store_path, write_store
from vapipe.features.extract import embed_audio_trial
from vapipe.training.augmented import CopySampler, attach_augmented, normalised_copies
from vapipe.training.data import Standardizer, TrialData
from vapipe.training.resample import resample_trial

RATE = 16000


def tone(seconds=2.0, seed=0):
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    return (0.1 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def test_each_augmentation_is_the_papers_transform_at_the_authors_levels():
    x = tone()
    rng = np.random.default_rng(0)
    flipped, _ = augment_waveform(x, "polarity", rng)
    np.testing.assert_array_equal(flipped, -x)
    for _ in range(20):
        noisy, done = augment_waveform(x, "white_noise", rng)
        ratio = (noisy - x).std() / x.std()
        assert 1e-4 * 0.9 <= ratio <= 5e-3 * 1.1 and ratio == pytest.approx(done["noise_std_ratio"], rel=0.05)
        louder, done = augment_waveform(x, "volume", rng)
        gain_db = 20 * np.log10(np.abs(louder).max() / np.abs(x).max())
        assert -20 <= gain_db <= -1 and gain_db == pytest.approx(done["gain_db"], abs=1e-3)
    with pytest.raises(ValueError, match="unknown augmentation 'pitch'"):
        augment_waveform(x, "pitch", rng)


def test_copies_cycle_through_the_three_kinds_and_are_seeded():
    x = tone()
    kinds = [augmented_copy(x, "v1", k, seed=0)[1]["kind"] for k in range(6)]
    assert kinds == list(AUGMENTATIONS) * 2
    a, _ = augmented_copy(x, "v1", 1, seed=0)
    np.testing.assert_array_equal(a, augmented_copy(x, "v1", 1, seed=0)[0])
    assert not np.array_equal(a, augmented_copy(x, "v2", 1, seed=0)[0])  # another video, other noise
    assert not np.array_equal(a, augmented_copy(x, "v1", 1, seed=1)[0])


def test_shard_caches_each_copy_as_the_backbone_sees_the_augmented_waveform(tmp_path):
    samples = tone(3.0)
    write_wav(tmp_path / "v.wav", samples)
    manifest = pd.DataFrame(
        [
            {"trial": "v", "video": "v", "split": "Train_Set", "fps": 10.0, "n_rows": 30, "video_source": "s"},
            {"trial": "w", "video": "w", "split": "Test_Set", "fps": 10.0, "n_rows": 30, "video_source": "s"},
        ]
    )
    spec = {"kind": "logmel", "id": "logmel", "input": "vocals", "n_mels": 16}
    summary = extract_augmented_shard("mel", spec, manifest, 0, 1, tmp_path, {"v": str(tmp_path / "v.wav")}, 3)
    assert list(summary["trial"]) == ["v"]  # test trials are never augmented
    path = store_path(tmp_path, augmented_name("mel", 3), "v")
    store = read_store(path)
    assert [a["kind"] for a in store.attrs["augmentations"]] == list(AUGMENTATIONS)
    backbone = create_backbone("mel", spec)
    cached = [store.features, read_extra(path, "copy1"), read_extra(path, "copy2")]
    for k in range(3):
        augmented, _ = augmented_copy(samples, "v", k, seed=0)
        expected, _ = embed_audio_trial(backbone, samples, 10.0, 30, backbone.embed_waveform(augmented, fps=10.0))
        np.testing.assert_allclose(cached[k], expected, rtol=2e-3, atol=2e-3)  # stored as float16
    plain, _ = embed_audio_trial(backbone, samples, 10.0, 30)
    assert np.abs(cached[2] - plain).mean() > 0.1  # the volume copy is not the plain features


def trial_with_copies(tmp_path, n=12, dim=3, copies=3):
    rng = np.random.default_rng(0)
    plain = rng.normal(size=(n, dim)).astype(np.float32)
    valid = np.ones(n, bool)
    valid[4] = False
    write_store(store_path(tmp_path, "a", "t"), plain, valid, {})
    versions = [plain + 10 * (k + 1) for k in range(copies)]
    extra = {f"copy{k}": versions[k] for k in range(1, copies)}
    write_store(store_path(tmp_path, augmented_name("a", copies), "t"), versions[0], valid, {}, extra=extra)
    labels = np.zeros((n, 2), np.float32)
    trial = TrialData("t", 10.0, {"a": plain, "f": plain[:, :1]}, {"a": valid, "f": valid}, labels)
    return trial, versions


def test_training_trials_get_their_copies_and_resampling_keeps_them_aligned(tmp_path):
    trial, versions = trial_with_copies(tmp_path)
    (attached,) = attach_augmented([trial], ["a", "f"], tmp_path, 3)  # "f" has no copies: left plain
    assert set(attached.augmented) == {"a"} and attached.augmented["a"].shape == (3, 12, 3)
    np.testing.assert_allclose(attached.augmented["a"][2, 5], versions[2][5], rtol=1e-3)
    np.testing.assert_allclose(attached.augmented["a"][1, 4], versions[1][3], rtol=1e-3)  # invalid: filled
    low = resample_trial(attached, 5.0)  # 2 rows per bin
    np.testing.assert_allclose(low.augmented["a"][1, 0], versions[1][:2].mean(0), rtol=1e-3)
    np.testing.assert_allclose(low.augmented["a"][1, 2], versions[1][5], rtol=1e-3)  # bin 2: row 5 only
    with pytest.raises(Exception, match="no augmented copies"):
        attach_augmented([trial], ["f"], tmp_path, 3)


def test_each_window_reads_one_seeded_copy_normalised_as_the_plain_features(tmp_path):
    trial, versions = trial_with_copies(tmp_path)
    attach_augmented([trial], ["a"], tmp_path, 3)
    standardizer = Standardizer("zscore").fit([trial])
    copies = normalised_copies(standardizer, trial)["a"].astype(np.float32)
    centre, scale = standardizer.mean_["a"], standardizer.scale_["a"]
    np.testing.assert_allclose(copies[2, 0, :3], (versions[2][0] - centre) / scale, rtol=1e-2)
    np.testing.assert_array_equal(copies[:, :, 3], np.broadcast_to(trial.valid["a"], (3, 12)))
    sampler = CopySampler([trial], standardizer, seed=7, device=torch.device("cpu"))
    rows = torch.tensor([[0, 1, 2, 3], [8, 9, 10, 11], [8, 9, 10, 11]])
    real = torch.tensor([[True] * 4, [True] * 4, [True, True, False, False]])
    plain = {n: torch.from_numpy(x[rows.numpy()]) for n, x in standardizer.transform(trial).items()}
    out = sampler.window_inputs(plain, rows, real)
    drawn = np.random.default_rng(7).integers(3, size=3)  # one copy per window, from the seed
    for b in range(3):
        expected = copies[drawn[b]][rows[b].numpy()] * real[b].numpy()[:, None]
        np.testing.assert_allclose(out["a"][b].numpy(), expected, atol=1e-6)
    assert torch.equal(out["f"], plain["f"])  # features without copies stay as they were
    again = CopySampler([trial], standardizer, seed=7, device=torch.device("cpu")).window_inputs(plain, rows, real)
    assert torch.equal(again["a"], out["a"])
    # a trial without copies (held-out, validation) leaves every batch untouched
    bare = TrialData("t", 10.0, trial.inputs, trial.valid, trial.labels)
    assert CopySampler([bare], standardizer, 0, torch.device("cpu")).window_inputs(plain, rows, real) is plain


@pytest.mark.slow
@pytest.mark.usefixtures("single_thread")
def test_the_trainer_reads_the_copies_of_its_training_trials_only():
    from conftest import make_system
    from test_training import synthetic_trials

    def fitted(copies: bool, seed: int = 0):
        trials = synthetic_trials(2, 0, length=90)
        if copies:
            for t in trials:  # an exaggerated "augmentation": the copies are the features shifted by 100
                t.augmented = {"f": np.stack([t.inputs["f"] + 100 * (k + 1) for k in range(2)])}
        system = make_system(
            "dresvyanskiy_audio",
            {"variant": "v1", "gru_hidden": 8, "head_hidden": 8},
            window=20,
            stride=10,
            epochs=1,
            rate=5,
            seed=seed,
        )
        torch.manual_seed(0)
        return system.fit(trials), trials

    plain, trials = fitted(False)
    augmented, _ = fitted(True)
    again, _ = fitted(True)
    held_out = synthetic_trials(1, 5, length=90)[0]
    p_plain, p_aug = plain.predict(held_out)[1], augmented.predict(held_out)[1]
    assert not np.allclose(p_plain, p_aug)  # the windows it trained on were the copies
    np.testing.assert_array_equal(p_aug, again.predict(held_out)[1])  # the copies drawn are seeded
    assert augmented.standardizer_.mean_["f"] == pytest.approx(plain.standardizer_.mean_["f"])  # fitted on plain
