"""Aff-Wild2 files as they come on clusters and from other systems: symlinked folders, byte-order
marks, other encodings and line endings, blank lines, upper-case suffixes, stray files, short
annotations and a messy example file. Each case gets its answer when the manifest is built."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from conftest import mini_dataset_config

from vapipe.data.affwild2 import DatasetError, index_crops, read_annotation
from vapipe.data.manifest import DatasetLayout, build_manifest

CLIP = "clipA-60-64x48"
TRAIN = "annotations/VA_Estimation_Challenge/Train_Set"


def manifest_of(root, **kwargs):
    return build_manifest(DatasetLayout.from_config(mini_dataset_config(root)), **kwargs)


def test_a_symlinked_batch_folder_is_searched(mini_dataset, tmp_path):
    elsewhere = tmp_path / "scratch/batch2"
    shutil.move(mini_dataset / "videos/batch2", elsewhere)
    (mini_dataset / "videos/batch2").symlink_to(elsewhere, target_is_directory=True)
    (mini_dataset / "videos/batch2/loop").symlink_to(mini_dataset / "videos", target_is_directory=True)  # a cycle
    manifest, _ = manifest_of(mini_dataset)
    assert set(manifest["video"]) == {CLIP, "duo", "testvid"}
    assert manifest.set_index("trial").loc["duo_left", "video_path"].endswith("videos/batch2/duo.avi")


@pytest.mark.parametrize(
    "encoding, message",
    [
        ("utf-16", "is UTF-16 text; save it as UTF-8"),
        ("latin-1", r"is not UTF-8 text \(byte 0xe9 at offset \d+\); save it as UTF-8"),
    ],
)
def test_an_annotation_in_another_encoding_is_named_and_skippable(mini_dataset, encoding, message):
    path = mini_dataset / TRAIN / "duo_left.txt"
    path.write_bytes(("valence,arousal\n" + "0.5,0.5\n" * 9 + "0.5,0.5 # évalué\n").encode(encoding))
    with pytest.raises(DatasetError, match=message) as error:
        manifest_of(mini_dataset)
    assert "duo_left.txt" in str(error.value) and "\n" not in str(error.value)
    manifest, skipped = manifest_of(mini_dataset, on_bad_trial="skip")
    assert "duo_left" not in set(manifest["trial"]) and skipped["trial"].tolist() == ["duo_left"]


def test_a_byte_order_mark_and_crlf_line_endings_are_read_as_plain_utf8(mini_dataset):
    reference = read_annotation(mini_dataset / TRAIN / "duo_left.txt")
    path = mini_dataset / TRAIN / "duo_left.txt"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    np.testing.assert_array_equal(read_annotation(path), reference)
    test_list = mini_dataset / "names_of_videos_in_each_test_set/test.txt"
    test_list.write_bytes(b"\xef\xbb\xbf" + test_list.read_bytes())
    example = mini_dataset / "example.txt"
    example.write_bytes(b"\xef\xbb\xbf" + example.read_bytes().replace(b"\n", b"\r\n"))
    manifest, _ = manifest_of(mini_dataset)
    assert manifest.set_index("trial").loc["testvid", "split"] == "Test_Set"


def test_a_blank_line_inside_an_annotation_names_its_line(mini_dataset):
    path = mini_dataset / TRAIN / "duo_left.txt"
    path.write_text("valence,arousal\n" + "0.5,0.5\n" * 4 + "\n" + "0.5,0.5\n" * 6 + "\n\n")
    with pytest.raises(DatasetError, match=r"duo_left.txt:6: blank line between annotation rows"):
        read_annotation(path)
    path.write_text("valence,arousal\n" + "0.5,0.5\n" * 10 + "\n\n")  # trailing blank lines are fine
    assert read_annotation(path).shape == (10, 2)


def test_upper_case_crop_names_are_crops_and_other_files_are_reported(mini_dataset, caplog):
    folder = mini_dataset / "cropped_aligned/duo_left"
    for path in folder.glob("*.jpg"):
        path.rename(path.with_suffix(".JPG"))
    (folder / "Thumbs.db").write_bytes(b"x")
    (folder / "000011.jpg").write_bytes(b"x")
    assert sorted(index_crops(folder)) == list(range(1, 11))
    with caplog.at_level(logging.WARNING):
        manifest, _ = manifest_of(mini_dataset)
    assert manifest.set_index("trial").loc["duo_left", "n_crops"] == 10
    lines = [r.getMessage() for r in caplog.records if "files not named NNNNN.jpg" in r.getMessage()]
    assert lines == [f"{folder}: 2 files not named NNNNN.jpg (5 digits, 1-based), e.g. '000011.jpg'; they are ignored"]


def test_six_digit_crop_names_say_what_the_folder_holds(mini_dataset):
    folder = mini_dataset / "cropped_aligned/duo_left"
    for path in folder.glob("*.jpg"):
        path.rename(folder / f"0{path.name}")
    with pytest.raises(DatasetError, match=r"duo_left: 10 files not named NNNNN.jpg .*'000001.jpg', and no face crops"):
        manifest_of(mini_dataset)


def test_an_annotation_much_shorter_than_its_video_is_a_warning_and_a_column(mini_dataset, caplog):
    path = mini_dataset / TRAIN / "duo_left.txt"
    path.write_text("valence,arousal\n" + "0.5,0.5\n" * 7)  # the video has 10 frames; 2 + 1% tolerated
    with caplog.at_level(logging.WARNING):
        manifest, _ = manifest_of(mini_dataset)
    short = manifest.set_index("trial")["annotation_short"]
    assert short.to_dict() == {CLIP: False, "duo_left": True, "duo_right": False, "testvid": False}
    assert any("duo_left.txt: 7 rows for trial 'duo_left'" in r.getMessage() for r in caplog.records)
    path.write_text("valence,arousal\n" + "0.5,0.5\n" * 8)  # 2 short: within the tolerance
    assert not manifest_of(mini_dataset)[0].set_index("trial").loc["duo_left", "annotation_short"]


def test_an_example_row_beyond_the_video_stops_the_manifest_naming_the_file(mini_dataset):
    with (mini_dataset / "example.txt").open("a") as handle:
        handle.write("testvid/00400.jpg,0,0\n")
    with pytest.raises(DatasetError, match=r"example.txt: 400 rows \(its highest frame number\) for trial 'testvid'"):
        manifest_of(mini_dataset)


def test_a_gap_in_the_example_shifts_nothing(mini_dataset):
    example = mini_dataset / "example.txt"
    lines = example.read_text().splitlines()
    example.write_text("\n".join(line for line in lines if "00005.jpg" not in line) + "\n")
    assert manifest_of(mini_dataset)[0].set_index("trial").loc["testvid", "n_rows"] == 8


def test_a_duplicated_example_row_is_named(mini_dataset):
    with (mini_dataset / "example.txt").open("a") as handle:
        handle.write("testvid/00003.jpg,0,0\n")
    with pytest.raises(DatasetError, match=r"example.txt:10: row for testvid/00003.jpg repeats line 4"):
        manifest_of(mini_dataset)
