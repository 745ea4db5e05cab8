import zipfile

import numpy as np
import pandas as pd
import pytest

from vapipe.submission import (
    SubmissionError,
    build_submission,
    submitted_test_predictions,
    validate_submission,
    write_submission_zip,
)


@pytest.fixture
def example(tmp_path):
    path = tmp_path / "example.txt"
    rows = [f"b_left/{f:05d}.jpg,0,0" for f in (1, 2, 3)] + [f"a/{f:05d}.jpg,0.1,-0.1" for f in (1, 2)]
    path.write_text("image_location,valence,arousal\n" + "\n".join(rows) + "\n")
    return path


def predictions(frames):
    return pd.DataFrame([(t, f, f / 10, -f / 10) for t, f in frames], columns=["trial", "frame", "valence", "arousal"])


def test_rows_follow_the_example_order_and_are_filled_by_frame_number(example, tmp_path):
    # Predictions given out of order must land on their own frame, not on a row position.
    preds = predictions([("a", 2), ("b_left", 3), ("a", 1), ("b_left", 1), ("b_left", 2)])
    table = build_submission(example, preds)
    assert table["image_location"].tolist() == [
        "b_left/00001.jpg",
        "b_left/00002.jpg",
        "b_left/00003.jpg",
        "a/00001.jpg",
        "a/00002.jpg",
    ]
    np.testing.assert_allclose(table["valence"], [0.1, 0.2, 0.3, 0.1, 0.2])
    out = tmp_path / "sub.zip"
    write_submission_zip(table, out, "preds.txt")
    assert validate_submission(out, example) == 5
    with zipfile.ZipFile(out) as archive:
        text = archive.read("preds.txt").decode().splitlines()
    assert text[0] == "image_location,valence,arousal" and text[3].startswith("b_left/00003.jpg,0.3")


def test_values_are_clipped(example):
    preds = predictions([("a", 1), ("a", 2), ("b_left", 1), ("b_left", 2), ("b_left", 3)])
    preds.loc[0, "valence"] = 3.0
    assert build_submission(example, preds)["valence"].max() == 1.0


def test_refuses_a_submission_that_lacks_a_test_frame(example):
    with pytest.raises(SubmissionError, match=r"no prediction for 1 test frames, first b_left/00003.jpg"):
        build_submission(example, predictions([("a", 1), ("a", 2), ("b_left", 1), ("b_left", 2)]))


@pytest.mark.parametrize(
    "body, message",
    [
        ("b_left/00001.jpg,0,0\nb_left/00002.jpg,0,0\nb_left/00003.jpg,0,0\na/00001.jpg,0,0\n", "4 rows"),
        (
            "b_left/00001.jpg,0,0\nb_left/00003.jpg,0,0\nb_left/00002.jpg,0,0\na/00001.jpg,0,0\na/00002.jpg,0,0\n",
            "example has 'b_left/00002.jpg'",
        ),
        (
            "b_left/00001.jpg,nan,0\nb_left/00002.jpg,0,0\nb_left/00003.jpg,0,0\na/00001.jpg,0,0\na/00002.jpg,0,0\n",
            "not a number in",
        ),
        (
            "b_left/00001.jpg,1.5,0\nb_left/00002.jpg,0,0\nb_left/00003.jpg,0,0\na/00001.jpg,0,0\na/00002.jpg,0,0\n",
            "not a number in",
        ),
        (
            "b_left/00001.jpg,x,0\nb_left/00002.jpg,0,0\nb_left/00003.jpg,0,0\na/00001.jpg,0,0\na/00002.jpg,0,0\n",
            "non-numeric",
        ),
    ],
)
def test_validator_names_the_first_problem(example, tmp_path, body, message):
    path = tmp_path / "bad.txt"
    path.write_text("image_location,valence,arousal\n" + body)
    with pytest.raises(SubmissionError, match=message):
        validate_submission(path, example)


def test_validator_rejects_a_wrong_header(example, tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("valence,arousal\n")
    with pytest.raises(SubmissionError, match="first line"):
        validate_submission(path, example)


def test_fold_average_is_the_mean_of_test_rows():
    a = predictions([("a", 1), ("a", 2)]).assign(set="test")
    b = a.assign(valence=a["valence"] + 0.2)
    heldout = pd.DataFrame({"trial": ["z"], "frame": [1], "valence": [9.0], "arousal": [9.0], "set": ["heldout"]})
    folds = {"k0": pd.concat([a, heldout]), "k1": b}
    mean = submitted_test_predictions(folds, metrics=None)
    np.testing.assert_allclose(mean["valence"], [0.2, 0.3])
    assert "z" not in set(mean["trial"])
    metrics = pd.DataFrame({"fold": ["k0", "k1"], "valence": [0.3, 0.5], "arousal": [0.6, 0.4]})
    chosen = submitted_test_predictions(folds, metrics, fold_selection="targetwise")
    np.testing.assert_allclose(chosen["valence"], b["valence"])  # k1 has the better valence
    np.testing.assert_allclose(chosen["arousal"], a["arousal"])
