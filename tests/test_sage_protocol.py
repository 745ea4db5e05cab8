"""SAGE's fold protocol (paper 000, sec. 4.1 and 4.3.2; issue 13.2): K folds within the official
Train_Set, every fold scored on the official validation set, per target the fold with the best
validation CCC, a nested score beside the selected one, and the Table 2 submission from the
selected folds."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from vapipe.data.folds import make_folds, split_fold, video_halves, within_train_fold_names
from vapipe.errors import ConfigError
from vapipe.evaluation.metrics import ccc
from vapipe.evaluation.paper_rows import (
    load_paper_rows,
    materialize_rows,
    nested_targetwise_scores,
    paper_table,
    row_record,
    row_scores,
)
from vapipe.evaluation.scoring import score_folds
from vapipe.specs import FoldsSpec
from vapipe.submission import select_test_predictions

REPO = Path(__file__).resolve().parents[1]


def manifest_of(videos: dict[str, tuple[str, list[str], int]]) -> pd.DataFrame:
    """Manifest rows: {video: (split, [trials], rows per trial)}."""
    rows = [
        {"trial": trial, "video": video, "split": split, "n_rows": n_rows}
        for video, (split, trials, n_rows) in videos.items()
        for trial in trials
    ]
    return pd.DataFrame(rows)


def dataset(n_train: int = 9, n_validation: int = 5) -> pd.DataFrame:
    """Train videos t0.. (t0 has two people), validation videos v0.. (v1 has two people), two test videos."""
    videos = {}
    for i in range(n_train):
        videos[f"t{i}"] = ("Train_Set", [f"t{i}_left", f"t{i}_right"] if i == 0 else [f"t{i}"], 100 + 10 * i)
    for i in range(n_validation):
        videos[f"v{i}"] = ("Validation_Set", [f"v{i}_left", f"v{i}_right"] if i == 1 else [f"v{i}"], 80 + 7 * i)
    videos["x0"] = ("Test_Set", ["x0"], 50)
    videos["x1"] = ("Test_Set", ["x1"], 60)
    return manifest_of(videos)


def test_within_train_folds_never_train_on_validation_and_are_scored_on_all_of_it():
    manifest = dataset()
    folds = make_folds(manifest, k=3, seed=0, train_k=4)
    split = manifest.set_index("trial")["split"]
    validation = sorted(manifest.loc[manifest["split"] == "Validation_Set", "trial"])
    left_out = []
    for fold in within_train_fold_names(4):
        train, heldout, test = split_fold(folds, fold)
        assert set(split[train]) == {"Train_Set"}, fold  # no validation (or test) video in training
        assert sorted(heldout) == validation, fold  # every fold is scored on the whole validation set
        assert sorted(test) == ["x0", "x1"]
        part = folds[(folds["split"] == "Train_Set") & ~folds["trial"].isin(train)]["trial"].tolist()
        assert part, fold
        left_out += part
    # the left-out parts partition Train_Set, and both people of t0 are always on the same side
    assert sorted(left_out) == sorted(split[split == "Train_Set"].index)
    by_trial = folds.set_index("trial")["train_kfold"]
    assert by_trial["t0_left"] == by_trial["t0_right"] >= 0
    assert (folds.loc[folds["split"] != "Train_Set", "train_kfold"] == -1).all()


def test_the_k_folds_over_train_and_validation_stay_as_they_were():
    manifest = dataset()
    with_train_k = make_folds(manifest, k=3, seed=0, train_k=4)
    without = make_folds(manifest, k=3, seed=0)
    assert with_train_k["kfold"].tolist() == without["kfold"].tolist()
    train, heldout, _ = split_fold(with_train_k, "k1")
    assert {"Validation_Set", "Train_Set"} <= set(manifest.set_index("trial").loc[train + heldout, "split"])
    # only the k folds pool to out-of-fold; the within-train folds all hold out the validation set
    spec = FoldsSpec(k=3, train_k=4)
    assert spec.names() == ["official", "k0", "k1", "k2"]  # every system's default folds: unchanged
    assert spec.all_names()[-4:] == ["train_k0", "train_k1", "train_k2", "train_k3"]


def test_too_many_within_train_folds_name_the_setting():
    with pytest.raises(ValueError, match=r"folds.train_k = 10 exceeds the 9 Train_Set videos"):
        make_folds(dataset(), k=3, seed=0, train_k=10)


def test_sage_rows_train_the_within_train_folds_in_both_configs():
    from test_paper_rows import load_config

    papers = load_paper_rows(REPO / "config/rows.yaml")
    for name in ("config/config.yaml", "config/affwild2.yaml"):
        config = load_config(name)
        systems, _ = materialize_rows(config, papers)
        assert systems["sage_paper"]["folds"] == within_train_fold_names(config["folds"]["train_k"])
        assert config["folds"]["train_k"] >= 2
    rows = papers["sage"]["rows"]
    assert rows["t1_ours"]["score"] == rows["t2_ours"]["score"] == "targetwise"
    assert rows["t2_ours"]["submission"] == "targetwise"
    config = load_config("config/config.yaml")
    config["folds"] = {**config["folds"], "train_k": 0}
    with pytest.raises(ConfigError, match="'folds: within_train' needs folds.train_k"):
        materialize_rows(config, papers)


def metrics_table(rows: dict[str, tuple[float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"fold": f, "valence": v, "arousal": a, "mean": (v + a) / 2, "n_frames": 500} for f, (v, a) in rows.items()]
    )


# Validation CCC per fold; the K folds over train+validation score higher but must not compete.
METRICS = metrics_table(
    {
        "train_k0": (0.40, 0.61),
        "train_k1": (0.52, 0.55),
        "train_k2": (0.47, 0.66),
        "k0": (0.90, 0.90),
        "kfold_pooled": (0.95, 0.95),
    }
)


def test_targetwise_selection_takes_per_target_the_best_validation_fold():
    what, scores = row_scores(METRICS, "targetwise")
    assert "valence train_k1, arousal train_k2" in what and "selected on these frames" in what
    assert scores["valence"] == 0.52 and scores["arousal"] == 0.66
    assert scores["mean"] == pytest.approx(0.59)
    with pytest.raises(ValueError, match="needs folds within Train_Set"):
        row_scores(METRICS[METRICS["fold"].str.startswith("k")], "targetwise")


def write_validation_set(tmp_path: Path, seed: int = 0):
    """Four validation videos (v1 with two people) with annotation files, and their halves."""
    manifest = manifest_of(
        {
            "v0": ("Validation_Set", ["v0"], 40),
            "v1": ("Validation_Set", ["v1_left", "v1_right"], 30),
            "v2": ("Validation_Set", ["v2"], 50),
            "v3": ("Validation_Set", ["v3"], 45),
            "v4": ("Validation_Set", ["v4"], 35),
        }
    )
    rng = np.random.default_rng(seed)
    labels = {}
    for trial, n_rows in zip(manifest["trial"], manifest["n_rows"]):
        labels[trial] = np.clip(np.cumsum(rng.normal(0, 0.1, (n_rows, 2)), axis=0), -1, 1).round(3)
        path = tmp_path / f"{trial}.txt"
        path.write_text("valence,arousal\n" + "".join(f"{v},{a}\n" for v, a in labels[trial]))
    manifest["annotation_path"] = [str(tmp_path / f"{t}.txt") for t in manifest["trial"]]
    return manifest, labels


def frames_table(labels: dict[str, np.ndarray], predict) -> pd.DataFrame:
    parts = []
    for trial, y in labels.items():
        p = predict(trial, y)
        parts.append(
            pd.DataFrame(
                {
                    "trial": trial,
                    "frame": np.arange(1, len(y) + 1),
                    "valence": p[:, 0],
                    "arousal": p[:, 1],
                    "set": "heldout",
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_the_nested_score_chooses_on_one_half_of_the_videos_and_scores_the_other(tmp_path):
    manifest, labels = write_validation_set(tmp_path)
    first, second = video_halves(manifest, list(manifest["trial"]), seed=0)
    assert first and second and not set(first) & set(second)
    assert sorted(first + second) == sorted(manifest["trial"])
    assert {"v1_left", "v1_right"} <= set(first) or {"v1_left", "v1_right"} <= set(second)
    # fold a is perfect on the first half and inverted on the second, fold b the other way round
    fold_a = frames_table(labels, lambda t, y: y if t in first else -y)
    fold_b = frames_table(labels, lambda t, y: -y if t in first else y)
    nested = nested_targetwise_scores({"train_k0": fold_a, "train_k1": fold_b}, manifest, seed=0)
    # Choosing on the first half picks a, which is inverted on the second half, and the other way
    # round: the nested score is that of inverted predictions. Choosing and scoring on the same half
    # (the selected score's optimism) would give +1.
    for column, target in enumerate(("valence", "arousal")):
        inverted = [
            ccc(
                -np.concatenate([labels[t][:, column] for t in half]),
                np.concatenate([labels[t][:, column] for t in half]),
            )
            for half in (second, first)
        ]
        assert max(inverted) < 0
        assert nested[target] == pytest.approx(np.mean(inverted), abs=1e-6)
    assert nested["choices"] == [
        {"valence": "train_k0", "arousal": "train_k0"},
        {"valence": "train_k1", "arousal": "train_k1"},
    ]


def test_the_nested_score_is_the_mean_of_both_directions(tmp_path):
    manifest, labels = write_validation_set(tmp_path, seed=1)
    first, second = video_halves(manifest, list(manifest["trial"]), seed=3)
    rng = np.random.default_rng(5)
    noisy = {f: {t: y + rng.normal(0, s, y.shape) for t, y in labels.items()} for f, s in (("a", 0.05), ("b", 0.2))}
    folds = {f"train_k{i}": frames_table(labels, lambda t, y, f=f: noisy[f][t]) for i, f in enumerate(noisy)}
    nested = nested_targetwise_scores(folds, manifest, seed=3)

    def pooled(fold: str, trials: list[str], column: int) -> float:
        keep = [t for t in labels if t in trials]
        return ccc(
            np.concatenate([noisy[fold][t][:, column] for t in keep]),
            np.concatenate([labels[t][:, column] for t in keep]),
        )

    for column, target in enumerate(("valence", "arousal")):
        expected = []
        for choose, score in ((first, second), (second, first)):
            best = max(("a", "b"), key=lambda f: pooled(f, choose, column))
            expected.append(pooled(best, score, column))
        assert nested[target] == pytest.approx(np.mean(expected), abs=1e-6)
    assert nested["mean"] == pytest.approx((nested["valence"] + nested["arousal"]) / 2)


def test_folds_that_hold_out_different_trials_are_not_compared(tmp_path):
    manifest, labels = write_validation_set(tmp_path)
    full = frames_table(labels, lambda t, y: y)
    with pytest.raises(ValueError, match="fold 'train_k1' holds out other trials"):
        nested_targetwise_scores({"train_k0": full, "train_k1": full[full["trial"] != "v0"]}, manifest, seed=0)


def test_scores_pool_only_the_k_folds_out_of_fold(tmp_path):
    manifest, labels = write_validation_set(tmp_path)
    frames = {f: frames_table(labels, lambda t, y: y * 0.5) for f in ("train_k0", "train_k1")}
    table = score_folds(frames, manifest)
    assert table["fold"].tolist() == ["train_k0", "train_k1"]  # no pooled row over one set scored twice


def test_the_table_2_submission_takes_each_target_from_its_selected_fold():
    folds = ["train_k0", "train_k1", "train_k2"]
    test_rows = pd.DataFrame({"trial": "x0", "frame": np.arange(1, 6), "set": "test"})
    frames = {fold: test_rows.assign(valence=0.1 * (i + 1), arousal=-0.1 * (i + 1)) for i, fold in enumerate(folds)}
    metrics = METRICS[METRICS["fold"].isin(folds)]
    predictions, sources = select_test_predictions(frames, metrics, "targetwise")
    assert sources == {"valence": ["train_k1"], "arousal": ["train_k2"]}
    assert np.allclose(predictions["valence"], 0.2) and np.allclose(predictions["arousal"], -0.3)
    # the submission's folds are the ones the row reports
    assert "valence train_k1, arousal train_k2" in row_scores(METRICS, "targetwise")[0]


def test_the_rows_report_the_selected_and_the_nested_score_and_the_submission():
    from test_paper_rows import load_config

    config = load_config("config/config.yaml")
    papers = load_paper_rows(REPO / "config/rows.yaml")
    systems, fusions = materialize_rows(config, papers)
    config["systems"].update(systems)
    config["fusions"] = fusions
    nested = {
        "valence": 0.31,
        "arousal": 0.45,
        "mean": 0.38,
        "choices": [{"valence": "train_k1", "arousal": "train_k2"}] * 2,
    }
    rows = papers["sage"]["rows"]
    t1 = row_record("sage", "t1_ours", rows["t1_ours"], config, METRICS, nested=nested)
    assert (t1["ours_valence"], t1["ours_arousal"], t1["nested_mean"]) == (0.52, 0.66, 0.38)
    with pytest.raises(ValueError, match="nested score"):
        row_record("sage", "t1_ours", rows["t1_ours"], config, METRICS)
    path = "results/rows/sage/t2_ours.submission.zip"
    t2 = row_record("sage", "t2_ours", rows["t2_ours"], config, METRICS, nested=nested, submission=path)
    assert t2["submission"].startswith(path)
    text = paper_table("SAGE", [t1, t2])
    assert "selected on these frames" in text and "0.310 / 0.450 / 0.380" in text and path in text


def test_a_row_submission_must_name_a_fold_selection(tmp_path):
    rows = yaml.safe_load((REPO / "config/rows.yaml").read_text())
    rows["sage"]["rows"]["t2_ours"]["submission"] = "best"
    path = tmp_path / "rows.yaml"
    path.write_text(yaml.safe_dump(rows))
    with pytest.raises(ConfigError, match="sage.rows.t2_ours: 'submission' is a system row's fold selection"):
        load_paper_rows(path)


@pytest.mark.slow
def test_the_sage_rows_plan_the_within_train_folds_and_table_2_its_submission(tmp_path):
    """On the tiny demo (folds.train_k: 2): the rows train train_k0 and train_k1 only, never a fold
    that sees the validation set, and Table 2's row writes its own submission."""
    import re

    from test_workflow import planned_jobs, snakemake

    built = snakemake(tmp_path, "--cores", "2", "results/folds.tsv")
    assert built.returncode == 0, built.stderr[-3000:]
    folds = pd.read_csv(tmp_path / "results/folds.tsv", sep="\t")
    assert (folds.loc[folds["split"] != "Train_Set", "train_kfold"] == -1).all()
    assert sorted(folds.loc[folds["split"] == "Train_Set", "train_kfold"].unique()) == [0, 1]
    stage1 = {"embed_audio", "embed_faces", "extract_audio"}
    for row, extra in (("t1_ours", {}), ("t2_ours", {"write_row_submission": 1})):
        plan = snakemake(tmp_path, "-n", "--cores", "2", f"results/rows/sage/{row}.tsv")
        jobs = {k: v for k, v in planned_jobs(plan).items() if k not in stage1}
        assert jobs == {"train_fold": 2, "postprocess_predictions": 2, "score_system": 1, "paper_row": 1, **extra}
        assert set(re.findall(r"system=sage_paper, fold=(\w+)", plan.stdout)) == {"train_k0", "train_k1"}


def test_a_system_may_list_the_within_train_folds_the_config_builds():
    from test_paper_rows import load_config

    from vapipe.config import check_config

    config = load_config("config/config.yaml")
    systems, fusions = materialize_rows(config, load_paper_rows(REPO / "config/rows.yaml"))
    config["systems"].update(systems)
    config["fusions"] = {**config.get("fusions", {}), **fusions}
    spec = check_config(config)
    assert spec.system_folds("sage_paper", spec.fold_names()) == within_train_fold_names(5)
    assert "train_k0" not in spec.system_folds("tcn_av", spec.fold_names())  # not a default fold
    config["systems"]["sage"]["folds"] = ["train_k5"]
    with pytest.raises(ConfigError, match="systems.sage.folds names 'train_k5', but the folds are official, k0"):
        check_config(config)
