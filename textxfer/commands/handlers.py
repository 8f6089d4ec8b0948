"""What each `textxfer` command does once its arguments are parsed (textxfer.commands.cli declares
the arguments): each handler imports the modules it needs when it runs, so `textxfer --help` and a
mistyped argument answer without loading torch, and returns the exit status."""
from __future__ import annotations

from ..errors import TextxferError
from ..log import get_logger

log = get_logger()


def cmd_train(args) -> int:
    from ..config import load_recipe
    from ..training.trainer import is_main_process, train

    recipe = load_recipe(args.recipe, [*args.overrides, *(["overwrite=true"] if args.overwrite else [])])
    if recipe.push_to_hub is not None:  # token, offline mode, base model: fail now, not after training
        from .push import check_can_push

        check_can_push(recipe)
    metrics = train(recipe)
    if not is_main_process():
        return 0
    split = "test" if "test" in metrics else "validation"
    scores = metrics[split]
    shown = ", ".join(f"{key.replace('_', '-')} {scores[key]:.4f}"
                      for key in ("accuracy", "micro_f1", "macro_f1", "subset_accuracy") if key in scores)
    extra = ""
    if "precision_recall" in scores:
        positive = scores["precision_recall"]["positive_label"]
        recall = scores["per_class"][positive]["recall"]
        precision = scores["per_class"][positive]["precision"]
        extra = f"; {positive}: precision {precision:.4f}, recall {recall:.4f}"
    log.info(f"{split} {shown} on {scores['n']} rows{extra}; run saved in {recipe.output_dir}")
    if recipe.push_to_hub is not None:
        from .push import push

        settings = recipe.push_to_hub
        try:
            result = push(recipe.output_dir, settings.repo_id, settings.private, settings.revision,
                          settings.base_model, settings.license)
        except TextxferError as exc:
            raise TextxferError(f"{exc} The run itself is saved in {recipe.output_dir}; push it later with `textxfer "
                                f"push {recipe.output_dir} --repo-id {settings.repo_id}`.") from None
        _print_push(result)
    return 0


def _print_push(result) -> None:
    log.info(f"pushed {len(result.files)} files ({', '.join(result.files)}) to {result.repo_url} "
             f"(revision {result.revision}); commit {result.commit_url}")


def cmd_push(args) -> int:
    from .push import dry_run, push

    if args.dry_run:
        result = dry_run(args.run_dir, args.dry_run, args.repo_id, args.base_model, args.license, args.revision)
        size = sum((result.folder / name).stat().st_size for name in result.files)
        log.info(f"dry run: wrote the {len(result.files)} files a push to {args.repo_id} (revision "
                 f"{result.revision}) would upload, {size / 2**20:.1f} MiB, to {result.folder}: "
                 f"{', '.join(result.files)}" + (f"; not uploaded: {', '.join(result.left_out)}" if result.left_out else ""))
        return 0
    _print_push(push(args.run_dir, args.repo_id, args.private, args.revision, args.base_model, args.license,
                     args.commit_message))
    return 0


def cmd_export_onnx(args) -> int:
    from .export_onnx import export_onnx

    out, check = export_onnx(args.run_dir, args.output_dir, check=not args.no_check, check_file=args.check_file,
                             opset=args.opset, overwrite=args.overwrite, quantize=args.quantize,
                             max_accuracy_drop=args.max_accuracy_drop)
    if check is not None:
        log.info(check.summary())
    log.info(f"exported {args.run_dir} to {out / 'model.onnx'} (with config.json, tokenizer and labels)")
    return 0


def cmd_predict(args) -> int:
    from ..data.io import check_readable
    from ..data.tables_out import check_output_path
    from ..inference import load_classifier
    from ..inference.batch import launched_processes, predict_file

    from ..evaluation.abstention import check_coverage, check_min_confidence

    if args.min_confidence is not None and args.coverage is not None:
        raise TextxferError("Give either --min-confidence (a threshold on the calibrated score) or --coverage (the "
                            "share of texts to decide, turned into a threshold on validation), not both.")
    threshold = check_min_confidence(args.min_confidence)  # the arguments and paths first: loading takes seconds
    coverage = None if args.coverage is None else check_coverage(args.coverage)
    if args.chunk_rows < 1:
        raise TextxferError(f"--chunk-rows is {args.chunk_rows}; give a positive number of rows to read at a time.")
    check_readable(args.input, "input")
    check_output_path(args.output, [args.input])
    processes, device = launched_processes()  # under `accelerate launch`: share the batches
    classifier = load_classifier(args.run_dir, device)
    if coverage is not None:
        threshold, kept, accuracy = classifier.threshold_for_coverage(coverage)
        if processes.is_main:
            log.info(f"--coverage {coverage:g}: minimum confidence {threshold:.4f}, which keeps {kept:.1%} "
                     f"of the run's validation texts at validation accuracy {accuracy:.4f}")
    text_column = args.text_column.split(",") if args.text_column and "," in args.text_column else args.text_column
    n = predict_file(classifier, args.input, args.output, text_column, args.pair_column,
                     escape_formulas=not args.raw_csv, min_confidence=threshold, chunk_rows=args.chunk_rows,
                     processes=processes)
    if processes.is_main:
        log.info(f"wrote {n} predictions to {args.output}"
                 + (f" ({processes.count} processes)" if processes.count > 1 else ""))
    return 0


