"""`textxfer audit RECIPE`: know the data before trusting a score.

    textxfer audit recipes/tickets_minilm.yaml --output runs/tickets-audit [--label-errors]

Reads the recipe's splits exactly as `textxfer train` does and writes, into `--output` (default:
`OUTPUT_DIR-audit`), `audit.json`, `audit.md` and CSVs listing the rows of every finding: exact
duplicates within a split and across splits (leakage), conflicting labels, label counts, empty and
one-word texts, texts past `data.max_length`, near-duplicates across splits (cosine similarity of the
frozen base model's mean-pooled embeddings) and, with `--label-errors`, rows whose label confident
learning doubts (`label_errors.csv`).
"""
from __future__ import annotations

from pathlib import Path

from ..analysis.audit import DEFAULT_THRESHOLD, Audit, audit_recipe, check_folds, check_threshold
from ..analysis.audit_report import write_audit
from ..config import Recipe
from ..log import get_logger
from ..outputs import OutputFolder

log = get_logger("audit")


def audit(recipe: Recipe, output: str | None = None, threshold: float = DEFAULT_THRESHOLD,
          near_duplicates: bool = True, label_errors: bool = False, folds: int = 5, overwrite: bool = False) -> Audit:
    """Audit the recipe's data into the output folder; returns the audit (its report holds the counts)."""
    check_threshold(threshold)  # before anything is read or loaded
    check_folds(folds)
    d = recipe.data
    target = OutputFolder(output or f"{recipe.output_dir}-audit", overwrite=overwrite,
                          inputs=[d.train, d.validation, d.test], setting="--output" if output else
                          "output_dir (+ `-audit`)", kind="audit", overwrite_hint="--overwrite")
    with target:
        result = audit_recipe(recipe, threshold, near_duplicates, label_errors, folds)
        with target.staging() as staging:
            write_audit(staging, result)
    for line in summary_lines(result, target.path):
        log.info(line)
    return result


def summary_lines(result: Audit, folder: Path) -> list[str]:
    """What the command prints: the counts that matter, and where the lists are."""
    report = result.report
    dups = report["duplicates"]
    leaks = [f"{d['rows']} {name.replace('_in_', ' row(s) in ')} ({d['share']:.1%})"
             for name, d in report["leakage"].items()]
    lines = [", ".join(f"{split} {n}" for split, n in report["rows"].items()) + " rows; repeated texts: "
             + ", ".join(f"{d['extra_rows']} in {split}" for split, d in dups.items()),
             "exact leakage: " + ("; ".join(leaks) if leaks else "no held-out split")
             + f"; texts with conflicting labels: {report['conflicts']['groups']}",
             f"train imbalance ratio {report['labels']['imbalance_ratio']:.2f}; over max_length "
             f"({report['lengths']['max_length']} tokens): " + ", ".join(
                 f"{s['over_max_length']} in {split}" for split, s in report["lengths"]["splits"].items())]
    near = report.get("near_duplicates")
    if near:
        lines.append(f"near-duplicates (cosine >= {near['threshold']}, exact copies aside): " + ", ".join(
            f"{n} {name.replace('_in_', ' row(s) in ')}" for name, n in near.items() if name != "threshold"))
    errors = report.get("label_errors")
    if errors:
        lines.append(f"likely label errors: {errors['flagged']} of {errors['rows_checked']} rows (estimated share of "
                     f"wrong labels {errors['estimated_error_rate']:.1%}), ranked in label_errors.csv")
    lines.append(f"audit written to {folder} (audit.md, audit.json and the rows in CSV files)")
    return lines
