from fractions import Fraction

import numpy as np
import pytest
from conftest import mini_dataset_config, write_labels, write_video

from vapipe.data.affwild2 import (
    DatasetError,
    base_video,
    crop_name,
    index_crops,
    probe_video,
    read_annotation,
    read_example_submission,
)
from vapipe.data.folds import make_folds, split_fold
from vapipe.data.manifest import DatasetLayout, build_manifest
from vapipe.features.audio import extract_audio, read_wav
from vapipe.features.extract import embed_face_trial


class ConstantFace:
    """Stands in for a backbone: the embedding of a crop is its pixel value (= frame number)."""

    modality, dim = "face", 1
    device = __import__("torch").device("cpu")

    def embed(self, images):
        return images[:, 0, 0, :1].float().numpy()


def test_manifest_reads_every_convention(mini_dataset):
    manifest, skipped = build_manifest(DatasetLayout.from_config(mini_dataset_config(mini_dataset)))
    assert skipped.empty
    manifest = manifest.set_index("trial")
    assert sorted(manifest.index) == ["clipA-60-64x48", "duo_left", "duo_right", "testvid"]
    clip = manifest.loc["clipA-60-64x48"]
    assert clip["fps_fraction"] == "30000/1001" and clip["fps"] == pytest.approx(29.97, abs=1e-3)
    assert clip["n_frames"] == 12 and clip["n_rows"] == 13  # one more label row than frames
    assert clip["n_crops"] == 10 and clip["crops_dir"].endswith("cropped_aligned_new_50_vids/clipA-60-64x48")
    assert manifest.loc["duo_left", "video"] == manifest.loc["duo_right", "video"] == "duo"
    assert manifest.loc["duo_left", "video_path"].endswith("batch2/duo.avi")
    assert manifest.loc["duo_left", "fps"] == 25.0 and manifest.loc["duo_left", "split"] == "Train_Set"
    assert manifest.loc["duo_right", "split"] == "Validation_Set"
    test = manifest.loc["testvid"]
    assert test["split"] == "Test_Set" and test["fps"] == 10.0 and test["n_rows"] == 8 and test["annotation_path"] == ""


def test_annotation_keeps_minus_five_and_extra_rows(mini_dataset):
    labels = read_annotation(mini_dataset / "annotations/VA_Estimation_Challenge/Train_Set/clipA-60-64x48.txt")
    assert labels.shape == (13, 2) and labels.dtype == np.float32
    assert (labels[2:4] == -5).all() and (labels[[0, 1, 4]] != -5).all()


def test_crops_are_indexed_by_frame_number_not_position(mini_dataset):
    folder = mini_dataset / "cropped_aligned_new_50_vids/clipA-60-64x48"
    crops = index_crops(folder)
    assert 3 not in crops and 7 not in crops and crops[8].name == "00008.jpg"
    assert crop_name(1) == "00001.jpg"
    # Row i holds crop i + 1: after the gap at frame 7 the rows must not shift.
    features, valid = embed_face_trial(ConstantFace(), folder, n_rows=13, batch_size=4)
    assert valid.tolist() == [f not in (3, 7) and f <= 12 for f in range(1, 14)]
    np.testing.assert_array_equal(features[valid, 0], [f for f in range(1, 13) if f not in (3, 7)])
    assert (features[~valid] == 0).all()


def test_person_suffix_is_stripped_only_at_the_end():
    assert base_video("10-60-1280x720_left") == "10-60-1280x720"
    assert base_video("video_left_x") == "video_left_x"
    assert base_video("video2_right") == "video2"


def test_fps_comes_from_the_container(tmp_path):
    path = tmp_path / "5-60-64x48.mp4"  # "-60-" is not the frame rate
    write_video(path, Fraction(24000, 1001), 5, 0.3)
    info = probe_video(path)
    assert info.fps == Fraction(24000, 1001) and info.n_frames == 5 and info.has_audio


def test_audio_is_extracted_to_16k_mono_with_the_video_duration(mini_dataset, tmp_path):
    seconds = extract_audio(mini_dataset / "videos/batch2/duo.avi", tmp_path / "duo.wav")
    samples, rate = read_wav(tmp_path / "duo.wav")
    assert rate == 16000 and abs(seconds - 0.4) < 0.05 and len(samples) == pytest.approx(6400, abs=800)
    assert 0.15 < np.abs(samples).max() < 0.35  # the 0.3 tone survived, not a silent zero


def test_example_submission_rows_in_order(mini_dataset):
    rows = read_example_submission(mini_dataset / "example.txt")
    assert rows[0] == ("testvid", 1) and rows[-1] == ("testvid", 8) and len(rows) == 8


def test_folds_keep_both_people_of_a_video_together(mini_dataset):
    manifest, _ = build_manifest(DatasetLayout.from_config(mini_dataset_config(mini_dataset)))
    folds = make_folds(manifest, k=2, seed=0).set_index("trial")
    assert folds.loc["duo_left", "kfold"] == folds.loc["duo_right", "kfold"]
    assert folds.loc["testvid", "kfold"] == -1
    train, heldout, test = split_fold(folds.reset_index(), "official")
    assert heldout == ["duo_right"] and test == ["testvid"] and "duo_right" not in train


@pytest.mark.parametrize(
    "content, message",
    [
        ("arousal,valence\n0.1,0.2\n", "expected header 'valence,arousal'"),
        ("valence,arousal\n0.1,abc\n", r":2: non-numeric value"),
        ("valence,arousal\n0.1,0.2\n1.5,0.2\n", r":3: value outside \[-1, 1\]"),
        ("valence,arousal\n0.1,0.2,0.3\n", "expected 2 values"),
        ("valence,arousal\n", "no annotation rows"),
    ],
)
def test_bad_annotation_files_name_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "trial.txt"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message) as error:
        read_annotation(path)
    assert str(path) in str(error.value)


def test_missing_video_for_a_trial_is_named(mini_dataset):
    write_labels(mini_dataset / "annotations/VA_Estimation_Challenge/Train_Set/ghost.txt", ["0,0"])
    with pytest.raises(DatasetError, match="no raw video 'ghost.mp4/.avi'"):
        build_manifest(DatasetLayout.from_config(mini_dataset_config(mini_dataset)))


def test_missing_dataset_root_is_named(tmp_path):
    config = mini_dataset_config(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="nowhere: dataset root does not exist"):
        build_manifest(DatasetLayout.from_config(config))