def cmd_merge(args) -> int:
    from .merge import merge

    out = merge(args.run_dir, args.output_dir, overwrite=args.overwrite)
    log.info(f"merged the adapters of {args.run_dir} into a standalone model in {out} "
             f"(loads with AutoModelForSequenceClassification; labels kept)")
    return 0


def cmd_adapt(args) -> int:
    from .adapt import adapt
    from ..config import load_recipe

    recipe = load_recipe(args.recipe, [*args.overrides, *(["overwrite=true"] if args.overwrite else [])])
    adapt(recipe, args.output, args.epochs, args.lr, args.mlm_probability)
    return 0


def cmd_compare(args) -> int:
    if args.active_learning:
        from . import active_learning as al

        al.simulate_command(args.recipe, args.overrides, al.parse_strategies(args.strategies), args.seeds,
                            args.start_per_class, args.batch, args.rounds, al.parse_retrain(args.retrain))
        return 0
    from .compare import compare, parse_budgets, parse_strategies

    compare(args.recipe, args.overrides, parse_strategies(args.strategies or "base,scratch,feature_extraction,full"),
            parse_budgets(args.per_class), args.seeds)
    return 0


def cmd_ensemble(args) -> int:
    from .ensemble import build_ensemble

    metrics = build_ensemble(args.run_dirs, args.output, args.rule, overwrite=args.overwrite)
    split = "test" if "test" in metrics else "validation"
    best = max(metrics["members"], key=lambda m: m[split]["accuracy"])
    scores = metrics[split]
    log.info(f"ensemble of {len(metrics['members'])} runs ({metrics['combine']}): {split} accuracy "
             f"{scores['accuracy']:.4f}, macro-f1 {scores['macro_f1']:.4f} on {scores['n']} rows (best member: "
             f"{best['run']} {best[split]['accuracy']:.4f}); saved in {args.output}")
    return 0


def cmd_tune(args) -> int:
    from .tune import tune

    tune(args.recipe, args.overrides, args.trials, space=args.space, storage=args.storage, study_name=args.study_name,
         output=args.output, metric=args.metric, keep=args.keep, seed=args.seed)
    return 0


def cmd_explain(args) -> int:
    from .explain import explain_command

    explain_command(args.run_dir, args.inputs, label=args.label, html=args.html, json_path=args.json,
                    steps=args.steps, text_column=args.text_column)
    return 0


def cmd_audit(args) -> int:
    from ..config import load_recipe
    from .audit import audit

    recipe = load_recipe(args.recipe, args.overrides)
    audit(recipe, args.output, args.near_duplicate_threshold, not args.no_near_duplicates, args.label_errors,
          args.folds, overwrite=args.overwrite)
    return 0


def cmd_shift(args) -> int:
    from .shift import shift

    shift(args.run_dir, args.new_file, args.output, text_column=args.text_column, max_texts=args.max_texts,
          overwrite=args.overwrite)
    return 0


def cmd_select(args) -> int:
    from .select import select_to_label

    text_column = args.text_column.split(",") if args.text_column and "," in args.text_column else args.text_column
    done = select_to_label(args.run_dir, args.pool, args.output, args.n, args.strategy, args.seed, text_column,
                           args.pair_column, args.labeled or [], escape_formulas=not args.raw_csv)
    log.info(f"wrote the {done.written} texts to label next ({args.strategy}) to {args.output}; left out of the "
             f"{done.pool} pool texts: {done.already_labeled} already labeled, {done.repeats} repeats")
    return 0


def cmd_serve(args) -> int:
    from ..serving.server import serve

    serve(args.run_dir, args.host, args.port, args.backend, args.max_batch, args.max_wait_ms, args.max_texts,
          args.max_chars, access_log=args.verbose)
    return 0
