import numpy as np
import pytest

from vapipe.cli import main
from vapipe.features.cache import write_store


def test_validate_submission_accepts_and_rejects(tmp_path, capsys):
    example = tmp_path / "example.txt"
    example.write_text("image_location,valence,arousal\na/00001.jpg,0,0\na/00002.jpg,0,0\n")
    good = tmp_path / "good.txt"
    good.write_text("image_location,valence,arousal\na/00001.jpg,0.1,0.2\na/00002.jpg,-1,1\n")
    assert main(["validate-submission", str(good), "--example", str(example)]) == 0
    assert "valid, 2 rows" in capsys.readouterr().out
    bad = tmp_path / "bad.txt"
    bad.write_text("image_location,valence,arousal\na/00001.jpg,0.1,0.2\n")
    assert main(["validate-submission", str(bad), "--example", str(example)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.txt: 1 rows" in err


def test_inspect_cache_lists_stores_and_flags_incomplete_ones(tmp_path, capsys):
    valid = np.array([True, True, False, True])
    write_store(tmp_path / "bb/t1.zarr", np.ones((4, 3)), valid, {"backbone": "bb", "trial": "t1", "fps": 25.0})
    assert main(["inspect-cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "t1" in out and "0.75" in out and "25.0" in out
    (tmp_path / "bb/t2.zarr").mkdir()
    (tmp_path / "bb/t2.zarr/zarr.json").write_text("{}")
    assert main(["inspect-cache", str(tmp_path)]) == 1
    assert "INCOMPLETE" in capsys.readouterr().out


def test_help_is_complete(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "validate-submission" in out and "inspect-cache" in out
