"""Writing an audit: `audit.json` (the counts), `audit.md` (the same for people, with the first rows of
each finding) and one CSV per finding listing its rows (file, row as textxfer's messages count it:
from 1, the CSV header not counted; a JSONL file's line), text and labels."""
from __future__ import annotations

from pathlib import Path

from ..data.audit_checks import NORMALISATION, Row
from ..data.tables_out import write_table
from ..fsutil import write_json
from .audit import Audit

SHOWN = 10  # rows of each finding shown in audit.md
CSV_FILES = {
    "duplicates": "duplicates.csv", "leakage": "leakage.csv", "conflicts": "conflicts.csv",
    "near_duplicates": "near_duplicates.csv", "short_texts": "short_texts.csv", "long_texts": "long_texts.csv",
    "label_errors": "label_errors.csv",
}


def _labels(row: Row) -> str:
    return "|".join(row.labels)


def _columns(rows: list[Row], **extra: list) -> dict[str, list]:
    columns = {**extra, "split": [r.split for r in rows], "file": [r.file for r in rows],
               "row": [r.row for r in rows], "text": [r.text for r in rows]}
    if rows and rows[0].pair is not None:
        columns["text_pair"] = [r.pair for r in rows]
    columns["labels"] = [_labels(r) for r in rows]
    return columns


def _grouped(groups: list[list[Row]], finding: list[str] | None = None) -> dict[str, list]:
    rows = [r for g in groups for r in g]
    ids = [k for k, g in enumerate(groups, 1) for _ in g]
    extra = {"group": ids}
    if finding is not None:
        extra = {"finding": [f for f, g in zip(finding, groups) for _ in g], **extra}
    return _columns(rows, **extra)


def write_audit(folder: Path, audit: Audit) -> list[str]:
    """Write the audit's files into `folder`; returns their names."""
    found = audit.findings
    tables = {
        "duplicates": _grouped([g for groups in found.duplicates.values() for g in groups]),
        "leakage": _grouped([g for groups in found.leakage.values() for g in groups],
                            [name for name, groups in found.leakage.items() for _ in groups]),
        "conflicts": _grouped(found.conflicts),
        "short_texts": _columns(found.empty + found.one_word,
                                kind=["empty"] * len(found.empty) + ["one_word"] * len(found.one_word)),
        "long_texts": _columns([r for r, _ in audit.long_rows], tokens=[t for _, t in audit.long_rows]),
    }
    if audit.near_duplicates is not None:
        tables["near_duplicates"] = _near_table(audit)
    if audit.label_issues is not None:
        issues = audit.label_issues
        tables["label_errors"] = {
            "rank": [i.rank for i in issues], "file": [i.row.file for i in issues], "row": [i.row.row for i in issues],
            "split": [i.row.split for i in issues], "text": [i.row.text for i in issues],
            "given_label": [i.row.labels[0] for i in issues], "suggested_label": [i.suggested for i in issues],
            "confidence": [round(i.confidence, 4) for i in issues],
            "given_label_probability": [round(i.given_probability, 4) for i in issues]}
    written = []
    for name, columns in tables.items():
        write_table(folder / CSV_FILES[name], columns)
        written.append(CSV_FILES[name])
    audit.report["lists"] = {name: CSV_FILES[name] for name in tables}
    write_json(folder / "audit.json", audit.report)
    (folder / "audit.md").write_text(markdown(audit), encoding="utf-8")
    return ["audit.json", "audit.md", *written]


def _near_table(audit: Audit) -> dict[str, list]:
    pairs = audit.near_duplicates
    held = _columns([d.row for d in pairs])
    match = _columns([d.nearest for d in pairs])
    return {"finding": [d.finding for d in pairs], "similarity": [round(d.similarity, 4) for d in pairs],
            **held, **{f"nearest_{k}": v for k, v in match.items()},
            "matches_at_threshold": [d.matches for d in pairs]}


def _cell(text: str, width: int = 90) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[:width - 1] + "…"


def _where(row: Row) -> str:
    """FILE:ROW (split): the validation rows drawn from train name the train file."""
    return f"{Path(row.file).name}:{row.row} ({row.split})" if row.row is not None else row.split


