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
          submission: targetwise      # optional: also write results/rows/<paper>/<row>.submission.zip,
                                      # the row system's test predictions with this fold selection
      printed:          # printed rows no system reproduces (e.g. a challenge baseline): in the table, no 'ours'
        t2_baseline: {table: 2, label: Baseline, paper: {validation: {...}}, needs: why}

A derived system copies the config system named by ``from`` (its sizes and training settings
fit that config's data), then replaces ``features``, ``window``, ``stride``, ``folds`` (``all``:
every default fold of the config; ``within_train``: the config's K folds within Train_Set,
``train_k0`` .., see `vapipe.data.folds`) and merges ``params`` / ``train``. ``features`` name the paper's
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
from vapipe.data.folds import is_within_train_fold, video_halves, within_train_fold_names
from vapipe.errors import ConfigError
from vapipe.evaluation.scoring import VOICED_SUFFIX, score_predictions
from vapipe.evaluation.tables import headline_row, smoothing_text

ROW_KEYS = {"table", "label", "paper", "system", "fusion", "score", "uses", "needs", "submission"}
PRINTED_KEYS = {"table", "label", "paper", "needs"}
DERIVED_KEYS = {"from", "features", "window", "stride", "folds", "params", "train", "seeds"}
# Row `score:` values besides a fold name: the headline of a fused system, the pooled K folds,
# and SAGE's target-wise fold selection (paper 000, sec. 4.3.2): per target, the within-train fold
# (`vapipe.data.folds`) with the best CCC on the official validation set. That score is selected
# on the frames it reports, as the paper's; `nested_targetwise_scores` gives the honest one beside it.
TARGETWISE = "targetwise"
# A derived system's `folds:` besides a list: every default fold, or the K folds within Train_Set.
ALL_FOLDS = "all"
WITHIN_TRAIN = "within_train"
SUBMISSION_SELECTIONS = ("average", "targetwise")


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
            if "submission" in row and ("system" not in row or row["submission"] not in SUBMISSION_SELECTIONS):
                raise ConfigError(
                    f"{where}.rows.{row_id}: 'submission' is a system row's fold selection, one of "
                    f"{', '.join(SUBMISSION_SELECTIONS)}"
                )
        for row_id, row in (spec.get("printed") or {}).items():
            if not isinstance(row, dict) or set(row) - PRINTED_KEYS or not isinstance(row.get("paper"), dict):
                raise ConfigError(
                    f"{where}.printed.{row_id}: needs 'table', 'label' and a 'paper' mapping of splits to "
                    f"scores, and only {', '.join(sorted(PRINTED_KEYS))}"
                )
            if row_id in spec["rows"]:
                raise ConfigError(f"{where}.printed.{row_id}: a row of the same name is under rows")
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
    for key in ("window", "stride", "seeds"):
        if key in derived:
            system[key] = derived[key]
    for key in ("params", "train"):
        system[key] = {**system.get(key, {}), **derived.get(key, {})}
    if "features" in derived:
        system["features"] = [resolve_backbone(b, config, where) for b in derived["features"]]
        system["paper_features"] = list(derived["features"])
    if derived.get("folds") == ALL_FOLDS:
        system.pop("folds", None)
    elif derived.get("folds") == WITHIN_TRAIN:
        train_k = (config.get("folds") or {}).get("train_k", 0)
        if train_k < 2:
            raise ConfigError(f"{where}: 'folds: {WITHIN_TRAIN}' needs folds.train_k of at least 2 in the config")
        system["folds"] = within_train_fold_names(train_k)
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
            for key, values in (config.get("row_systems") or {}).get(name, {}).items():  # the config's last word
                systems[name][key] = {**systems[name].get(key, {}), **values}
        for name, fusion in (spec.get("fusions") or {}).items():
            if name in taken or name in systems or name in fusions:
                raise ConfigError(f"rows {paper}.fusions.{name}: the name is already used")
            fusions[name] = dict(fusion)
    unknown = sorted(set(config.get("row_systems") or {}) - set(systems))
    if unknown:
        raise ConfigError(f"row_systems.{unknown[0]}: no paper row defines this system")
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
        candidates = [fold for fold in indexed.index if is_within_train_fold(fold)]
        if not candidates:
            raise ValueError(
                "target-wise fold selection needs folds within Train_Set (train_k0 ..) scored on the "
                f"official validation set; the metrics have {', '.join(indexed.index)}"
            )
        chosen = select_per_target(indexed.loc[candidates].to_dict("index"), candidates)
        values = {t: float(indexed.loc[chosen[t], t]) for t in TARGETS}
        # each target's interval is its chosen fold's; the mean mixes two folds and gets none
        for t in TARGETS:
            for end in ("low", "high"):
                if f"{t}_{end}" in indexed.columns:
                    values[f"{t}_{end}"] = float(indexed.loc[chosen[t], f"{t}_{end}"])
        n_frames = {float(indexed.loc[chosen[t], "n_frames"]) for t in TARGETS}
        return (
            f"official validation, target-wise selection of {candidates[0]}..{candidates[-1]} "
            f"(valence {chosen['valence']}, arousal {chosen['arousal']}), selected on these frames",
            {**values, "mean": float(np.mean([values[t] for t in TARGETS])), "n_frames": n_frames.pop()},
        )
    if score not in indexed.index:
        raise ValueError(f"the metrics have no row '{score}' (rows: {', '.join(indexed.index)})")
    return score, indexed.loc[score].to_dict()


