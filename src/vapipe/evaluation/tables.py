"""Markdown tables of the systems' scores (results/tables/*.md)."""

from __future__ import annotations

import html

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


def smoothing_text(postprocess: dict) -> str:
    """A system's post-processing in a table cell."""
    seconds = postprocess["smoothing_seconds"]
    return f"Hamming {seconds:g} s" if seconds > 0 else "none"


def ccc_cell(row: pd.Series, name: str, seeds: pd.Series | None = None) -> str:
    """A score in a table cell: the CCC, ``± sd`` over seeds when there are several, and its 95%
    bootstrap interval over videos when the metrics have one."""
    text = f"{row[name]:.3f}"
    if seeds is not None:
        text += f" ± {seeds[f'{name}_sd']:.3f}"
    if f"{name}_low" in row.index and pd.notna(row[f"{name}_low"]):
        text += f" [{row[f'{name}_low']:.2f}, {row[f'{name}_high']:.2f}]"
    return text


def models_table(
    metrics: dict[str, pd.DataFrame],
    systems: dict[str, dict],
    note: str,
    postprocess: dict | None = None,
    seeds: dict[str, pd.DataFrame] | None = None,
) -> str:
    """One row per system: model, features, the fold scored, its smoothing, CCC valence / arousal /
    mean. `postprocess` is the config's, for systems without their own; `seeds` the seed tables
    (`vapipe.evaluation.seeds.seed_summary`) of the systems trained with several seeds."""
    postprocess = postprocess or {"smoothing_seconds": 0.5}
    seeds = seeds or {}
    lines = [
        note,
        "",
        "CCC of the pooled held-out frames; ± the standard deviation over training seeds (systems with several:"
        " their score is the seed-average's); [ ] the 95% interval over resampled base videos.",
        "",
        "| system | model | features | scored on | smoothing | seeds | valence | arousal | mean |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, table in metrics.items():
        row = headline_row(table)
        system = systems[name]
        params = system.get("params", {})
        variant = ", ".join(
            f"{k} {str(params[k]).lower()}" for k in ("fusion", "gating", "variant", "temporal") if k in params
        )
        model = system["model"] + (f" ({variant})" if variant else "")
        seed_text = ", ".join(map(str, system["seeds"])) if name in seeds else str(system["train"].get("seed", 0))
        voiced = f"{row.name}_voiced"
        scored = [
            (
                row,
                f"{row.name} ({int(row['n_frames'])} frames)",
                smoothing_text(system.get("postprocess") or postprocess),
            )
        ]
        if voiced in set(table["fold"]):  # trained on speech: also its voiced segments, unsmoothed (Table 2 of 001)
            voiced_row = table.set_index("fold").loc[voiced].rename(voiced)
            scored.append((voiced_row, f"{voiced} ({int(voiced_row['n_frames'])} voiced frames)", "none"))
        for scored_row, scored_on, smoothing in scored:
            spread = seeds[name].set_index("fold").loc[scored_row.name] if name in seeds else None
            lines.append(
                f"| {name} | {model} | {', '.join(system['features'])} | {scored_on} | {smoothing} | {seed_text} "
                f"| {' | '.join(ccc_cell(scored_row, target, spread) for target in ('valence', 'arousal', 'mean'))} |"
            )
    return "\n".join(lines) + "\n"


PAGE_STYLE = (
    "body{font-family:sans-serif;font-size:13px;margin:16px}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}"
    "th{background:#f0f0f0}tr:nth-child(even){background:#fafafa}td:last-child{min-width:320px}"
)


def markdown_page_html(text: str) -> str:
    """A standalone HTML page of the markdown these tables are written in (headings, paragraphs,
    pipe tables), for `snakemake --report`, which shows HTML but not markdown."""
    out, table = [], []

    def cells(line: str) -> list[str]:
        return [html.escape(c.strip()) for c in line.strip().strip("|").split("|")]

    def flush_table():
        if table:
            header, rows = table[0], [r for r in table[1:] if not set(r.replace("|", "").strip()) <= {"-", ":", " "}]
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in cells(header)) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{c}</td>" for c in cells(r)) + "</tr>" for r in rows)
            out.append("</table>")
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    flush_table()
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{PAGE_STYLE}</style></head><body>"
        + "\n".join(out)
        + "</body></html>\n"
    )


def metrics_page(metrics: dict[str, pd.DataFrame]) -> str:
    """HTML page: one block of rows per system (its metrics table), in the order given."""
    lines = [
        "# Metrics",
        "",
        "CCC per fold; fused systems: fit or out_of_bag (optimistic), grouped_cv, grouped_cv_smoothed.",
        "",
        "| system | fold | valence | arousal | mean | frames |",
        "|---|---|---|---|---|---|",
    ]
    for name, table in metrics.items():
        for _, row in table.iterrows():
            frames = "" if pd.isna(row["n_frames"]) else int(row["n_frames"])
            lines.append(
                f"| {name} | {row['fold']} | {row['valence']:.3f} | {row['arousal']:.3f} | {row['mean']:.3f} "
                f"| {frames} |"
            )
    return markdown_page_html("\n".join(lines) + "\n")
