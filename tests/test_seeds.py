"""Seeds: one system per seed, their average, their spread, and a DAG that multiplies only their jobs."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from test_workflow import planned_jobs

from vapipe.errors import ConfigError
from vapipe.evaluation.seeds import average_seed_predictions, seed_summary
from vapipe.specs import PipelineSpec, seed_ensembles


def _config(**system_overrides):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["systems"]["tcn_av"].update(system_overrides)
    return config


def test_each_seed_is_its_own_system_differing_only_in_the_training_seed():
    spec = PipelineSpec.from_config(_config(seeds=[3, 7]))
    members = {name: s for name, s in spec.systems.items() if name.startswith("tcn_av_seed")}
    assert sorted(members) == ["tcn_av_seed3", "tcn_av_seed7"]
    assert [members[n].train.seed for n in sorted(members)] == [3, 7]
    base = spec.systems["tcn_av"]
    for member in members.values():
        assert member.seeds is None
        assert member.model == base.model and member.params == base.params and member.features == base.features
        assert member.train.epochs == base.train.epochs and member.train.lr == base.train.lr
    assert "tcn_av" in seed_ensembles(spec.systems) and "sage" not in seed_ensembles(spec.systems)
    # the plain form expands to the same spec again (the Snakefile builds it twice)
    assert PipelineSpec.from_config(spec.to_dict()).systems == spec.systems


def test_one_seed_only_sets_the_training_seed():
    spec = PipelineSpec.from_config(_config(seeds=[5]))
    assert spec.systems["tcn_av"].train.seed == 5
    assert not [n for n in spec.systems if n.startswith("tcn_av_seed")]


def test_a_repeated_seed_or_a_taken_member_name_is_an_error():
    with pytest.raises(ConfigError, match=r"systems.tcn_av.seeds: a seed is listed twice"):
        PipelineSpec.from_config(_config(seeds=[1, 1]))
    config = _config(seeds=[0, 1])
    config["systems"]["tcn_av_seed1"] = dict(config["systems"]["sage"])
    with pytest.raises(ConfigError, match="systems.tcn_av_seed1: the name is taken by seed 1 of systems.tcn_av"):
        PipelineSpec.from_config(config)


def _raw(values, times=(0.0, 0.5, 1.0)):
    return pd.DataFrame(
        {"trial": "a", "time": list(times), "valence": values, "arousal": [-v for v in values], "set": "heldout"}
    )


def test_seed_average_is_frame_wise_and_refuses_misaligned_rows():
    averaged = average_seed_predictions({"s0": _raw([0.1, 0.2, 0.3]), "s1": _raw([0.3, 0.0, -0.3])})
    np.testing.assert_allclose(averaged["valence"], [0.2, 0.1, 0.0])
    np.testing.assert_allclose(averaged["arousal"], [-0.2, -0.1, 0.0])
    assert list(averaged.columns) == ["trial", "time", "valence", "arousal", "set"]
    with pytest.raises(ValueError, match="s1: its rows .* differ from s0's"):
        average_seed_predictions({"s0": _raw([0.1, 0.2, 0.3]), "s1": _raw([0.1, 0.2, 0.3], times=(0, 0.4, 1))})


def test_seed_summary_gives_mean_and_sample_sd_per_fold():
    metrics = {
        seed: pd.DataFrame({"fold": ["official", "k0"], "valence": [v, v / 2], "arousal": [a, a], "mean": [m, m]})
        for seed, v, a, m in ((0, 0.5, 0.4, 0.45), (1, 0.7, 0.4, 0.55), (2, 0.6, 0.4, 0.5))
    }
    summary = seed_summary(metrics).set_index("fold")
    assert summary.loc["official", "valence_mean"] == pytest.approx(0.6)
    assert summary.loc["official", "valence_sd"] == pytest.approx(0.1)  # ddof 1
    assert summary.loc["k0", "valence_mean"] == pytest.approx(0.3)
    assert summary.loc["official", "arousal_sd"] == pytest.approx(0.0, abs=1e-12)
    assert summary.loc["official", "n_seeds"] == 3


def _dry_run(workdir, *configs, target="results/submission.zip"):
    command = [sys.executable, "-m", "snakemake", target, "-n", "--cores", "1", "--snakefile", str(REPO / "Snakefile")]
    command += ["--directory", str(workdir), "--configfile", str(REPO / "config/config.yaml"), *map(str, configs)]
    return subprocess.run(command, capture_output=True, text=True, cwd=workdir)


@pytest.mark.slow
def test_seeds_multiply_only_the_jobs_of_their_system(tmp_path):
    override = tmp_path / "seeds.yaml"
    override.write_text(yaml.safe_dump({"systems": {"tcn_av": {"seeds": [0, 1, 2]}}}))
    one = planned_jobs(_dry_run(tmp_path))
    three = planned_jobs(_dry_run(tmp_path, override))
    folds = 6  # tcn_av trains the official fold and 5 K folds
    assert three["train_fold"] == one["train_fold"] + 2 * folds  # 3 models per fold instead of 1
    assert three["average_seed_predictions"] == folds
    for job in set(one) - {"train_fold"}:
        assert three[job] == one[job], job  # extraction, masks, folds, post-processing: once, as without seeds


def test_a_table_cell_gives_the_seed_spread_and_the_video_interval():
    from vapipe.evaluation.tables import ccc_cell

    row = pd.Series({"mean": 0.61234, "mean_low": 0.4012, "mean_high": 0.7049})
    seeds = pd.Series({"mean_sd": 0.0213})
    assert ccc_cell(row, "mean", seeds) == "0.612 ± 0.021 [0.40, 0.70]"
    assert ccc_cell(row[["mean"]], "mean") == "0.612"


class _Constant:
    """A stand-in trained system: fixed outputs at fixed times."""

    def __init__(self, times, values):
        self.times, self.values = np.asarray(times), np.asarray(values, dtype=float)

    def predict(self, trial, drop=None):
        return self.times, self.values


def test_a_seed_average_predicts_the_mean_of_its_seeds_and_refuses_different_times():
    from types import SimpleNamespace

    from vapipe.training.system import SeedAverage

    trial = SimpleNamespace(trial="a")
    average = SeedAverage([_Constant([0, 1], [[0.2, 0.4], [0.0, 0.0]]), _Constant([0, 1], [[0.4, 0.0], [0.2, -0.2]])])
    times, values = average.predict(trial)
    np.testing.assert_allclose(values, [[0.3, 0.2], [0.1, -0.1]])
    with pytest.raises(ValueError, match="trial a: the seeds predict at different times"):
        SeedAverage([_Constant([0, 1], [[0, 0], [0, 0]]), _Constant([0, 2], [[0, 0], [0, 0]])]).predict(trial)
