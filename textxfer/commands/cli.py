"""The `textxfer` command: a thin layer that parses arguments and calls the library.

    textxfer train RECIPE.yaml [key=value ...]
    textxfer predict RUN_DIR INPUT -o OUTPUT
    textxfer merge LORA_RUN_DIR OUTPUT_DIR
    textxfer adapt RECIPE data.unlabeled=FILE [--output DIR]
    textxfer compare RECIPE --strategies base,scratch,feature_extraction,full --per-class 5,10,all --seeds 3
    textxfer push RUN_DIR --repo-id OWNER/NAME [--private] [--revision main] [--dry-run DIR]
    textxfer export-onnx RUN_DIR OUTPUT_DIR
    textxfer ensemble RUN_DIR RUN_DIR [...] --output DIR [--rule mean_log_prob|mean_prob]
    textxfer explain RUN_DIR TEXT [TEXT ...] | FILE [--label L] [--html FILE] [--json FILE|-] [--steps 50]
    textxfer select RUN_DIR POOL -n 200 --strategy margin -o to_label.csv
    textxfer serve RUN_DIR [--host 127.0.0.1] [--port 8000] [--backend torch|onnx] [--max-batch 64] [--max-wait-ms 5]
    textxfer tune RECIPE --trials 20 [--space space.yaml] [--storage sqlite:///study.db] [--study-name NAME] [--output DIR]

    textxfer audit RECIPE [key=value ...] [--output DIR] [--label-errors] [--near-duplicate-threshold 0.95]
    textxfer shift RUN_DIR NEW_FILE [--output DIR]

Each command's modules are imported when it runs, so `textxfer --help`, `--version` and a mistyped
argument answer at once instead of after loading torch and transformers.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from .._version import __version__
from ..errors import TextxferError
from ..log import cli_handlers, get_logger
from ..methods import method_names
from .handlers import (cmd_adapt, cmd_audit, cmd_compare, cmd_ensemble, cmd_explain, cmd_export_onnx, cmd_merge,
                       cmd_predict, cmd_push, cmd_select, cmd_serve, cmd_shift, cmd_train, cmd_tune)

log = get_logger()


_OVERWRITE_HELP = ("replace the output folder if it is a finished output of textxfer's holding nothing else (kept "
                   "intact until the new one is complete); other folders are never replaced")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `textxfer` command."""
    parser = argparse.ArgumentParser(prog="textxfer", description="Train and use text classifiers by transfer learning.")
    parser.add_argument("--version", action="version", version=f"textxfer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug messages, and what other libraries "
                        "print while loading models (load reports, progress bars, optional-kernel notes)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_predict, _add_merge, _add_adapt, _add_compare, _add_push, _add_export_onnx,
                _add_ensemble, _add_explain, _add_tune, _add_audit, _add_shift, _add_select, _add_serve):
        add(sub)
    return parser



def _add_train(sub) -> None:
    train = sub.add_parser("train", help="train, evaluate and save a classifier from a YAML recipe")
    train.add_argument("recipe", help="recipe YAML file (see recipes/)")
    train.add_argument("overrides", nargs="*", help="recipe overrides as dotted key=value, e.g. train.lr=3e-5")
    train.add_argument("--overwrite", action="store_true", help="replace output_dir if it holds a finished textxfer "
                       "run (kept intact until the new run is complete); other folders are never replaced")
    train.set_defaults(func=cmd_train)


def _add_predict(sub) -> None:
    predict = sub.add_parser("predict", help="classify a CSV/TSV/JSONL/parquet file with a saved run")
    predict.add_argument("run_dir", help="the output_dir of a finished training run")
    predict.add_argument("input", help="file with a text column (the run's data.text_column)")
    predict.add_argument("-o", "--output", required=True, help="where to write rows + predicted_label + score; the "
                         "format follows the extension: .csv, .tsv, .jsonl or .parquet")
    predict.add_argument("--raw-csv", action="store_true", help="write CSV/TSV cells as they are; by default a cell "
                         "starting with = + - @ gets a leading ' so spreadsheets do not run it as a formula")
    predict.add_argument("--text-column", help="text column(s) of INPUT, comma-separated, if not the run's")
    predict.add_argument("--pair-column", help="pair text column of INPUT, if the run classifies pairs and it is not the run's")
    predict.add_argument("--min-confidence", type=str, metavar="P", help="abstain below this calibrated score "
                         "(0 to 1): such rows get an empty predicted_label, abstained=true and their best guess in "
                         "suggested_label (default: the run's train.min_confidence, if set)")
    predict.add_argument("--coverage", type=str, metavar="C", help="decide this share of texts (e.g. 0.9), the most "
                         "confident ones: the threshold is chosen on the run's validation texts, and its validation "
                         "accuracy is reported")
    predict.add_argument("--chunk-rows", type=int, default=20000, metavar="N", help="rows read, classified and "
                         "written at a time: a file larger than memory streams through (default 20000)")
    predict.set_defaults(func=cmd_predict)


