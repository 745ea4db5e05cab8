"""Markdown tables of the systems' scores (results/tables/*.md)."""

from __future__ import annotations

import pandas as pd


def headline_row(metrics: pd.DataFrame) -> pd.Series:
    """The score a table reports for a system: the official validation fold if it was trained,
    otherwise the pooled out-of-fold score over the K folds, otherwise the only fold; for a fused
    system its cross-fitted, smoothed held-out score (`vapipe.fusion.run.HEADLINE_ROW`)."""
    indexed = metrics.set_index("fold")
    for fold in ("official", "kfold_pooled", "grouped_cv_smoothed"):
        if fold in indexed.index:
            return indexed.loc[fold].rename(fold)
    if len(indexed) == 1:
        return indexed.iloc[0].rename(indexed.index[0])
    raise ValueError(f"metrics with folds {list(indexed.index)} have no official or pooled row")


def models_table(metrics: dict[str, pd.DataFrame], systems: dict[str, dict], note: str) -> str:
    """One row per system: model, features, the fold scored, CCC valence / arousal / mean."""
    lines = [note, "", "| system | model | features | scored on | valence | arousal | mean |",
             "|---|---|---|---|---|---|---|"]
    for name, table in metrics.items():
        row = headline_row(table)
        system = systems[name]
        params = system.get("params", {})
        variant = ", ".join(f"{k} {str(params[k]).lower()}" for k in ("fusion", "gating", "variant", "temporal") if k in params)
        model = system["model"] + (f" ({variant})" if variant else "")
        lines.append(
            f"| {name} | {model} | {', '.join(system['features'])} | {row.name} ({int(row['n_frames'])} frames) "
            f"| {row['valence']:.3f} | {row['arousal']:.3f} | {row['mean']:.3f} |"
        )
    return "\n".join(lines) + "\n"
