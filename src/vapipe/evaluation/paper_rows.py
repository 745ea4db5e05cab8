"""The five papers' table rows as workflow targets (config/rows.yaml).

A rows file has one entry per paper::

    iaca:
      title: ...
      systems:          # systems the rows train, derived from a system of the run's config
        iaca_tca: {from: iaca_rjca, features: [face_r3d18, voice_resnet18_spec], params: {fusion: tca}}
      fusions:          # late fusions of those systems (vapipe.fusion.run)
        ...
      rows:
        t2_tca:
          table: 2
          label: TCA w/o IACA
          paper: {validation: {valence: 0.564, arousal: 0.543}}
          system: iaca_tca            # or fusion: <name>
          score: official             # the metrics row reported (see `row_scores`)
          uses: ...                   # what the paper's row used
          needs: ...                  # what we cannot reproduce, if anything

A derived system copies the config system named by ``from`` (its sizes and training settings
fit that config's data), then replaces ``features``, ``window``, ``stride``, ``folds`` (``all``:
every fold of the config) and merges ``params`` / ``train``. ``features`` name the paper's
backbones as config/affwild2.yaml defines them; a config that lacks one maps it to a backbone it
has through ``stand_ins`` (the demo maps every face backbone to its MobileNetV3, and so on), and
the row says so.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from vapipe import TARGETS
from vapipe.errors import ConfigError
from vapipe.evaluation.tables import headline_row, smoothing_text

ROW_KEYS = {"table", "label", "paper", "system", "fusion", "score", "uses", "needs"}
DERIVED_KEYS = {"from", "features", "window", "stride", "folds", "params", "train"}
# Row `score:` values besides a fold name: the headline of a fused system, the pooled K folds,
# and SAGE's target-wise fold selection (per target, the best K fold's held-out CCC).
TARGETWISE = "targetwise"


def load_paper_rows(path: str | Path) -> dict:
    """The rows file, checked for the keys each entry needs; errors name the file and the key."""
    path = Path(path)
    try:
        papers = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read the paper rows ({error})") from None
    if not isinstance(papers, dict) or not papers:
        raise ConfigError(f"{path}: expected a mapping of papers")
    for paper, spec in papers.items():
        where = f"{path}: {paper}"
        if not isinstance(spec, dict) or not spec.get("rows"):
            raise ConfigError(f"{where}: needs 'title' and a non-empty 'rows' mapping")
        systems, fusions = spec.get("systems", {}) or {}, spec.get("fusions", {}) or {}
        for name, derived in systems.items():
            unknown = sorted(set(derived) - DERIVED_KEYS)
            if unknown or "from" not in derived:
                raise ConfigError(f"{where}.systems.{name}: needs 'from'; unknown key(s): {unknown}")
        for row_id, row in spec["rows"].items():
            unknown = sorted(set(row) - ROW_KEYS)
            if unknown:
                raise ConfigError(f"{where}.rows.{row_id}: unknown key '{unknown[0]}'")
            if ("system" in row) == ("fusion" in row):
                raise ConfigError(f"{where}.rows.{row_id}: give exactly one of 'system' or 'fusion'")
            if not isinstance(row.get("paper"), dict) or not row["paper"]:
                raise ConfigError(f"{where}.rows.{row_id}: 'paper' must map a split to the paper's scores")
            if "fusion" in row and row["fusion"] not in fusions:
                raise ConfigError(f"{where}.rows.{row_id}: fusion '{row['fusion']}' is not under {paper}.fusions")
    return papers


def resolve_backbone(name: str, config: dict, where: str) -> str:
    """A paper backbone's name in this config: itself, or its stand-in."""
    if name in config["backbones"]:
        return name
    stand_in = config.get("stand_ins", {}).get(name)
    if stand_in is None:
        raise ConfigError(f"{where}: backbone '{name}' is neither under backbones nor under stand_ins")
    if stand_in not in config["backbones"]:
        raise ConfigError(f"{where}: stand_ins.{name} names '{stand_in}', which is not under backbones")
    return stand_in


