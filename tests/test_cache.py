import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from vapipe.features.cache import IncompleteStoreError, is_complete, read_store, write_store


def test_store_round_trip_float16_with_mask_and_attrs(tmp_path):
    features = np.random.default_rng(0).normal(size=(37, 8)).astype(np.float32)
    valid = np.arange(37) % 5 != 0
    path = tmp_path / "bb" / "trial.zarr"
    write_store(path, features, valid, {"fps": 29.97, "backbone": "bb", "fingerprint": "abc"}, chunk_rows=10)
    assert is_complete(path) and is_complete(path, "abc") and not is_complete(path, "other")
    store = read_store(path)
    np.testing.assert_allclose(store.features, features, atol=2e-3)
    np.testing.assert_array_equal(store.valid, valid)
    assert store.attrs["fps"] == 29.97 and store.attrs["n_rows"] == 37 and store.attrs["dim"] == 8
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left


KILLED_WRITER = """
import sys, numpy as np, zarr
from vapipe.features import cache
original = zarr.Group.create_array
def slow_create_array(self, name, **kw):
    array = original(self, name, **kw)
    print("WROTE", name, flush=True)
    import time; time.sleep(60)
    return array
zarr.Group.create_array = slow_create_array
cache.write_store(sys.argv[1], np.ones((1000, 4)), np.ones(1000, bool), {"fingerprint": "x"}, chunk_rows=100)
"""


def test_a_killed_writer_leaves_nothing_that_looks_complete(tmp_path):
    path = tmp_path / "killed.zarr"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("WROTE features")  # mid-write: features on disk
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not path.exists()
    assert not is_complete(path)
    leftovers = list(tmp_path.iterdir())
    assert leftovers and all(not is_complete(p) for p in leftovers)  # the temp folder is not complete
    with pytest.raises(IncompleteStoreError, match="killed.zarr"):
        read_store(path)


def test_a_store_without_the_complete_flag_is_rejected(tmp_path):
    import zarr

    path = tmp_path / "partial.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("features", shape=(10, 2), dtype="float16")  # chunks never written: zeros
    assert not is_complete(path)


def test_disk_full_while_writing_leaves_no_store_and_names_it(tmp_path, monkeypatch):
    import errno

    import zarr

    from vapipe.features.cache import StoreWriteError

    original = zarr.Group.create_array

    def fill_disk(self, name, **kwargs):
        if name == "valid":  # the features array is already on disk when the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, name, **kwargs)

    monkeypatch.setattr(zarr.Group, "create_array", fill_disk)
    path = tmp_path / "bb" / "trial.zarr"
    with pytest.raises(StoreWriteError, match=r"trial.zarr: cannot write feature store \(No space left on device\)"):
        write_store(path, np.ones((10, 2)), np.ones(10, bool), {})
    assert not path.exists() and list(path.parent.iterdir()) == []  # no half-written temp either