def _add_merge(sub) -> None:
    merge = sub.add_parser("merge", help="fold a lora/qlora run's adapters into a standalone model folder")
    merge.add_argument("run_dir", help="the output_dir of a finished lora or qlora run")
    merge.add_argument("output_dir", help="where to write the merged model")
    merge.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    merge.set_defaults(func=cmd_merge)


def _add_adapt(sub) -> None:
    ad = sub.add_parser("adapt", help="continue pretraining the recipe's model on unlabeled in-domain text "
                                      "(masked LM; causal LM with LoRA for decoders)")
    ad.add_argument("recipe", help="recipe YAML file (model.name, data.text_column, data.max_length)")
    ad.add_argument("overrides", nargs="*", help="recipe overrides, including data.unlabeled=FILE")
    ad.add_argument("--output", help="where to write the adapted model (default: OUTPUT_DIR-adapted)")
    ad.add_argument("--epochs", type=int, default=1, help="passes over the unlabeled text")
    ad.add_argument("--lr", type=float, default=5e-5, help="peak learning rate")
    ad.add_argument("--mlm-probability", type=float, default=0.15, help="share of tokens masked (encoders)")
    ad.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    ad.set_defaults(func=cmd_adapt)


def _add_compare(sub) -> None:
    comp = sub.add_parser("compare", help="train several strategies at several label budgets and seeds; report "
                                          "the learning curves and the transfer gain over scratch")
    comp.add_argument("recipe", help="recipe YAML file (its data, model and output_dir)")
    comp.add_argument("overrides", nargs="*", help="recipe overrides as dotted key=value")
    comp.add_argument("--strategies", help="comma-separated, from: base (logistic regression on frozen features), "
                      f"{', '.join(method_names())}, self_training, noisy_student (default: base,scratch,"
                      "feature_extraction,full); with --active-learning, from: random, least_confidence, entropy, "
                      "margin, margin_kmeans (default: random,margin,margin_kmeans)")
    comp.add_argument("--per-class", default="5,10,50,all", help="training examples per class: integers or all")
    comp.add_argument("--seeds", type=int, default=3, help="subsamples (and training seeds) per budget")
    comp.add_argument("--active-learning", action="store_true", help="simulate active learning instead: from a "
                      "seeded labeled start, each round retrains and each strategy picks the next batch from the pool "
                      "(labels hidden); writes OUTPUT_DIR/active_learning/")
    comp.add_argument("--start-per-class", type=int, default=2, help="--active-learning: labeled rows per class to "
                      "start from")
    comp.add_argument("--batch", type=int, help="--active-learning: rows labeled per round (default: one per class)")
    comp.add_argument("--rounds", type=int, default=8, help="--active-learning: rounds of labeling")
    comp.add_argument("--retrain", default="feature_extraction", help="--active-learning: what is retrained each "
                      "round, comma-separated: feature_extraction (a head on cached features), self_training, or a "
                      "method (a run per round)")
    comp.set_defaults(func=cmd_compare)


def _add_push(sub) -> None:
    pu = sub.add_parser("push", help="upload a run (model or adapters, tokenizer, labels) with a generated model card "
                                     "to the Hugging Face Hub")
    pu.add_argument("run_dir", help="a finished run folder (full, lp_ft, scratch, lora, qlora) or a merged folder")
    pu.add_argument("--repo-id", required=True, help="the Hub repository, OWNER/NAME (created if missing)")
    pu.add_argument("--private", action="store_true", help="create the repository as private")
    pu.add_argument("--revision", default="main", help="branch to push to (created if missing)")
    pu.add_argument("--dry-run", metavar="DIR", help="write exactly what would be uploaded into DIR (new or empty) "
                                                     "instead of uploading; needs no token or network")
    pu.add_argument("--base-model", help="Hub id of the base model, when the run was trained from a local folder")
    pu.add_argument("--license", help="license id for the model card (default: the embedded base model's, else `other`)")
    pu.add_argument("--commit-message", help="commit message (default: `textxfer: upload RUN_NAME`)")
    pu.set_defaults(func=cmd_push)


