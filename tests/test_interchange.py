"""HDF5 interchange: export a backbone's cache to one file and import such a file as a backbone."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from vapipe.data.affwild2 import DatasetError
from vapipe.features.cache import is_complete, read_extra, read_store, store_path, write_store
from vapipe.features.interchange import export_backbone, import_shard

ROWS = {"1-30-640x360": 7, "video2_left": 5, "video2_right": 5}


def make_cache(root, backbone="face_a", flipped=False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    features = {}
    for trial, n in ROWS.items():
        values = rng.standard_normal((n, 4)).astype(np.float16).astype(np.float32)
        valid = np.arange(n) != 1
        extra = {"features_flipped": -values} if flipped else None
        write_store(
            store_path(root, backbone, trial),
            values,
            valid,
            {"fps": 30.0, "trial": trial, "fingerprint": "abc", "flipped": flipped},
            extra=extra,
        )
        features[trial] = values
    return features


def trials_table(rows=ROWS) -> pd.DataFrame:
    return pd.DataFrame({"trial": list(rows), "n_rows": list(rows.values()), "fps": 30.0})


def spec(path) -> dict:
    return {"kind": "hdf5", "id": str(path), "input": "face"}


def test_export_then_import_gives_the_same_stores(tmp_path):
    make_cache(tmp_path / "a", flipped=True)
    out = tmp_path / "exports/face_a.h5"
    assert export_backbone(tmp_path / "a", "face_a", list(ROWS), out) == 3
    with h5py.File(out) as handle:
        assert handle.attrs["format"] == "vapipe-features" and handle.attrs["backbone"] == "face_a"
        assert sorted(handle) == sorted(ROWS) and handle["video2_left"]["features"].shape == (5, 4)
    summary = import_shard("face_b", spec(out), trials_table(), tmp_path / "b")
    assert set(summary.status) == {"imported"}
    for trial in ROWS:
        ours, theirs = (
            read_store(store_path(tmp_path / "b", "face_b", trial)),
            read_store(store_path(tmp_path / "a", "face_a", trial)),
        )
        assert np.array_equal(ours.features, theirs.features) and np.array_equal(ours.valid, theirs.valid)
        assert np.array_equal(
            read_extra(store_path(tmp_path / "b", "face_b", trial), "features_flipped"), -theirs.features
        )
    again = import_shard("face_b", spec(out), trials_table(), tmp_path / "b")
    assert set(again.status) == {"cached"}  # a rerun with the same file writes nothing


def test_a_changed_file_makes_the_imported_stores_stale(tmp_path):
    make_cache(tmp_path / "a")
    out = tmp_path / "face_a.h5"
    export_backbone(tmp_path / "a", "face_a", list(ROWS), out)
    import_shard("face_b", spec(out), trials_table(), tmp_path / "b")
    with h5py.File(out, "a") as handle:
        handle["video2_left"]["features"][0, 0] = 9.0
    summary = import_shard("face_b", spec(out), trials_table(), tmp_path / "b")
    assert set(summary.status) == {"imported"}
    assert read_store(store_path(tmp_path / "b", "face_b", "video2_left")).features[0, 0] == 9.0


def test_export_refuses_a_trial_without_a_complete_store(tmp_path):
    make_cache(tmp_path / "a")
    out = tmp_path / "face_a.h5"
    with pytest.raises(Exception, match="missing or incomplete"):
        export_backbone(tmp_path / "a", "face_a", [*ROWS, "video9"], out)
    assert list(tmp_path.glob("*.h5*")) == [] and list(tmp_path.glob(".*")) == []  # no partial file left


def external_file(path, rows=ROWS, **changes) -> None:
    """An .h5 made by someone else's code: float32 features, no valid mask, NaN for missing faces."""
    with h5py.File(path, "w") as handle:
        for trial, n in rows.items():
            values = np.ones((n, 3), np.float32) * np.arange(n)[:, None]
            values[0] = np.nan
            handle.create_dataset(f"{trial}/features", data=changes.get(trial, values))


def test_an_external_file_without_valid_masks_marks_non_finite_rows_invalid(tmp_path):
    external_file(tmp_path / "x.h5")
    import_shard("face_x", spec(tmp_path / "x.h5"), trials_table(), tmp_path / "b")
    store = read_store(store_path(tmp_path / "b", "face_x", "1-30-640x360"))
    assert store.valid.tolist() == [False] + [True] * 6
    assert store.features[0].tolist() == [0, 0, 0] and store.features[3].tolist() == [3, 3, 3]


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"video2_left": np.zeros((4, 3), np.float32)},
            r"x\.h5: trial 'video2_left' features have shape \(4, 3\), expected 5 rows",
        ),
        (
            {"video2_left": np.zeros((5, 2), np.float32)},
            r"x\.h5: trial 'video2_left' has 2 features per row, other trials 3",
        ),
        ({"video2_left": np.zeros(5, np.float32)}, r"x\.h5: trial 'video2_left' features have shape \(5,\)"),
    ],
)
def test_a_file_that_does_not_match_the_labels_is_named(tmp_path, changes, message):
    external_file(tmp_path / "x.h5", **changes)
    with pytest.raises(DatasetError, match=message):
        import_shard("face_x", spec(tmp_path / "x.h5"), trials_table(), tmp_path / "b")
    assert not is_complete(store_path(tmp_path / "b", "face_x", "video2_left"))


def test_a_missing_trial_fails_or_is_skipped(tmp_path):
    external_file(tmp_path / "x.h5", rows={"1-30-640x360": 7, "video2_left": 5})
    with pytest.raises(DatasetError, match=r"x\.h5: no group for trial 'video2_right'"):
        import_shard("face_x", spec(tmp_path / "x.h5"), trials_table(), tmp_path / "b")
    summary = import_shard("face_x", spec(tmp_path / "x.h5"), trials_table(), tmp_path / "c", on_bad_trial="skip")
    assert dict(zip(summary.trial, summary.status)) == {
        "1-30-640x360": "imported",
        "video2_left": "imported",
        "video2_right": "skipped",
    }


def test_valid_rows_must_be_finite_and_the_file_must_exist(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as handle:
        handle["1-30-640x360/features"] = np.full((7, 3), np.nan, np.float32)
        handle["1-30-640x360/valid"] = np.ones(7, bool)
    with pytest.raises(DatasetError, match=r"trial '1-30-640x360' row 0 is marked valid but is not finite"):
        import_shard("face_x", spec(tmp_path / "x.h5"), trials_table({"1-30-640x360": 7}), tmp_path / "b")
    with pytest.raises(DatasetError, match=r"nothere\.h5: HDF5 features file of backbone 'face_x' does not exist"):
        import_shard("face_x", spec(tmp_path / "nothere.h5"), trials_table(), tmp_path / "b")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(DatasetError, match=r"junk\.h5: not a readable HDF5 file"):
        import_shard("face_x", spec(tmp_path / "junk.h5"), trials_table(), tmp_path / "b")