def select_per_target(scores: dict[str, dict[str, float]], folds: list[str]) -> dict[str, str]:
    """{target: fold} with the best score of that target among ``folds`` (the first wins a tie,
    as `vapipe.fusion.folds.targetwise_fold_selection`)."""
    for fold in folds:
        for target in TARGETS:
            value = scores.get(fold, {}).get(target)
            if value is None or not np.isfinite(value):
                raise ValueError(f"fold '{fold}' has no finite {target} CCC to select folds by")
    return {t: max(folds, key=lambda f, t=t: (scores[f][t], -folds.index(f))) for t in TARGETS}


def nested_targetwise_scores(frames_by_fold: dict[str, pd.DataFrame], manifest: pd.DataFrame, seed: int) -> dict:
    """Target-wise selection scored on frames it was not selected on.

    The folds' held-out trials (the same for every fold: the official validation set) are split in
    two halves by base video (`vapipe.data.folds.video_halves`, seeded). Per target, the fold with
    the best CCC on one half is scored on the other half, and the other way round; each target's
    score is the mean of the two directions. Returns {valence, arousal, mean, choices}, where
    choices lists, per direction, {target: fold chosen}.
    """
    if not frames_by_fold:
        raise ValueError("nested target-wise selection needs at least one fold")
    heldout = {fold: table[table["set"] == "heldout"] for fold, table in frames_by_fold.items()}
    folds = list(heldout)
    trials = sorted(heldout[folds[0]]["trial"].unique())
    for fold in folds[1:]:
        if sorted(heldout[fold]["trial"].unique()) != trials:
            raise ValueError(
                f"fold '{fold}' holds out other trials than fold '{folds[0]}': target-wise selection "
                "compares folds scored on the same frames"
            )
    halves = video_halves(manifest, trials, seed)
    per_direction, choices = [], []
    for choose_on, score_on in (halves, halves[::-1]):
        on_choice = {f: score_predictions(t[t["trial"].isin(choose_on)], manifest) for f, t in heldout.items()}
        chosen = select_per_target(on_choice, folds)
        scored = {}
        for target in TARGETS:
            table = heldout[chosen[target]]
            scored[target] = score_predictions(table[table["trial"].isin(score_on)], manifest)[target]
        per_direction.append(scored)
        choices.append(chosen)
    result = {t: float(np.mean([d[t] for d in per_direction])) for t in TARGETS}
    result["mean"] = float(np.mean([result[t] for t in TARGETS]))
    result["choices"] = choices
    return result


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


