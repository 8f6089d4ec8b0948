"""`textxfer shift RUN_DIR NEW_FILE`: is new, unlabeled text (next month's tickets) like the text the run
was trained on?

    textxfer shift runs/tickets new_tickets.csv --output runs/tickets-shift

Prints a short verdict and writes `shift.json` and `shift.png` into `--output` (default: `RUN_DIR-shift`):
the cross-validated AUC of a classifier telling new texts from training texts (0.5: no shift), the MMD
permutation p-value, and which predicted labels grew or shrank (see `textxfer.analysis.shift_check`).
"""
from __future__ import annotations

from pathlib import Path

from ..analysis.shift_check import Shift, measure_shift
from ..analysis.shift_plot import plot_shift
from ..fsutil import write_json
from ..log import get_logger
from ..outputs import OutputFolder
from ..runs.folder import draw_safely

log = get_logger("shift")

MEANING = {
    "none": "no shift detected: a classifier cannot tell the new texts from the training texts",
    "slight": "a slight shift: the new texts differ measurably, but are mostly like the training texts",
    "moderate": "a moderate shift: many new texts are recognisably unlike the training texts",
    "strong": "a strong shift: the new texts are readily told apart from the training texts",
}
CHANGES_SHOWN = 3


def shift(run_dir: str | Path, new_file: str | Path, output: str | Path | None = None, text_column=None,
          max_texts: int = 5000, overwrite: bool = False) -> Shift:
    """Check NEW_FILE against the run's training texts; write shift.json and shift.png; returns the result."""
    run_dir = Path(run_dir)
    target = OutputFolder(output or run_dir.with_name(run_dir.name + "-shift"), overwrite=overwrite,
                          inputs=[run_dir, new_file], setting="--output" if output else "RUN_DIR (+ `-shift`)",
                          kind="shift check", overwrite_hint="--overwrite")
    with target:
        result = measure_shift(run_dir, new_file, text_column, max_texts)
        with target.staging() as staging:
            write_json(staging / "shift.json", result.report)
            draw_safely(staging / "shift.png", lambda path: plot_shift(
                result.scores, result.n_old, result.report["labels"]["change"], _title(result.report), path))
    for line in verdict_lines(result.report, target.path):
        log.info(line)
    return result


def _title(report: dict) -> str:
    return (f"{Path(report['new_file']).name} vs the training texts: {report['verdict']} shift "
            f"(AUC {report['classifier_two_sample']['auc']:.3f}, MMD p={report['mmd']['p_value']:.3g})")


def verdict_lines(report: dict, folder: Path) -> list[str]:
    """The printed verdict: what the tests say, the largest label changes, where the files are."""
    auc, mmd, labels = report["classifier_two_sample"]["auc"], report["mmd"], report["labels"]
    change = labels["change"]

    def moved(names):
        return ", ".join(f"{label} {100 * change[label]:+.1f}" for label in names[:CHANGES_SHOWN]) or "none"

    return [f"{MEANING[report['verdict']]} (two-sample AUC {auc:.3f}, 0.5 = indistinguishable; MMD p-value "
            f"{mmd['p_value']:.3g} over {mmd['permutations']} permutations; {report['texts']['compared_training']} "
            f"training vs {report['texts']['compared_new']} new texts)",
            f"predicted labels vs training labels (points): grew {moved(labels['grew'])}; shrank "
            f"{moved(labels['shrank'])}; total variation {labels['total_variation']:.3f}",
            f"shift.json and shift.png written to {folder}"]
