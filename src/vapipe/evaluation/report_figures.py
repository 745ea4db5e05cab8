"""Report figures about how far a number can be trusted: learning curves, a forest plot of every paper
row's score with its interval beside the paper's number, and the paired differences of the comparisons
the papers make (vapipe.evaluation.bootstrap)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from vapipe.evaluation.figures import _pyplot

CURVE_COLUMNS = ["run", "epoch", "loss", "heldout_ccc", "validation_ccc"]


def learning_curve_table(histories: Mapping[str, list[dict]]) -> pd.DataFrame:
    """One row per run and epoch: training loss, held-out CCC (mean of valence and arousal on the fold's
    held-out trials, when the run monitored them) and the early-stopping split's CCC (when it had one)."""
    rows = []
    for run, history in histories.items():
        for record in history:
            rows.append(
                {
                    "run": run,
                    "epoch": int(record["epoch"]),
                    "loss": float(record.get("loss", np.nan)),  # a closed-form fit (KELM) has none
                    "heldout_ccc": float(record.get("monitor_mean", np.nan)),
                    "validation_ccc": float(record.get("validation_mean", np.nan)),
                }
            )
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def learning_curves_figure(curves: pd.DataFrame, title: str, path) -> None:
    """Loss (left) and held-out CCC (right, dashed: the early-stopping split) per epoch, a line per run."""
    plt = _pyplot()
    fig, (loss_ax, ccc_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (run, table) in enumerate(curves.groupby("run", sort=False)):
        colour = colours[i % len(colours)]
        loss_ax.plot(table["epoch"], table["loss"], color=colour, linewidth=1.0, label=run)
        if table["heldout_ccc"].notna().any():
            ccc_ax.plot(table["epoch"], table["heldout_ccc"], color=colour, linewidth=1.0, label=f"{run} held-out")
        if table["validation_ccc"].notna().any():
            ccc_ax.plot(table["epoch"], table["validation_ccc"], color=colour, linewidth=1.0, linestyle="--")
    loss_ax.set(xlabel="epoch", ylabel="training loss: sum of 1 - CCC (+ auxiliary)", title="loss")
    ccc_ax.set(xlabel="epoch", ylabel="mean CCC", title="held-out CCC (dashed: early-stopping split)")
    loss_ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# The paper's number a row is drawn beside: its held-out split (our scores are held-out scores too).
FOREST_SPLITS = ("validation", "development")


def paper_mean(record: Mapping, splits=FOREST_SPLITS) -> float:
    """The paper's mean CCC of a row on its first held-out split it prints: the printed mean, or
    the mean of its printed valence and arousal; NaN if it prints neither."""
    for split in splits:
        mean = record.get(f"paper_{split}_mean")
        if mean is not None and pd.notna(mean):
            return float(mean)
        pair = [record.get(f"paper_{split}_{t}") for t in ("valence", "arousal")]
        if all(v is not None and pd.notna(v) for v in pair):
            return float(np.mean(pair))
    return np.nan


def forest_table(records: list[Mapping]) -> pd.DataFrame:
    """One line per reproduced paper row: label, ours (mean CCC), its interval, the paper's number."""
    rows = [
        {
            "label": f"{r['paper']} T{r['table']}: {r['label']}",
            "ours": float(r["ours_mean"]),
            "low": float(r.get("ours_mean_low", np.nan)),
            "high": float(r.get("ours_mean_high", np.nan)),
            "paper": paper_mean(r),
        }
        for r in records
        if pd.notna(r.get("ours_mean"))
    ]
    table = pd.DataFrame(rows, columns=["label", "ours", "low", "high", "paper"])
    # a row without an interval (a target-wise selection) is drawn as a point
    table["low"] = table["low"].fillna(table["ours"])
    table["high"] = table["high"].fillna(table["ours"])
    return table


def forest_plot(rows: pd.DataFrame, title: str, path) -> None:
    """Every row's mean CCC with its bootstrap interval (dots, bars) beside the paper's number (crosses).

    `rows`: label, ours, low, high, paper (NaN where the paper prints none), one line per row, drawn in
    the given order from the top."""
    reversed_bounds = rows[rows["low"] > rows["high"]]
    if len(reversed_bounds):  # a mix-up of columns, not an interval
        row = reversed_bounds.iloc[0]
        raise ValueError(f"{row['label']}: interval [{row['low']}, {row['high']}] has its bounds reversed")
    # The bars are drawn from the bounds: a percentile interval may (rarely) not hold its estimate.
    plt = _pyplot()
    y = np.arange(len(rows))[::-1]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.3 * len(rows)))
    ax.errorbar(
        rows["ours"],
        y,
        xerr=[(rows["ours"] - rows["low"]).clip(lower=0), (rows["high"] - rows["ours"]).clip(lower=0)],
        fmt="o",
        color="tab:blue",
        markersize=4,
        capsize=2,
        label="ours, 95% interval over videos",
    )
    printed = rows["paper"].notna()
    ax.scatter(rows.loc[printed, "paper"], y[printed.to_numpy()], marker="x", color="tab:red", label="paper")
    ax.set_yticks(y, rows["label"], fontsize=7)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel("mean CCC (valence, arousal)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def paired_differences_figure(comparisons: pd.DataFrame, title: str, path) -> None:
    """Each comparison's mean-CCC difference (A - B) with its paired interval; the share of resamples in
    which A wins is printed beside it. `comparisons`: label, difference, low, high, share_positive."""
    plt = _pyplot()
    y = np.arange(len(comparisons))[::-1]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.35 * len(comparisons)))
    diff = comparisons["difference"]
    ax.errorbar(diff, y, xerr=[diff - comparisons["low"], comparisons["high"] - diff], fmt="o", capsize=2, markersize=4)
    for yi, (_, row) in zip(y, comparisons.iterrows(), strict=True):
        ax.annotate(
            f"P(A>B) {row['share_positive']:.2f}",
            (row["high"], yi),
            xytext=(4, -3),
            textcoords="offset points",
            fontsize=7,
        )
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, comparisons["label"], fontsize=7)
    ax.set_xlabel("difference of mean CCC, A - B (paired bootstrap over videos)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