def _add_export_onnx(sub) -> None:
    ox = sub.add_parser("export-onnx", help="export a full or merged run to ONNX and check ONNX Runtime against "
                                            "PyTorch on its test set")
    ox.add_argument("run_dir", help="a finished full/lp_ft/scratch run folder or a `textxfer merge` folder")
    ox.add_argument("output_dir", help="where to write model.onnx, config.json, the tokenizer and labels")
    ox.add_argument("--check-file", help="texts to compare on (default: the run's test file)")
    ox.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs PyTorch comparison")
    ox.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    ox.add_argument("--quantize", choices=["int8"], help="int8 weights (ONNX Runtime dynamic quantization): about "
                    "4x smaller and faster on CPU; kept only if its accuracy on the check texts holds")
    ox.add_argument("--max-accuracy-drop", type=float, default=1.0, metavar="POINTS", help="--quantize: refuse the "
                    "int8 graph if its accuracy is more than this many points below the float model's (default 1)")
    ox.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    ox.set_defaults(func=cmd_export_onnx)


def _add_ensemble(sub) -> None:
    en = sub.add_parser("ensemble", help="combine finished runs trained on the same data into one classifier "
                                         "(the averaging rule chosen on their shared validation split)")
    en.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="two or more finished single-label runs with the "
                                                                    "same data and seed")
    en.add_argument("--output", required=True, help="where to write the ensemble folder (members are copied in)")
    en.add_argument("--rule", choices=["mean_log_prob", "mean_prob"],
                    help="how probabilities are averaged (default: the better one on validation)")
    en.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    en.set_defaults(func=cmd_ensemble)


def _add_tune(sub) -> None:
    tu = sub.add_parser("tune", help="search hyperparameters with Optuna (TPE, median pruning), scored on validation "
                                     "only; writes best_recipe.yaml (needs the `tune` extra)")
    tu.add_argument("recipe", help="recipe YAML file (its data, model and settings; the search varies some of them)")
    tu.add_argument("overrides", nargs="*", help="recipe overrides as dotted key=value, applied to every trial")
    tu.add_argument("--trials", type=int, default=20, help="finished trials (completed or pruned) the study should "
                                                          "hold; a resumed study adds the rest")
    tu.add_argument("--space", metavar="FILE", help="YAML search space (default: one per method; the one used is "
                                                   "written to OUTPUT/space.yaml)")
    tu.add_argument("--storage", metavar="URL", help="Optuna storage (default: sqlite:///OUTPUT/study.db); a database "
                                                    "URL shared by several machines lets them search together")
    tu.add_argument("--study-name", help="name of the study in the storage (default: the recipe file's name)")
    tu.add_argument("--output", metavar="DIR", help="where the trials and reports go (default: OUTPUT_DIR-tune)")
    tu.add_argument("--metric", help="validation score to maximize: macro_f1 (default), accuracy; multi-label "
                                     "micro_f1 (default), macro_f1, subset_accuracy; or loss (minimized)")
    tu.add_argument("--keep", choices=["best", "all", "none"], default="best", help="trial run folders to keep")
    tu.add_argument("--seed", type=int, help="the sampler's seed (default: the recipe's train.seed); give each "
                                             "machine of a shared study its own")
    tu.set_defaults(func=cmd_tune)


def _add_explain(sub) -> None:
    ex = sub.add_parser("explain", help="show which words made a run give a text its label (integrated gradients; "
                                        "needs the `explain` extra)")
    ex.add_argument("run_dir", help="a finished run folder (full, lp_ft, scratch, bitfit, feature_extraction, lora, "
                                    "qlora) or a merged folder")
    ex.add_argument("inputs", nargs="+", metavar="TEXT_OR_FILE", help="texts to explain, or one CSV/TSV/JSONL/parquet "
                                                                       "file with the run's text column")
    ex.add_argument("--label", help="explain this label instead of the predicted one")
    ex.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page with the words shaded")
    ex.add_argument("--json", metavar="FILE", help="also write the per-token and per-word scores as JSON (`-`: stdout)")
    ex.add_argument("--steps", type=int, default=50, help="integration steps (more: closer to exact, slower)")
    ex.add_argument("--text-column", help="text column(s) of FILE, comma-separated, if not the run's")
    ex.set_defaults(func=cmd_explain)


def _add_audit(sub) -> None:
    au = sub.add_parser("audit", help="check a recipe's data before trusting a score: duplicates, leakage between "
                                      "splits, conflicting labels, near-duplicates, lengths (and label errors)")
    au.add_argument("recipe", help="recipe YAML file (its data files, model and data.max_length)")
    au.add_argument("overrides", nargs="*", help="recipe overrides as dotted key=value, e.g. data.test=FILE")
    au.add_argument("--output", help="where to write audit.md, audit.json and the CSVs (default: OUTPUT_DIR-audit)")
    au.add_argument("--label-errors", action="store_true", help="also rank rows whose label looks wrong (confident "
                    "learning on out-of-fold probabilities of a linear head on the frozen embeddings)")
    au.add_argument("--folds", type=int, default=5, help="--label-errors: folds of the out-of-fold probabilities")
    au.add_argument("--near-duplicate-threshold", type=float, default=0.95, metavar="COSINE",
                    help="cosine similarity of the frozen model's mean-pooled embeddings from which two texts of "
                         "different splits count as near-duplicates")
    au.add_argument("--no-near-duplicates", action="store_true", help="skip the model-based near-duplicate search "
                                                                      "(the exact checks need no model)")
    au.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    au.set_defaults(func=cmd_audit)