def row_record(
    paper: str,
    row_id: str,
    row: dict,
    config: dict,
    metrics: pd.DataFrame,
    nested: dict | None = None,
    submission: str | None = None,
    seeds: pd.DataFrame | None = None,
) -> dict:
    """One row of results/rows/<paper>/<row>.tsv: the paper's numbers beside ours and what ours used
    (for a fusion, its other metrics rows too: the optimistic fitting-frame scores). A target-wise
    row also carries ``nested`` (`nested_targetwise_scores`), and a row with ``submission:`` the
    path of the test submission it wrote."""
    scored_on, ours = row_scores(metrics, row.get("score"))
    if row.get("score") == TARGETWISE and nested is None:
        raise ValueError(f"row {paper}.{row_id}: a target-wise row reports its nested score beside the selected one")
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
        # 95% interval over resampled base videos (vapipe.evaluation.bootstrap); none for a selection
        **{f"ours_{k}_{end}": ours.get(f"{k}_{end}", np.nan) for k in (*TARGETS, "mean") for end in ("low", "high")},
        "data": "demo (generated)" if config["dataset"].get("demo") else "Aff-Wild2",
        "weights": backbone_weights(features, config),
        "stand_ins": "; ".join(stand_ins),
        # a fusion's fused predictions are smoothed with the config's post-processing; a voiced
        # score (vapipe.evaluation.scoring.score_voiced) reads the outputs before smoothing
        "smoothing": "none"
        if scored_on.endswith(VOICED_SUFFIX)
        else smoothing_text(
            config["postprocess"]
            if "fusion" in row
            else config["systems"][row["system"]].get("postprocess") or config["postprocess"]
        ),
        "needs": row.get("needs", ""),
        "uses": row.get("uses", ""),
        "protocol_ours": ours_protocol(row, config, scored_on),
    }
    for split, values in row["paper"].items():
        for key in (*TARGETS, "mean"):
            record[f"paper_{split}_{key}"] = values.get(key)
    if "fusion" in row:
        record["fit_note"] = "; ".join(
            f"{r['fold']} {r['mean']:.3f}" for _, r in metrics.iterrows() if r["fold"] != scored_on
        )
    if seeds is not None and scored_on in set(seeds["fold"]):  # a seed-average of several trainings: their spread
        spread = seeds.set_index("fold").loc[scored_on]
        record["seeds"] = int(spread["n_seeds"])
        record.update({f"ours_{k}_sd": float(spread[f"{k}_sd"]) for k in (*TARGETS, "mean")})
    if nested is not None:
        record.update({f"nested_{k}": nested[k] for k in (*TARGETS, "mean")})
        record["nested_choices"] = " / ".join(
            ", ".join(f"{t} {chosen[t]}" for t in TARGETS) for chosen in nested["choices"]
        )
    if row.get("submission"):
        if not submission:
            raise ValueError(f"row {paper}.{row_id}: declares a submission but none was given")
        record["submission"] = f"{submission} ({row['submission']} fold selection)"
    return record


def ours_protocol(row: dict, config: dict, scored_on: str) -> str:
    """How our number of a row was made, from the config that made it: data, what was trained on which
    folds with which seeds, how it was scored and post-processed."""
    data = "generated demo data" if config["dataset"].get("demo") else "Aff-Wild2"
    if "fusion" in row:
        fusion = config["fusions"][row["fusion"]]
        trained = (
            f"{fusion['method']} late fusion of {', '.join(fusion['systems'])} (folds {', '.join(fusion['folds'])}), "
            "cross-fitted over base videos"
        )
    else:
        system = config["systems"][row["system"]]
        folds = ", ".join(system["folds"]) if system.get("folds") else "every default fold"
        seeds = system.get("seeds") or [system["train"].get("seed", 0)]
        seed_text = f"seeds {', '.join(map(str, seeds))} (seed-averaged)" if len(seeds) > 1 else f"seed {seeds[0]}"
        trained = f"{system['model']} trained on folds {folds}, {seed_text}"
    if scored_on.endswith(VOICED_SUFFIX):
        return f"{data}; {trained}; scored on {scored_on}: the voiced segments' frames, unsmoothed, pooled CCC"
    return f"{data}; {trained}; scored on {scored_on}, pooled CCC over frames"


def printed_record(paper: str, row_id: str, row: dict) -> dict:
    """A printed-only row (`printed:` in the rows file) in the form of `row_record`: the paper's
    numbers, no 'ours'."""
    record = {
        "paper": paper,
        "table": row["table"],
        "row": row_id,
        "label": row["label"],
        "system": "",
        "scored_on": "not reproduced",
        **{f"ours_{k}": np.nan for k in (*TARGETS, "mean", "n_frames")},
        "data": "",
        "weights": "",
        "stand_ins": "",
        "smoothing": "",
        "needs": row.get("needs", ""),
        "uses": "",
    }
    for split, values in row["paper"].items():
        for key in (*TARGETS, "mean"):
            record[f"paper_{split}_{key}"] = values.get(key)
    return record


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _number(value) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{float(value):.3f}"


def ccc_text(record: dict, key: str) -> str:
    """Our score in a table cell: value, ``± sd`` over seeds, and ``[low, high]`` over videos, where known."""
    text = _number(record.get(f"ours_{key}"))
    if _text(record.get(f"ours_{key}_sd")):
        text += f" ± {float(record[f'ours_{key}_sd']):.3f}"
    if _text(record.get(f"ours_{key}_low")):
        text += f" [{float(record[f'ours_{key}_low']):.2f}, {float(record[f'ours_{key}_high']):.2f}]"
    return text


