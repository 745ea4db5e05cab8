"""The comparisons the papers make, judged by a paired bootstrap over the same videos.

A paper block of config/rows.yaml may list ``comparisons``; each names two sides and the paper's claim
that side A beats side B. A side is a row of the paper (``{row: t2_ca_iaca}``: its system and fold, or
its fused system), or a system and a fold (``{system: sage_concat, fold: official}``) for a variant the
paper argues against without printing a number. Both sides are scored on the same held-out frames,
and the difference of their pooled mean CCC gets a paired interval over base videos
(`vapipe.evaluation.bootstrap.paired_bootstrap`). The verdict says whether our data back the claim:
``holds`` (the whole interval above zero), ``reversed`` (below zero) or ``not resolved``.
"""

from __future__ import annotations

import pandas as pd

from vapipe.errors import ConfigError

SIDE_KEYS = ({"row"}, {"system", "fold"}, {"fusion"})
COMPARISON_KEYS = {"a", "b", "claim"}
COLUMNS = [
    "comparison",
    "a",
    "b",
    "claim",
    "difference",
    "low",
    "high",
    "share_positive",
    "valence_difference",
    "arousal_difference",
    "verdict",
]


def resolve_side(side, paper: dict, where: str, fusions) -> dict:
    """{'system', 'fold'} or {'fusion'} of a comparison side; errors name the rows-file path."""
    if not isinstance(side, dict) or set(side) not in SIDE_KEYS:
        raise ConfigError(f"{where}: expected {{row: ..}}, {{system: .., fold: ..}} or {{fusion: ..}}, got {side!r}")
    if "row" in side:
        row = paper["rows"].get(side["row"])
        if row is None:
            raise ConfigError(f"{where}: row '{side['row']}' is not a row of this paper")
        if "fusion" in row:
            return {"fusion": row["fusion"]}
        score = row.get("score")
        if not score or score in ("kfold_pooled", "targetwise") or score.endswith("_voiced"):
            raise ConfigError(f"{where}: row '{side['row']}' is scored '{score}'; compare rows scored on one fold")
        return {"system": row["system"], "fold": score}
    if "fusion" in side and side["fusion"] not in fusions:
        raise ConfigError(f"{where}: fusion '{side['fusion']}' is not defined")
    return dict(side)


def paper_comparisons(paper_name: str, paper: dict, systems, fusions) -> dict[str, dict]:
    """{comparison: {'a': side, 'b': side, 'claim': text}} of one paper, checked and resolved."""
    resolved = {}
    for name, comparison in (paper.get("comparisons") or {}).items():
        where = f"rows {paper_name}.comparisons.{name}"
        if not isinstance(comparison, dict) or set(comparison) != COMPARISON_KEYS:
            raise ConfigError(f"{where}: needs exactly the keys {sorted(COMPARISON_KEYS)}")
        entry = {"claim": comparison["claim"]}
        for key in ("a", "b"):
            side = resolve_side(comparison[key], paper, f"{where}.{key}", fusions)
            if "system" in side and side["system"] not in systems:
                raise ConfigError(f"{where}.{key}: system '{side['system']}' is not defined")
            entry[key] = side
        resolved[name] = entry
    return resolved


def side_frames_path(side: dict) -> str:
    """Per-frame predictions of a side (after its post-processing, as its headline score)."""
    if "fusion" in side:
        return f"results/fusion/{side['fusion']}/frames.tsv"
    return f"results/predictions/{side['system']}/{side['fold']}/frames.tsv"


def side_label(side: dict) -> str:
    return side["fusion"] if "fusion" in side else f"{side['system']} ({side['fold']})"


def verdict(low: float, high: float) -> str:
    if low > 0:
        return "holds"
    if high < 0:
        return "reversed"
    return "not resolved"


def comparison_row(name: str, entry: dict, differences: dict) -> dict:
    """One line of a paper's comparisons table from `scoring.compare_predictions`'s result."""
    mean = differences["mean"]
    return {
        "comparison": name,
        "a": side_label(entry["a"]),
        "b": side_label(entry["b"]),
        "claim": entry["claim"],
        "difference": mean.estimate,
        "low": mean.low,
        "high": mean.high,
        "share_positive": mean.share_positive,
        "valence_difference": differences["valence"].estimate,
        "arousal_difference": differences["arousal"].estimate,
        "verdict": verdict(mean.low, mean.high),
    }


def heldout(frames: pd.DataFrame) -> pd.DataFrame:
    return frames[frames["set"] == "heldout"]
