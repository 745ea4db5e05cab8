"""The System contract, checked over every registered model and system kind (scikit-learn's
check_estimator idea): fit returns the system with its fitted state in `_` attributes, predict
gives times and values per row, and a saved checkpoint folder rebuilds the same predictions from
any working directory with nothing else on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_system

from vapipe.models import MODELS, create_model
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


# Padding: every neural model at its small settings, and the variants whose padding paths differ.
PADDING_DIMS = {"face_x": 7, "voice_y": 6}
PADDING_CASES = [(m, SMALL[m]) for m in known_models() if m in MODELS] + [
    ("dasp", {"hidden": 16, "temporal": "tcn", "fusion": "cross_attention"}),
    ("dasp", {"hidden": 16, "fusion": "gated", "gru_layers": 2}),
    ("dresvyanskiy_audio", {**SMALL["dresvyanskiy_audio"], "variant": "v2", "embed_dim": 16, "heads": 4}),
    ("dresvyanskiy_audio", {**SMALL["dresvyanskiy_audio"], "variant": "v3", "embed_dim": 16, "heads": 2}),
    ("iaca", {"hidden": 16, "fusion": "ca"}),
    ("iaca", {"hidden": 16, "fusion": "jca", "gating": False}),
    ("iaca", {"hidden": 16, "fusion": "tca", "encoder_layers": 2}),
    ("mstcn_cma", {"hidden": 8, "levels": 2, "kernel_sizes": (3, 5)}),
    ("sage", {"hidden": 16, "scale_by_length": False, "layers": 2}),
    ("tcn_fusion", {"hidden": 8, "levels": 3, "kernel_size": 5}),
]
LENGTH, REAL = 20, 12  # element 1 of the batch has REAL real steps, then padding


def test_every_neural_model_is_checked_for_padding():
    assert {m for m, _ in PADDING_CASES} == set(MODELS)


def padded_batch(seed: int = 0, padding_seed: int = 1) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Two windows of LENGTH steps; element 1 has REAL real steps and large random values on its padding."""
    g = torch.Generator().manual_seed(seed)
    x = {k: torch.randn(2, LENGTH, d, generator=g) for k, d in PADDING_DIMS.items()}
    g.manual_seed(padding_seed)
    for v in x.values():
        v[1, REAL:] = 1e3 * torch.randn(LENGTH - REAL, v.shape[-1], generator=g)
    mask = torch.ones(2, LENGTH, dtype=torch.bool)
    mask[1, REAL:] = False
    return x, mask


def outputs(out) -> list[torch.Tensor]:
    """A model's [B, T, ...] outputs: the predictions, then any auxiliary ones (DASP's region log-probs)."""
    if isinstance(out, tuple):
        return [out[0], *out[1].values()]
    return [out]


def case_id(case) -> str:
    """The model's name and the settings in which the case differs from SMALL."""
    model, params = case
    return model + "".join(
        f"-{k}={v}".replace(" ", "") for k, v in params.items() if SMALL[model].get(k) != v and k != "hidden"
    )


@pytest.mark.parametrize("model,params", PADDING_CASES, ids=[case_id(c) for c in PADDING_CASES])
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "autograd"])
def test_padded_steps_never_reach_the_real_ones(model, params, grad):
    """A window shorter than the batch's gives, on its real steps, what it gives alone and unpadded."""
    torch.manual_seed(0)
    net = create_model(model, PADDING_DIMS, **params).eval()
    x, mask = padded_batch()
    with torch.set_grad_enabled(grad):
        alone = outputs(net({k: v[1:, :REAL] for k, v in x.items()}))
        first = outputs(net({k: v[:1] for k, v in x.items()}))
        padded = outputs(net(x, padding_mask=mask))
        leaked = outputs(net(x))
        unmasked = outputs(net(x, padding_mask=torch.ones_like(mask)))
    for want, want_first, got, leak, plain in zip(alone, first, padded, leaked, unmasked, strict=True):
        assert got.shape[:2] == (2, LENGTH)
        torch.testing.assert_close(got[1, :REAL], want[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(got[0], want_first[0], rtol=0, atol=1e-5)  # the unpadded neighbour
        torch.testing.assert_close(plain, leak, rtol=0, atol=0)  # all real is the same as no mask
        # without the mask the padding leaks into the real steps: the check above can see a leak
        assert (leak[1, :REAL] - want[0]).abs().max() > 1e-3


@pytest.mark.parametrize("model,params", PADDING_CASES, ids=[case_id(c) for c in PADDING_CASES])
def test_padding_values_do_not_matter_in_training_mode(model, params):
    """Training mode (dropout, batch statistics): what the padded steps hold changes no real step."""
    torch.manual_seed(0)
    net = create_model(model, PADDING_DIMS, **params).train()
    runs = []
    for padding_seed in (1, 2):
        x, mask = padded_batch(padding_seed=padding_seed)
        torch.manual_seed(3)  # the same dropout draws
        runs.append(outputs(net(x, padding_mask=mask)))
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(a[1, :REAL], b[1, :REAL], rtol=0, atol=1e-5)


@pytest.mark.parametrize("bad", ["left", "hole", "empty", "shape"])
def test_a_padding_mask_must_be_right_padding_of_the_batch(bad):
    torch.manual_seed(0)
    net = create_model("tcn_fusion", PADDING_DIMS, **SMALL["tcn_fusion"]).eval()
    x, mask = padded_batch()
    if bad == "left":
        mask[1] = mask[1].flip(0)
    elif bad == "hole":
        mask[0, 5] = False
    elif bad == "empty":
        mask[1] = False
    else:
        mask = mask[:, :-1]
    with pytest.raises(ValueError, match="padding_mask"):
        net(x, padding_mask=mask)
