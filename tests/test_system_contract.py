"""The System contract, checked over every registered model and system kind (scikit-learn's
check_estimator idea): fit returns the system with its fitted state in `_` attributes, predict
gives times and values per row, and a saved checkpoint folder rebuilds the same predictions from
any working directory with nothing else on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_system

from vapipe.training.data import TrialData
from vapipe.training.system import CONFIG_FILE, WEIGHTS_FILE, known_models, list_systems, load_system

pytestmark = pytest.mark.usefixtures("single_thread")

FEATURES = ("face_x", "voice_y")
# Small settings per model so each fits in a second; every other setting is the model's default.
SMALL = {
    "dasp": {"hidden": 16, "prototypes": np.random.default_rng(0).normal(size=(9, 8)).astype(np.float32).tolist()},
    "dresvyanskiy_audio": {"features": "voice_y", "variant": "v1", "gru_hidden": 16, "head_hidden": 8},
    "dresvyanskiy_face": {"features": "face_x", "embed_dim": 16, "heads": 2, "layers": 1},
    "iaca": {"hidden": 16},
    "mstcn_cma": {"hidden": 16},
    "sage": {"hidden": 16},
    "tcn_fusion": {"hidden": 8, "levels": 1},
    "kelm": {"window_seconds": 0.5, "step_seconds": 0.25},
}


def trials(n: int, seed: int, rows: int = 60) -> list[TrialData]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        labels = np.tanh(rng.normal(size=(rows, 2)).cumsum(axis=0) / 5).astype(np.float32)
        inputs = {
            "face_x": np.concatenate([labels, rng.normal(size=(rows, 4))], axis=1).astype(np.float32),
            "voice_y": rng.normal(size=(rows, 5)).astype(np.float32),
        }
        out.append(TrialData(f"s{seed}t{i}", 10.0, inputs, {n: np.ones(rows, bool) for n in FEATURES}, labels))
    return out


def test_every_model_is_built_by_exactly_one_system_kind():
    kinds = list_systems()
    assert sorted(m for models in kinds.values() for m in models) == known_models()
    assert set(SMALL) == set(known_models()), "give a new model small settings here"


@pytest.mark.parametrize("model", known_models())
def test_system_contract(model, tmp_path, monkeypatch):
    system = make_system(model, SMALL[model], window=20, stride=10, features=FEATURES, epochs=1, batch_size=2)
    before = set(vars(system))
    train, validation, test = trials(3, 0), trials(2, 1), trials(1, 2)[0]
    assert system.fit(train, validation=validation) is system
    fitted = set(vars(system)) - before
    assert fitted and all(name.endswith("_") for name in fitted), fitted
    assert isinstance(system.history_, list) and system.history_

    times, values = system.predict(test)
    assert values.shape == (len(times), 2) and np.all(np.diff(times) > 0)
    assert times[0] >= 0 and times[-1] <= test.n_rows / test.fps

    folder = system.save(tmp_path / "checkpoint", {"system": model, "fold": "k0"})
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["spec"]["model"] == model and config["kind"] == system.kind
    assert "pickle" not in (folder / WEIGHTS_FILE).read_bytes()[:200].decode("latin-1")
    monkeypatch.chdir(tmp_path / "checkpoint")  # another working directory
    again = load_system(folder)
    for got, want in zip(again.predict(test), (times, values)):
        np.testing.assert_array_equal(got, want)
    # a missing feature row changes the prediction: drop reaches the model through the contract
    every_other = np.arange(test.n_rows) % 2 == 0
    dropped = again.predict(test, {name: every_other for name in FEATURES})[1]
    assert not np.array_equal(dropped, values)


def test_a_checkpoint_without_its_weights_is_named(tmp_path):
    system = make_system("tcn_fusion", SMALL["tcn_fusion"], window=20, stride=10, features=FEATURES, epochs=1)
    folder = system.fit(trials(2, 0)).save(tmp_path / "c")
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(ValueError, match=f"{WEIGHTS_FILE}: the checkpoint's weights are missing"):
        load_system(folder)
    with pytest.raises(ValueError, match="no checkpoint config"):
        load_system(tmp_path)