def _add_shift(sub) -> None:
    sh = sub.add_parser("shift", help="is new, unlabeled text like the text a run was trained on? (classifier "
                                      "two-sample AUC, MMD permutation test, change in predicted labels)")
    sh.add_argument("run_dir", help="a finished run folder (its recipe.yaml names the training data)")
    sh.add_argument("new_file", help="the new texts: a CSV/TSV/JSONL/parquet file with the run's text column, or a "
                                     ".txt file with one text per line")
    sh.add_argument("--output", help="where to write shift.json and shift.png (default: RUN_DIR-shift)")
    sh.add_argument("--text-column", help="text column of NEW_FILE, if not the run's")
    sh.add_argument("--max-texts", type=int, default=5000, help="texts per side, drawn at random (seeded) from larger sets")
    sh.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    sh.set_defaults(func=cmd_shift)


def _add_select(sub) -> None:
    se = sub.add_parser("select", help="choose the unlabeled texts to label next (active learning), with the run's "
                                       "suggested label and score")
    se.add_argument("run_dir", help="a finished single-label run folder")
    se.add_argument("pool", help="CSV/TSV/JSONL/parquet file of unlabeled texts (the run's text column)")
    se.add_argument("-n", type=int, default=200, help="how many texts to pick")
    se.add_argument("--strategy", default="margin", help="random, least_confidence, entropy, margin (smallest gap "
                    "between the two top scores first), or margin_kmeans (margin spread over k-means clusters of the "
                    "embeddings, so one batch is not many copies of one confusion)")
    se.add_argument("-o", "--output", required=True, help="where to write the picked rows + rank, suggested_label, "
                    "score (.csv, .tsv, .jsonl or .parquet)")
    se.add_argument("--labeled", nargs="+", metavar="FILE", help="more labeled files whose texts to leave out (the "
                    "run's own train/validation/test files always are)")
    se.add_argument("--seed", type=int, default=0, help="seed of random and of the k-means clustering")
    se.add_argument("--text-column", help="text column(s) of POOL, comma-separated, if not the run's")
    se.add_argument("--pair-column", help="pair text column of POOL, if the run classifies pairs and it is not the run's")
    se.add_argument("--raw-csv", action="store_true", help="write CSV/TSV cells as they are (no formula escaping)")
    se.set_defaults(func=cmd_select)


def _add_serve(sub) -> None:
    sv = sub.add_parser("serve", help="serve a run (or an ONNX export) over HTTP: POST /predict with dynamic "
                                      "batching, GET /health, GET /metadata (needs the `serve` extra)")
    sv.add_argument("run_dir", help="a finished run folder, or a `textxfer export-onnx` folder")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only; 0.0.0.0: "
                                                        "every interface, with no authentication)")
    sv.add_argument("--port", type=int, default=8000, help="port to listen on")
    sv.add_argument("--backend", choices=["torch", "onnx"], help="torch (a run folder) or onnx (an export folder, "
                                                                  "ONNX Runtime); default: what the folder is")
    sv.add_argument("--max-batch", type=int, default=64, help="most texts run through the model at once")
    sv.add_argument("--max-wait-ms", type=float, default=5.0, help="under load, how long to wait for more requests "
                                                                   "to fill a batch (a lone request never waits)")
    sv.add_argument("--max-texts", type=int, default=256, help="most texts per request (more: 413)")
    sv.add_argument("--max-chars", type=int, default=20000, help="most characters per text (more: 413)")
    sv.set_defaults(func=cmd_serve)


def _quiet_libraries(verbose: bool) -> None:
    """What other libraries print that a user does not need (`-v` shows it): bitsandbytes' note that
    its optional `kernels` package is missing, printed on import on AVX-512 CPUs even when nothing is
    quantized; transformers' load reports and local-file progress bars (see textxfer.models.quiet)."""
    if verbose:
        from ..models.quiet import set_verbose  # imports transformers: only when asked for

        set_verbose(True)
        return
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Entry point; bad input ends with one paragraph on stderr and exit status 2, never a traceback."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # `key=value` overrides after the flags: argparse leaves them over; they are overrides all the same
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    cli_handlers(verbose=args.verbose)
    _quiet_libraries(args.verbose)
    try:
        return args.func(args)
    except TextxferError as exc:
        print(f"textxfer: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("textxfer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
