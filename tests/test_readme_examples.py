"""The README's contributor examples, run as written: a backbone kind, a model and a dataset layout
(the fusion method's example runs in test_fusion.py). Each block follows a line
``<!-- example: NAME -->`` in README.md; registries are restored afterwards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, make_system, mini_dataset_config

from vapipe.data import manifest as manifest_module
from vapipe.data.affwild2 import index_crops
from vapipe.data.manifest import DatasetLayout, build_manifest
from vapipe.features import backbones
from vapipe.features.cache import read_store, store_path
from vapipe.features.extract import extract_shard
from vapipe.training.data import TrialData
from vapipe.training.system import load_system

README = (REPO / "README.md").read_text()


def example(name: str) -> str:
    """The fenced python block directly after ``<!-- example: name -->``."""
    lines = README.splitlines()
    marker = f"<!-- example: {name} -->"
    start = next(i for i, line in enumerate(lines) if line.strip() == marker)
    assert lines[start + 1].strip() == "```python", f"README: no ```python block right after {marker}"
    end = next(i for i in range(start + 2, len(lines)) if lines[i].strip() == "```")
    return "\n".join(lines[start + 2 : end]) + "\n"


@pytest.fixture
def run_example():
    """Exec a README example in a fresh namespace; every registry it touched is put back after."""
    from vapipe import models

    saved = [(r, dict(r)) for r in (backbones.BACKBONE_KINDS, models.MODELS, manifest_module.LAYOUTS)]

    def run(name: str) -> dict:
        namespace = {"__name__": f"readme_{name}"}
        exec(compile(example(name), f"README.md (example: {name})", "exec"), namespace)
        return namespace

    yield run
    for registry, content in saved:
        registry.clear()
        registry.update(content)


def test_the_backbone_example_embeds_every_crop_through_the_extraction_job(run_example, mini_dataset, tmp_path):
    run_example("backbone")
    manifest = build_manifest(DatasetLayout.from_config(mini_dataset_config(mini_dataset)))[0]
    spec = {"kind": "mean_colour", "id": "mean_colour", "input": "face", "batch_size": 4}
    summary = extract_shard("colour", spec, manifest, 0, 1, tmp_path, {})
    assert set(summary["status"]) == {"computed"}
    row = manifest.iloc[0]
    store = read_store(store_path(tmp_path, "colour", row.trial))
    crops = index_crops(row.crops_dir)
    first = min(crops)
    from PIL import Image

    expected = np.asarray(Image.open(crops[first]).convert("RGB"), np.float32).mean(axis=(0, 1)) / 255
    np.testing.assert_allclose(store.features[first - 1], expected, atol=2e-3)  # float16 store
    with pytest.raises(ValueError, match="backbones.colour.wieghts: unknown key; did you mean 'weights'"):
        backbones.create_backbone("colour", {**spec, "wieghts": None})


def test_the_model_example_trains_saves_and_loads_as_a_system(run_example, tmp_path):
    run_example("model")
    rng = np.random.default_rng(0)
    trials = []
    for i in range(3):
        labels = 0.5 * np.tanh(rng.normal(size=(80, 2)).cumsum(axis=0) / 6).astype(np.float32)
        face = np.concatenate([labels, rng.normal(size=(80, 3))], axis=1).astype(np.float32)
        trials.append(TrialData(f"t{i}", 10.0, {"face": face}, {"face": np.ones(80, bool)}, labels))
    system = make_system(
        "linear_av", {"dropout": 0.0}, window=40, stride=20, features=("face",), epochs=40, lr=0.05, batch_size=2
    )
    system.fit(trials[:2])
    assert system.score(trials[2:])["mean"] > 0.8  # the labels are in the features: a linear map finds them
    again = load_system(system.save(tmp_path / "linear"))
    np.testing.assert_array_equal(again.predict(trials[2])[1], system.predict(trials[2])[1])


def test_the_layout_example_reads_the_test_trials_from_the_example_file(run_example, mini_dataset):
    run_example("layout")
    config = mini_dataset_config(mini_dataset)
    reference = build_manifest(DatasetLayout.from_config(config))[0]
    test_list = mini_dataset / config["test_list"]
    test_list.unlink()  # this release has no test list
    without = {k: v for k, v in config.items() if k != "test_list"}
    with pytest.raises(ValueError, match="dataset.test_list is not set"):
        build_manifest(DatasetLayout.from_config(without))
    manifest = build_manifest(DatasetLayout.from_config({**without, "layout": "example_only"}))[0]
    pd.testing.assert_frame_equal(manifest, reference)


def test_a_registered_model_is_listed(run_example, capsys):
    from vapipe.cli import main

    run_example("model")
    assert main(["list", "models"]) == 0
    listed = capsys.readouterr().out.split()
    assert "linear_av" in listed and "kelm" in listed and "tcn_fusion" in listed