def derive_system(name: str, derived: dict, config: dict, where: str) -> dict:
    """A config system spec from a rows-file derivation (see the module docstring)."""
    base_name = derived["from"]
    if base_name not in config["systems"]:
        raise ConfigError(f"{where}: 'from' names system '{base_name}', which the config does not define")
    system = copy.deepcopy(config["systems"][base_name])
    for key in ("window", "stride"):
        if key in derived:
            system[key] = derived[key]
    for key in ("params", "train"):
        system[key] = {**system.get(key, {}), **derived.get(key, {})}
    if "features" in derived:
        system["features"] = [resolve_backbone(b, config, where) for b in derived["features"]]
        system["paper_features"] = list(derived["features"])
    if derived.get("folds") == "all":
        system.pop("folds", None)
    elif "folds" in derived:
        system["folds"] = list(derived["folds"])
    return system


def materialize_rows(config: dict, papers: dict) -> tuple[dict, dict]:
    """(systems, fusions) the rows need, as config entries; names must not clash with the config's."""
    systems, fusions = {}, {}
    taken = set(config["systems"]) | set(config.get("fusions", {}))
    for paper, spec in papers.items():
        if paper in config.get("tables", {}):
            raise ConfigError(f"rows {paper}: tables.{paper} has the same name (both write results/tables/{paper}.md)")
        for name, derived in (spec.get("systems") or {}).items():
            where = f"rows {paper}.systems.{name}"
            if name in taken or name in systems:
                raise ConfigError(f"{where}: the name is already used by the config or another paper")
            systems[name] = derive_system(name, derived, config, where)
        for name, fusion in (spec.get("fusions") or {}).items():
            if name in taken or name in systems or name in fusions:
                raise ConfigError(f"rows {paper}.fusions.{name}: the name is already used")
            fusions[name] = dict(fusion)
    known = set(config["systems"]) | set(systems)
    for paper, spec in papers.items():
        for row_id, row in spec["rows"].items():
            if "system" in row and row["system"] not in known:
                raise ConfigError(f"rows {paper}.rows.{row_id}: system '{row['system']}' is not defined")
    return systems, fusions


def row_target(paper: str, row_id: str) -> str:
    return f"results/rows/{paper}/{row_id}.tsv"


def row_scores(metrics: pd.DataFrame, score: str | None) -> tuple[str, dict[str, float]]:
    """(what was scored, {valence, arousal, mean, n_frames}) of a system's or fusion's metrics table."""
    indexed = metrics.set_index("fold")
    if score is None:
        row = headline_row(metrics)
        return str(row.name), row.to_dict()
    if score == TARGETWISE:
        kfolds = indexed[indexed.index.str.fullmatch(r"k\d+")]
        if kfolds.empty:
            raise ValueError("target-wise fold selection needs K-fold rows in the metrics")
        chosen = {t: str(kfolds[t].idxmax()) for t in TARGETS}
        values = {t: float(kfolds.loc[chosen[t], t]) for t in TARGETS}
        return (
            f"target-wise fold selection (valence {chosen['valence']}, arousal {chosen['arousal']}, held-out)",
            {**values, "mean": float(np.mean(list(values.values()))), "n_frames": np.nan},
        )
    if score not in indexed.index:
        raise ValueError(f"the metrics have no row '{score}' (rows: {', '.join(indexed.index)})")
    return score, indexed.loc[score].to_dict()


def backbone_weights(names: list[str], config: dict) -> str:
    """'random-init' / 'pretrained <id>' of each backbone, as the tables report them."""
    parts = []
    for name in dict.fromkeys(names):
        spec = config["backbones"][name]
        if spec.get("kind") == "logmel":
            state = "no weights"
        elif spec.get("weights"):
            state = f"weights {spec['weights']}"
        elif spec.get("pretrained", False):
            state = f"pretrained {spec['id']}"
        else:
            state = "random-init"
        parts.append(f"{name}: {state}")
    return "; ".join(parts)


