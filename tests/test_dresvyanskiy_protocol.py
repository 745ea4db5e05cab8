"""Dresvyanskiy et al.'s protocol (paper 001, sec. 4.2.1 and 5.1): the audio models and the voice
activity read the Spleeter vocals, speech frames are those where the target's mouth is open, and a
5 FPS bin with no valid frame carries the filled value, never zero."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from vapipe.features.cache import write_store
from vapipe.features.mask_store import SpeechRule, mask_path, voiced_segments, write_mask
from vapipe.specs import TrainSpec
from vapipe.training.data import TrialData, load_trials
from vapipe.training.resample import resample_trial

# ---------------------------------------------------------------- (c) 5 FPS bins without a valid row


def test_a_bin_without_a_valid_row_carries_the_previous_bins_value_not_zero():
    fps, rate = 30.0, 5.0  # 6 rows per bin
    x = (np.arange(30, dtype=np.float32) + 10)[:, None]
    valid = np.ones(30, bool)
    valid[6:18] = False  # bins 1 and 2: no face at all
    valid[24:] = False  # the last bin too
    trial = TrialData("t", fps, {"f": x}, {"f": valid}, None)
    low = resample_trial(trial, rate)
    np.testing.assert_array_equal(low.valid["f"], [True, False, False, True, False])
    first, fourth = x[0:6, 0].mean(), x[18:24, 0].mean()
    np.testing.assert_allclose(low.inputs["f"][:, 0], [first, first, first, fourth, fourth])
    # before the first valid bin: the next valid one, as fill_invalid does at the video rate
    valid_late = np.zeros(30, bool)
    valid_late[12:] = True
    late = resample_trial(TrialData("t", fps, {"f": x}, {"f": valid_late}, None), rate)
    np.testing.assert_allclose(late.inputs["f"][:2, 0], x[12:18, 0].mean())


# ---------------------------------------------------------------- (b) the speech rule


def write_trial(root: Path, trial: str, vad: np.ndarray, mouth: np.ndarray) -> pd.DataFrame:
    """A one-trial manifest with a feature store, labels and both masks under `root`."""
    n = len(vad)
    write_store(root / "features" / "f" / f"{trial}.zarr", np.zeros((n, 2), np.float32), np.ones(n, bool), {})
    labels = root / f"{trial}.txt"
    labels.write_text("valence,arousal\n" + "".join("0.1,0.2\n" for _ in range(n)))
    known = np.ones(n, bool)
    write_mask(mask_path(root / "masks", "vad", trial), "vad", vad.astype(float), known, 0.5, {})
    write_mask(mask_path(root / "masks", "mouth", trial), "mouth", mouth.astype(float), known, 0.5, {})
    return pd.DataFrame(
        [{"trial": trial, "video": trial, "n_rows": n, "fps": 30.0, "annotation_path": str(labels), "split": "Train"}]
    )


def test_speech_frames_are_the_open_mouth_frames_by_default(tmp_path):
    vad = np.array([0, 1, 1, 0, 1, 0], bool)  # e.g. another speaker, or music Spleeter kept
    mouth = np.array([0, 0, 1, 1, 0, 0], bool)
    manifest = write_trial(tmp_path, "t", vad, mouth)
    assert TrainSpec().train_on == "all" and getattr(TrainSpec(), "speech_rule", None) == "mouth"
    per_frame = SpeechRule("mouth", gap_seconds=0, min_seconds=0)
    (trial,) = load_trials(manifest, ["t"], ["f"], tmp_path / "features", tmp_path / "masks", per_frame)
    np.testing.assert_array_equal(trial.speech, mouth)
    either = SpeechRule("vad_or_mouth", gap_seconds=0, min_seconds=0)
    (trial,) = load_trials(manifest, ["t"], ["f"], tmp_path / "features", tmp_path / "masks", either)
    np.testing.assert_array_equal(trial.speech, vad | mouth)


def test_voiced_segments_bridge_pauses_under_half_a_second_and_drop_segments_under_two():
    """Their loader at 30 fps: a closed-mouth run of < 15 frames is speech, then a speech run of
    < 60 frames is left out."""
    fps = 29.97  # durations in frames of round(fps) = 30
    speech = np.zeros(300, bool)
    speech[20:40] = speech[54:80] = True  # a 14-frame pause: bridged, 20..79 = 60 frames kept
    speech[100:130] = speech[145:160] = True  # a 15-frame pause: kept apart; 30 and 15 frames: dropped
    speech[200:259] = True  # 59 frames: one short of two seconds
    expected = np.zeros(300, bool)
    expected[20:80] = True
    np.testing.assert_array_equal(voiced_segments(speech, fps), expected)
    assert voiced_segments(speech, fps, 0.0, 0.0).tolist() == speech.tolist()
    with_pause = voiced_segments(speech, fps, 0.5, 0.0)
    assert with_pause[40:54].all() and not with_pause[130:145].any()
    speech[259] = True  # now 60 frames: a segment
    assert voiced_segments(speech, fps)[200:260].all()


def test_a_pause_at_the_edge_of_the_trial_is_bridged_as_their_loader_does():
    speech = np.zeros(80, bool)
    speech[5:] = True  # a 5-frame closed run at the start
    assert voiced_segments(speech, 30.0).all()


def test_training_reads_the_voiced_segments_by_default(tmp_path):
    mouth = np.zeros(120, bool)
    mouth[0:30] = mouth[40:70] = True  # 70 frames with a 10-frame pause: one segment
    mouth[100:110] = True  # 10 frames: left out
    manifest = write_trial(tmp_path, "t", np.zeros(120, bool), mouth)
    (trial,) = load_trials(manifest, ["t"], ["f"], tmp_path / "features", tmp_path / "masks")
    np.testing.assert_array_equal(trial.speech, np.arange(120) < 70)
    assert TrainSpec().speech == SpeechRule("mouth", 0.5, 2.0)
    with pytest.raises(ValueError, match="speech gap"):
        TrainSpec(speech_gap_seconds=-1)


def test_the_mouth_rule_needs_no_voice_activity_store(tmp_path):
    manifest = write_trial(tmp_path, "t", np.zeros(4, bool), np.array([1, 0, 0, 1], bool))
    vad_store = mask_path(tmp_path / "masks", "vad", "t")
    for path in sorted(vad_store.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    vad_store.rmdir()
    per_frame = SpeechRule("mouth", gap_seconds=0, min_seconds=0)
    (trial,) = load_trials(manifest, ["t"], ["f"], tmp_path / "features", tmp_path / "masks", per_frame)
    np.testing.assert_array_equal(trial.speech, [True, False, False, True])


def test_the_speech_rules_of_the_config_and_of_the_masks_agree():
    from vapipe.features.mask_store import SPEECH_RULES
    from vapipe.specs import SPEECH_RULES as SPEC_SPEECH_RULES

    assert set(SPEC_SPEECH_RULES) == set(SPEECH_RULES)
    with pytest.raises(ValueError, match="speech_rule must be one of mouth, vad_or_mouth, got 'vad'"):
        TrainSpec(speech_rule="vad")


def test_the_voiced_score_reads_only_the_voiced_segments_of_the_held_out_trials(tmp_path):
    """Table 2 of 001 scores the audio models on voiced windows: predictions right on the voiced
    segment and wrong elsewhere score 1 there and less over every frame."""
    from vapipe.evaluation.scoring import score_predictions, score_voiced

    n = 150
    mouth = np.zeros(n, bool)
    mouth[30:100] = True  # one 70-frame segment (2.3 s at 30 fps)
    manifest = write_trial(tmp_path, "t", np.zeros(n, bool), mouth)
    rng = np.random.default_rng(0)
    labels = rng.uniform(-0.8, 0.8, (n, 2))
    Path(manifest.loc[0, "annotation_path"]).write_text(
        "valence,arousal\n" + "".join(f"{v:.4f},{a:.4f}\n" for v, a in labels)
    )
    predictions = rng.uniform(-0.8, 0.8, (n, 2))
    predictions[30:100] = np.round(labels[30:100], 4)
    frames = pd.DataFrame(
        {
            "trial": "t",
            "frame": np.arange(1, n + 1),
            "valence": predictions[:, 0],
            "arousal": predictions[:, 1],
            "set": "heldout",
        }
    )
    test_rows = frames.assign(set="test", trial="t")  # never scored
    table = score_voiced({"official": pd.concat([frames, test_rows])}, manifest, SpeechRule(), tmp_path / "masks")
    row = table.set_index("fold").loc["official_voiced"]
    assert row["n_frames"] == 70 and row["mean"] == pytest.approx(1.0, abs=1e-6)
    assert score_predictions(frames, manifest)["mean"] < 0.8
    short = SpeechRule(min_seconds=3.0)  # 70 frames < 90: no voiced segment left
    with pytest.raises(ValueError, match="fold official: no held-out trial has a voiced segment"):
        score_voiced({"official": frames}, manifest, short, tmp_path / "masks")


# ---------------------------------------------------------------- (a) the vocals, through the workflow


def snakemake(workdir: Path, *args: str, configs=("config/config.yaml", "tests/config/tiny.yaml")):
    command = [sys.executable, "-m", "snakemake", *args, "--snakefile", str(REPO / "Snakefile")]
    command += ["--directory", str(workdir), "--configfile", *[str(REPO / c) for c in configs]]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def test_the_demo_audio_models_and_the_paper_rows_read_the_vocals():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    backbones = config["backbones"]
    for name in ("dresvyanskiy_audio_v1", "dresvyanskiy_audio_v2", "dresvyanskiy_audio_v3"):
        assert [backbones[f]["input"] for f in config["systems"][name]["features"]] == ["vocals"], name
    assert backbones[config["stand_ins"]["voice_pdem"]]["input"] == "vocals"
    paper = yaml.safe_load((REPO / "config/affwild2.yaml").read_text())
    assert paper["backbones"]["voice_pdem"]["input"] == "vocals"


@pytest.mark.slow
def test_a_fresh_demo_plans_the_spleeter_separation_for_an_audio_row(tmp_path):
    # a fresh demo directory: the dataset and its manifest, nothing else
    result = snakemake(tmp_path, "--cores", "2", "results/manifest.tsv")
    assert result.returncode == 0, result.stderr[-3000:]
    videos = sorted(pd.read_csv(tmp_path / "results/manifest.tsv", sep="\t")["video"].unique())
    plan = snakemake(tmp_path, "-n", "--cores", "2", "results/rows/dresvyanskiy/t2_v2.tsv")
    assert plan.returncode == 0, plan.stderr[-3000:]
    out = plan.stdout
    for rule in ("build_spleeter_env", "fetch_spleeter_model", "separate_vocals"):
        assert f"rule {rule}:" in out, rule
    separated = {
        line.split(": ", 1)[1] for line in out.splitlines() if line.strip().startswith("output: results/audio")
    }
    assert {f"results/audio/{v}.vocals.wav" for v in videos} <= separated
    # voice activity is detected on the vocals, never on the mixture
    vad_inputs = [b for b in out.split("rule ")[1:] if b.startswith("detect_voice_activity:")]
    assert vad_inputs and all(".vocals.wav" in b.split("output:")[0] for b in vad_inputs)
    assert not any(f"results/audio/{v}.wav" in b.split("output:")[0] for b in vad_inputs for v in videos)


def test_the_models_table_gives_a_speech_trained_system_its_voiced_score_unsmoothed():
    from vapipe.evaluation.tables import models_table

    metrics = pd.DataFrame(
        [
            {"fold": "official", "valence": 0.21, "arousal": 0.22, "mean": 0.215, "n_frames": 1239},
            {"fold": "official_voiced", "valence": 0.41, "arousal": 0.42, "mean": 0.415, "n_frames": 400},
        ]
    )
    system = {"model": "dresvyanskiy_audio", "features": ["voice_logmel_vocals"], "params": {}, "train": {"seed": 0}}
    lines = models_table({"audio": metrics}, {"audio": system}, "note").splitlines()
    rows = [line for line in lines if line.startswith("| audio |")]
    assert len(rows) == 2
    assert "official (1239 frames) | Hamming 0.5 s" in rows[0] and "0.215" in rows[0]
    assert "official_voiced (400 voiced frames) | none" in rows[1] and "0.415" in rows[1]
    plain = models_table({"audio": metrics.iloc[:1]}, {"audio": system}, "note")
    assert plain.count("| audio |") == 1