def markdown(audit: Audit) -> str:
    """audit.md: the counts, then the first rows of every finding."""
    report, found = audit.report, audit.findings
    rows = report["rows"]
    lines = ["# Data audit", "",
             "Rows per split: " + ", ".join(f"{split} {n:,} (`{report['files'].get(split, '')}`)"
                                           for split, n in rows.items()) + ".",
             f"Texts are compared after normalisation ({NORMALISATION}). A row is named FILE:ROW, ROW counted from 1 without "
             f"the CSV header (a JSONL file's line).", "", "## Exact checks", "",
             "| check | count |", "|---|---:|"]
    for split, d in report["duplicates"].items():
        lines.append(f"| repeated texts within {split} (rows beyond the first of each text) | {d['extra_rows']:,} |")
    for name, d in report["leakage"].items():
        held, searched = name.split("_in_")
        lines.append(f"| {held} rows whose text is in {searched} (leakage) | {d['rows']:,} ({d['share']:.2%}) |")
    lines.append(f"| texts with conflicting labels | {report['conflicts']['groups']:,} ({report['conflicts']['rows']:,} rows) |")
    for kind, label in (("empty", "empty after normalisation"), ("one_word", "a single word")):
        counts = report["short_texts"][kind]
        lines.append(f"| texts {label} | {sum(counts.values()):,} |")
    labels = report["labels"]
    lines += ["", f"Train imbalance ratio {labels['imbalance_ratio']:.2f}: `{labels['largest']}` "
                  f"({labels['counts']['train'].get(labels['largest'], 0):,} rows) vs `{labels['smallest']}` "
                  f"({labels['counts']['train'].get(labels['smallest'], 0):,})."]
    lines += _lengths(report["lengths"])
    lines += _examples("Leakage", [g for groups in found.leakage.values() for g in groups], "leakage.csv")
    lines += _examples("Repeated texts", [g for groups in found.duplicates.values() for g in groups], "duplicates.csv")
    lines += _examples("Conflicting labels", found.conflicts, "conflicts.csv")
    if audit.near_duplicates is not None:
        lines += _near(audit)
    if audit.label_issues is not None:
        lines += _label_errors(audit)
    return "\n".join(lines) + "\n"


def _lengths(lengths: dict) -> list[str]:
    lines = ["", "## Lengths", "", f"`data.max_length` {lengths['max_length']} tokens. {lengths['effect']}.", "",
             "| split | median tokens | 95th percentile | longest | over max_length | "
             + ("windows scored |" if lengths["long_text"] == "chunks" else "tokens cut |"), "|---|---:|---:|---:|---:|---:|"]
    for split, s in lengths["splits"].items():
        extra = f"{s['windows']:,}" if "windows" in s else f"{s['share_of_tokens_cut']:.1%}"
        lines.append(f"| {split} | {s['median_tokens']:.0f} | {s['p95_tokens']:.0f} | {s['max_tokens']:,} | "
                     f"{s['over_max_length']:,} ({s['share_over']:.1%}) | {extra} |")
    return lines + ["", "The long rows are in `long_texts.csv`, longest first."]


def _examples(title: str, groups: list[list[Row]], csv_name: str) -> list[str]:
    if not groups:
        return []
    lines = ["", f"## {title}", "", f"{len(groups):,} text(s); all rows in `{csv_name}`. The first {min(SHOWN, len(groups))}:", ""]
    for group in groups[:SHOWN]:
        where = ", ".join(f"{_where(r)} `{_labels(r)}`" for r in group)
        lines.append(f"- \"{_cell(group[0].text)}\": {where}")
    return lines


def _near(audit: Audit) -> list[str]:
    summary = audit.report["near_duplicates"]
    pairs = audit.near_duplicates
    counts = ", ".join(f"{n:,} {name.replace('_in_', ' rows with a near-duplicate in ')}"
                       for name, n in summary.items() if name != "threshold")
    lines = ["", "## Near-duplicates across splits", "",
             f"Cosine similarity of {audit.report['features']} embeddings at or above {summary['threshold']}, exact "
             f"copies left out (they are leakage above): {counts}. All pairs in `near_duplicates.csv`, most similar first."]
    if pairs:
        lines += ["", "| similarity | held-out row | text | nearest row | its text |", "|---:|---|---|---|---|"]
        lines += [f"| {d.similarity:.3f} | {_where(d.row)} | {_cell(d.row.text, 60)} | {_where(d.nearest)} | "
                  f"{_cell(d.nearest.text, 60)} |" for d in pairs[:SHOWN]]
    return lines


def _label_errors(audit: Audit) -> list[str]:
    s = audit.report["label_errors"]
    issues = audit.label_issues
    lines = ["", "## Likely label errors", "",
             f"Confident learning on {s['folds']}-fold out-of-fold probabilities of a linear head on the embeddings "
             f"(out-of-fold accuracy {s['out_of_fold_accuracy']:.3f}): {s['flagged']:,} of {s['rows_checked']:,} rows "
             f"flagged; the calibrated confident joint puts the share of wrong labels at "
             f"{s['estimated_error_rate']:.1%}. Ranked in `label_errors.csv`, most likely wrong first."]
    if issues:
        lines += ["", "| rank | row | text | given | suggested | confidence |", "|---:|---|---|---|---|---:|"]
        lines += [f"| {i.rank} | {_where(i.row)} | {_cell(i.row.text, 70)} | `{i.row.labels[0]}` | `{i.suggested}` | "
                  f"{i.confidence:.2f} |" for i in issues[:SHOWN]]
    return lines