def row_record(paper: str, row_id: str, row: dict, config: dict, metrics: pd.DataFrame) -> dict:
    """One row of results/rows/<paper>/<row>.tsv: the paper's numbers beside ours and what ours used
    (for a fusion, its other metrics rows too: the optimistic fitting-frame scores)."""
    scored_on, ours = row_scores(metrics, row.get("score"))
    if "fusion" in row:
        fusion = config["fusions"][row["fusion"]]
        members = fusion["systems"]
        what = f"{fusion['method']} of {', '.join(members)}"
    else:
        members = [row["system"]]
        what = row["system"]
    features = [b for m in members for b in config["systems"][m]["features"]]
    paper_features = [
        b for m in members for b in config["systems"][m].get("paper_features", config["systems"][m]["features"])
    ]
    stand_ins = sorted({f"{p} -> {f}" for p, f in zip(paper_features, features) if p != f})
    record = {
        "paper": paper,
        "table": row["table"],
        "row": row_id,
        "label": row["label"],
        "system": what,
        "scored_on": scored_on,
        **{f"ours_{k}": ours.get(k, np.nan) for k in (*TARGETS, "mean", "n_frames")},
        "data": "demo (generated)" if config["dataset"].get("demo") else "Aff-Wild2",
        "weights": backbone_weights(features, config),
        "stand_ins": "; ".join(stand_ins),
        # a fusion's fused predictions are smoothed with the config's post-processing
        "smoothing": smoothing_text(
            config["postprocess"]
            if "fusion" in row
            else config["systems"][row["system"]].get("postprocess") or config["postprocess"]
        ),
        "needs": row.get("needs", ""),
        "uses": row.get("uses", ""),
    }
    for split, values in row["paper"].items():
        for key in (*TARGETS, "mean"):
            record[f"paper_{split}_{key}"] = values.get(key)
    if "fusion" in row:
        record["fit_note"] = "; ".join(
            f"{r['fold']} {r['mean']:.3f}" for _, r in metrics.iterrows() if r["fold"] != scored_on
        )
    return record


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _number(value) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{float(value):.3f}"


def paper_table(title: str, records: list[dict]) -> str:
    """Markdown: per row the paper's scores (every split it reports) beside ours, and how ours were made."""
    lines = [f"# {title}", ""]
    data = sorted({r["data"] for r in records})
    lines.append(
        f"Ours measured on: {', '.join(data)}. CCC; 'ours' is never scored on frames a model or "
        "fusion was fitted or selected on (see 'scored on')."
    )
    lines += [
        "",
        "| table | row | paper: split | V | A | mean | ours: scored on | V | A | mean | smoothing | system "
        "| features, weights | not reproduced |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        splits = list(dict.fromkeys(k.split("_")[1] for k in r if k.startswith("paper_")))
        paper_cells = [
            " / ".join(splits),
            *(" / ".join(_number(r.get(f"paper_{s}_{t}")) for s in splits) for t in (*TARGETS, "mean")),
        ]
        weights = r["weights"] + (f" (stand-ins: {r['stand_ins']})" if _text(r["stand_ins"]) else "")
        notes = _text(r["needs"])
        if _text(r.get("fit_note")):
            notes = f"{notes} Other scores: {r['fit_note']}.".strip()
        lines.append(
            f"| {r['table']} | {r['label']} | {' | '.join(paper_cells)} | {r['scored_on']} | "
            f"{_number(r['ours_valence'])} | {_number(r['ours_arousal'])} | {_number(r['ours_mean'])} | "
            f"{_text(r.get('smoothing'))} | {r['system']} | {weights} | {notes} |"
        )
    return "\n".join(lines) + "\n"
