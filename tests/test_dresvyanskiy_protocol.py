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
from vapipe.features.mask_store import mask_path, write_mask
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
    (trial,) = load_trials(manifest, ["t"], ["f"], tmp_path / "features", tmp_path / "masks")
    np.testing.assert_array_equal(trial.speech, mouth)
    (either,) = load_trials(manifest, ["t"], ["f"], tmp_path / "features", tmp_path / "masks", "vad_or_mouth")
    np.testing.assert_array_equal(either.speech, vad | mouth)


def test_the_mouth_rule_needs_no_voice_activity_store(tmp_path):
    manifest = write_trial(tmp_path, "t", np.zeros(4, bool), np.array([1, 0, 0, 1], bool))
    vad_store = mask_path(tmp_path / "masks", "vad", "t")
    for path in sorted(vad_store.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    vad_store.rmdir()
    (trial,) = load_trials(manifest, ["t"], ["f"], tmp_path / "features", tmp_path / "masks")
    np.testing.assert_array_equal(trial.speech, [True, False, False, True])


def test_the_speech_rules_of_the_config_and_of_the_masks_agree():
    from vapipe.features.mask_store import SPEECH_RULES
    from vapipe.specs import SPEECH_RULES as SPEC_SPEECH_RULES

    assert set(SPEC_SPEECH_RULES) == set(SPEECH_RULES)
    with pytest.raises(ValueError, match="speech_rule must be one of mouth, vad_or_mouth, got 'vad'"):
        TrainSpec(speech_rule="vad")


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