def deviations_text(record: dict) -> str:
    """What still differs from the paper's protocol, and why: the row's own reasons, then what the run's
    data and backbones change."""
    parts = [_text(record.get("needs"))]
    if _text(record.get("stand_ins")):
        parts.append(f"Backbones stand in for the paper's: {record['stand_ins']}.")
    if record.get("data") == "demo (generated)":
        parts.append("Generated demo data: not comparable with the paper's number in size or content.")
    return " ".join(p for p in parts if p)


def comparison_lines(comparisons: pd.DataFrame) -> list[str]:
    """Markdown section: each claim of the paper, judged by its paired bootstrap on our data."""
    lines = [
        "",
        "## The paper's comparisons on our data",
        "",
        "Difference of pooled mean CCC, A - B, on the same held-out frames; interval: paired bootstrap over base "
        "videos; P(A>B): share of resamples in which A wins. The claim holds when the whole interval is above 0.",
        "",
        "| comparison | claim | A | B | A - B [95%] | V diff | A diff | P(A>B) | on our data |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, c in comparisons.iterrows():
        lines.append(
            f"| {c['comparison']} | {c['claim']} | {c['a']} | {c['b']} | {c['difference']:+.3f} "
            f"[{c['low']:+.3f}, {c['high']:+.3f}] | {c['valence_difference']:+.3f} | {c['arousal_difference']:+.3f} "
            f"| {c['share_positive']:.2f} | {c['verdict']} |"
        )
    return lines


def paper_table(
    title: str,
    records: list[dict],
    printed: list[dict] | None = None,
    protocol: str = "",
    comparisons: pd.DataFrame | None = None,
) -> str:
    """Markdown: per row the paper's scores (every split it reports) beside ours (± over seeds, interval
    over videos), then per row the paper's protocol, ours and each deviation left with its reason,
    then the paper's comparisons judged on our data. ``printed`` (`printed_record`) rows come after the
    reproduced ones, with the paper's numbers only; ``protocol`` is the paper's evaluation protocol."""
    lines = [f"# {title}", ""]
    data = sorted({r["data"] for r in records})
    records = [*records, *(printed or [])]
    lines.append(
        f"Ours measured on: {', '.join(data)}. CCC; 'ours' is never scored on frames a model or "
        "fusion was fitted or selected on (see 'scored on'), except a target-wise fold selection, "
        "reported as its paper reports it, on the frames it selects on: its nested score is in the notes. "
        "± : standard deviation over training seeds (rows trained with several); [ ] : 95% interval over "
        "resampled base videos."
    )
    lines += [
        "",
        "| table | row | paper: split | V | A | mean | ours: scored on | V | A | mean | smoothing | system "
        "| features, weights | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        splits = list(dict.fromkeys(k.split("_")[1] for k in r if k.startswith("paper_")))
        paper_cells = [
            " / ".join(splits),
            *(" / ".join(_number(r.get(f"paper_{s}_{t}")) for s in splits) for t in (*TARGETS, "mean")),
        ]
        weights = r["weights"] + (f" (stand-ins: {r['stand_ins']})" if _text(r["stand_ins"]) else "")
        notes = ""
        if _text(r.get("nested_mean")):
            notes = (
                f"Nested (fold chosen on one half of the validation videos, scored on the other, "
                f"both ways): {_number(r['nested_valence'])} / {_number(r['nested_arousal'])} / "
                f"{_number(r['nested_mean'])} (chosen: {r['nested_choices']})."
            )
        if _text(r.get("fit_note")):
            notes = f"{notes} Other scores: {r['fit_note']}.".strip()
        if _text(r.get("submission")):
            notes = f"{notes} Test submission: {r['submission']}.".strip()
        lines.append(
            f"| {r['table']} | {r['label']} | {' | '.join(paper_cells)} | {r['scored_on']} | "
            f"{ccc_text(r, 'valence')} | {ccc_text(r, 'arousal')} | {ccc_text(r, 'mean')} | "
            f"{_text(r.get('smoothing'))} | {r['system']} | {weights} | {notes} |"
        )
    lines += [
        "",
        "## Protocol per row: the paper's, ours, and what still differs",
        "",
        f"The paper's evaluation protocol: {protocol or 'see the paper'}",
        "",
        "| table | row | the paper's model and protocol | ours | deviations left, and why |",
        "|---|---|---|---|---|",
    ]
    for r in records:
        ours = _text(r.get("protocol_ours")) or "not reproduced"
        lines.append(
            f"| {r['table']} | {r['label']} | {_text(r.get('uses')) or 'as the protocol above'} | {ours} "
            f"| {deviations_text(r) or '–'} |"
        )
    if comparisons is not None and len(comparisons):
        lines += comparison_lines(comparisons)
    return "\n".join(lines) + "\n"
