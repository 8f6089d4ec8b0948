"""The model card (README.md with Hub metadata) of a run, generated from the run folder.

The YAML header (`huggingface_hub.ModelCardData`) carries base_model, library_name, pipeline_tag, tags,
license and a model-index with the test metrics (`EvalResult`). The body says how the model was made
(method, strategy, base model, hyperparameters), what it was trained on (file names, row counts and the
label distribution, never the texts), how well it does (test metrics, per-class F1, the confusion
matrix), how to load it with stock transformers / peft, and the textxfer command that reproduces it.
"""
from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from ..config import recipe_from_dict
from ..data.audit_checks import card_section
from ..data.splits import load_splits
from ..errors import TextxferError
from ..evaluation.extra_metrics import card_results
from ..evaluation.slices import card_section as group_section
from ..methods import get_method
from ..runs.info import RunInfo

@dataclass
class Base:
    """The base model as the card names it: a Hub id where there is one."""

    hub_id: str | None
    name: str  # as the recipe says (alias, folder name, or Hub id)
    license: str | None = None
    note: str | None = None  # e.g. how the embedded copy differs from the Hub's
    explicit: bool = False  # named by the user (--base-model), not derived from the recipe


@dataclass
class Split:
    split: str
    source: str  # markdown: the file name (never its content), or how the split was made
    rows: int | None
    counts: dict = field(default_factory=dict)  # label -> rows (rows carrying it, multi-label)


GENERIC_STEMS = {"train", "training", "test", "testing", "dev", "valid", "validation", "val", "eval", "data"}


def file_label(path: str) -> str:
    """A data file as the card names it: its name, with its folder when the name alone says nothing
    (`banking77/test.csv`); never more of the local path."""
    path = Path(path)
    if path.stem.lower() in GENERIC_STEMS and path.parent.name not in ("", "."):
        return f"{path.parent.name}/{path.name}"
    return path.name


def data_summary(recipe: dict, labels: list[str], metrics: dict) -> tuple[list[Split], str | None]:
    """Rows and label counts per split, from the data files when they are still where the recipe says
    (the exact split of the run: same seed), else the test support recorded in metrics.json."""
    data = recipe.get("data") or {}
    try:
        parsed = recipe_from_dict({k: v for k, v in recipe.items() if k != "push_to_hub"}, "the run's recipe.yaml")
        splits = load_splits(parsed.data, parsed.train.seed)
    except (TextxferError, OSError, ValueError, KeyError):
        splits = None
    train_name = f"`{file_label(data.get('train') or 'train')}`"
    if splits is not None:
        def counts(dataset) -> dict:
            ids = dataset["label"]
            tally = Counter(j for row in ids for j, on in enumerate(row) if on) if splits.multi_label else Counter(ids)
            return {label: int(tally.get(i, 0)) for i, label in enumerate(splits.labels.labels)}

        validation_source = (f"`{file_label(data['validation'])}`" if data.get("validation") else
                             f"{data.get('validation_split', 0.1):.0%} of {train_name}, held out stratified "
                             f"(seed {(recipe.get('train') or {}).get('seed', 42)})")
        train_source = train_name if data.get("validation") else f"{train_name} less the validation rows"
        out = [Split("train", train_source, len(splits.train), counts(splits.train)),
               Split("validation", validation_source, len(splits.validation), counts(splits.validation))]
        if splits.test is not None:
            out.append(Split("test", f"`{file_label(data.get('test') or 'test')}`", len(splits.test), counts(splits.test)))
        return out, None
    note = (f"The data files were not found when this card was written, so only the test rows recorded with the "
            f"run are counted.")
    out = [Split("train", train_name, None)]
    validation = metrics.get("validation") or {}
    out.append(Split("validation", f"`{file_label(data['validation'])}`" if data.get("validation") else f"held out from {train_name}",
                     validation.get("n")))
    test = metrics.get("test")
    if test:
        per_class = test.get("per_class", {})
        out.append(Split("test", f"`{file_label(data.get('test') or 'test')}`", test.get("n"),
                         {l: int(per_class[l]["support"]) for l in labels if l in per_class}))
    return out, note


def _metadata(repo_id: str, base: Base, license: str, adapter: bool, info: RunInfo, recipe: dict, metrics: dict):
    tags = ["textxfer", "text-classification", get_method(info.trained_method).card_tag]
    if adapter:
        tags.insert(2, "peft")
    if info.merged_from:
        tags.append("merged-lora")
    if info.multi_label:
        tags.append("multi-label-classification")
    results = []
    for split in ("test", "validation"):
        scores = metrics.get(split)
        if not scores:
            continue
        data = recipe.get("data") or {}
        file = file_label(data.get(split) or data.get("train") or split)
        common = {"task_type": "text-classification", "task_name": "Text Classification",
                  "dataset_type": Path(file).parent.name or Path(file).stem, "dataset_name": file, "dataset_split": split}
        common.update(_dataset_fields(info.dataset, split))
        named = [("accuracy", "Accuracy", None, "accuracy"), ("f1", "Macro F1", {"average": "macro"}, "macro_f1"),
                 ("f1", "Micro F1", {"average": "micro"}, "micro_f1"),
                 ("accuracy", "Subset accuracy", {"subset": True}, "subset_accuracy")]
        for metric_type, name, args, key in named:
            if key in scores:
                results.append(EvalResult(**common, metric_type=metric_type, metric_name=f"{split.title()} {name}",
                                          metric_value=round(float(scores[key]), 4), metric_args=args))
        results += [EvalResult(**common, metric_type=kind, metric_name=f"{split.title()} {name}", metric_value=value)
                    for kind, name, value in card_results(scores)]  # train.extra_metrics (`evaluate`)
        break  # the test split when there is one, else validation
    return ModelCardData(
        base_model=base.hub_id, library_name="peft" if adapter else "transformers", pipeline_tag="text-classification",
        license=license, tags=tags, metrics=sorted({r.metric_type for r in results}) or None,
        model_name=repo_id.split("/")[-1], eval_results=results or None,
        datasets=[info.dataset["dataset"]] if info.dataset and info.dataset.get("kind") == "hub" else None,
    )


def _dataset_fields(dataset: dict | None, split: str) -> dict:
    """A `data.dataset` run's model-index fields: the dataset id, config, revision and split name it read."""
    if not dataset:
        return {}
    name = (dataset.get("splits") or {}).get(split) or split
    fields = {"dataset_type": dataset["dataset"], "dataset_name": dataset["dataset"], "dataset_split": name}
    if dataset.get("kind") != "hub":
        fields["dataset_type"] = fields["dataset_name"] = Path(dataset["dataset"]).name
    fields.update({k: v for k, v in (("dataset_config", dataset.get("config")),
                                     ("dataset_revision", dataset.get("revision"))) if v})
    return fields


def dataset_sources(splits: list, dataset: dict | None, recipe: dict) -> list:
    """The card's split sources for a `data.dataset` run: the dataset (and revision) and split read."""
    if not dataset:
        return splits
    names = dataset.get("splits") or {}
    label = Path(dataset["dataset"]).name if dataset.get("kind") != "hub" else dataset["dataset"]
    revision = f" at revision `{str(dataset['revision'])[:12]}`" if dataset.get("revision") else ""
    data, seed = recipe.get("data") or {}, (recipe.get("train") or {}).get("seed", 42)
    train = f"`{label}`{revision}, split `{names.get('train', 'train')}`"
    sources = {"train": train if names.get("validation") else f"{train} less the validation rows",
               "validation": (f"`{label}`{revision}, split `{names['validation']}`" if names.get("validation") else
                              f"{data.get('validation_split', 0.1):.0%} of {train}, held out stratified (seed {seed})"),
               "test": f"`{label}`{revision}, split `{names.get('test')}`"}
    return [dataclasses.replace(s, source=sources.get(s.split, s.source)) for s in splits]


PLOTS = ("confusion_matrix.png", "label_scores.png", "precision_recall.png", "learning_curves.png", "calibration.png",
         "risk_coverage.png", "groups.png")


def plot_sources(run_dir: Path) -> dict[str, Path]:
    """The run's plots; a merged folder (which has none) takes them from the run it was merged from."""
    merged_from = RunInfo.read(run_dir).merged_from
    folders = [run_dir] + ([Path(merged_from)] if merged_from else [])
    found = {}
    for name in PLOTS:
        for folder in folders:
            if (folder / name).is_file():
                found[name] = folder / name
                break
    return found


def build_card(run_dir: Path, repo_id: str, base: Base, license: str, adapter: bool) -> str:
    """README.md text (YAML header + markdown) for the run in `run_dir`, as pushed to `repo_id`."""
    info = RunInfo.read(run_dir)
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8")) if (run_dir / "recipe.yaml").is_file() else {}
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")) if (run_dir / "metrics.json").is_file() else {}
    recipe = recipe or {}
    labels = info.labels
    splits, data_note = data_summary(recipe, labels, metrics)
    splits = dataset_sources(splits, info.dataset, recipe)
    card_data = _metadata(repo_id, base, license, adapter, info, recipe, metrics)
    body = "\n\n".join(part for part in (
        _intro(repo_id, base, info, metrics, adapter),
        _results(run_dir, info, metrics, labels),
        _calibration(run_dir, info, metrics),
        group_section(metrics, "groups.png" if "groups.png" in plot_sources(run_dir) else None),
        _data(splits, data_note, labels),
        card_section(run_dir),
        _training(info, recipe, metrics),
        _usage(repo_id, info, adapter, _is_decoder(run_dir)),
        _reproduce(repo_id, info, recipe, run_dir, base),
    ) if part)
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}\n")
    return str(card)


def _fmt(value, digits: int = 4) -> str:
    return "–" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else f"{value:,}")


def _intro(repo_id: str, base: Base, info: RunInfo, metrics: dict, adapter: bool) -> str:
    method = info.trained_method
    base_link = f"[{base.hub_id}](https://huggingface.co/{base.hub_id})" if base.hub_id else f"`{base.name}` (a local model folder)"
    kind = "multi-label text classifier" if info.multi_label else "text classifier"
    lines = [f"# {repo_id.split('/')[-1]}", "",
             f"A {kind} for {len(info.labels)} labels, trained with textxfer from {base_link}.", "",
             f"- **Method**: `{method}`: " + (f"LoRA adapters and a new classification head, merged into the base "
                                              f"weights afterwards (`textxfer merge`): a standalone model."
                                              if info.merged_from else f"{get_method(method).card_text}.")]
    if adapter:
        lines.append("- **This repository holds the adapters and the trained head** (`adapter_model.safetensors`), the "
                     "labelled `config.json` and the tokenizer; the base model weights come from the base model's repository.")
    if base.note:
        lines.append(f"- **Base model note**: {base.note}")
    scores = metrics.get("test")
    if scores:
        shown = ", ".join(f"{name} {scores[key]:.4f}" for key, name in (
            ("accuracy", "accuracy"), ("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"),
            ("subset_accuracy", "subset accuracy")) if key in scores)
        lines.append(f"- **Test set**: {shown} on {scores['n']:,} rows.")
    return "\n".join(lines)


def _results(run_dir: Path, info: RunInfo, metrics: dict, labels: list[str]) -> str:
    scores, validation = metrics.get("test"), metrics.get("validation") or {}
    lines = ["## Evaluation", ""]
    keys = [("accuracy", "accuracy"), ("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"),
            ("subset_accuracy", "subset accuracy")]
    lines += ["| metric | validation (best epoch) | test |", "|---|---:|---:|"]
    for key, name in keys:
        if key in validation or (scores and key in scores):
            lines.append(f"| {name} | {_fmt(validation.get(key))} | {_fmt((scores or {}).get(key))} |")
    lines.append(f"| rows | {_fmt(validation.get('n'))} | {_fmt((scores or {}).get('n'))} |")
    if not scores:
        lines += ["", "The run had no test set: the figures are from validation, which also chose the best epoch."]
        return "\n".join(lines)
    decision = info.decision
    if decision.get("thresholds"):
        lines += ["", "Multi-label decisions use one threshold per label, tuned on validation (in `textxfer.json`, "
                      "column `threshold` below); stock code that thresholds the sigmoid at 0.5 gives other label sets."]
    elif decision.get("threshold") is not None:
        lines += ["", f"Decisions use a threshold of {decision['threshold']:.4f} on P({decision.get('positive_label')}), "
                      f"chosen on validation (in `textxfer.json`); stock argmax decisions differ near it."]
    lines += ["", "### Per-class results (test set)", "",
              "| id | label | precision | recall | F1 | support |" + (" threshold |" if decision.get("thresholds") else ""),
              "|---:|---|---:|---:|---:|---:|" + ("---:|" if decision.get("thresholds") else "")]
    per_class = scores.get("per_class", {})
    for i, label in enumerate(labels):
        row = per_class.get(label, {})
        cells = [str(i), f"`{label}`", _fmt(row.get("precision")), _fmt(row.get("recall")), _fmt(row.get("f1-score")),
                 _fmt(row.get("support"))]
        if decision.get("thresholds"):
            cells.append(_fmt(decision["thresholds"].get(label)))
        lines.append("| " + " | ".join(cells) + " |")
    for image, caption in (("confusion_matrix.png", "Confusion matrix on the test set (rows: true label)"),
                           ("label_scores.png", "Precision, recall and F1 per label on the test set"),
                           ("precision_recall.png", "Precision-recall curve of the positive class (test set)"),
                           ("learning_curves.png", "Training loss and validation scores per epoch")):
        if image in plot_sources(run_dir):
            lines += ["", f"![{caption}]({image})"]
    return "\n".join(lines)


def _calibration(run_dir: Path, info: RunInfo, metrics: dict) -> str:
    """Calibration before and after on test, and for single-label runs what deciding only the most
    confident texts gives (risk-coverage)."""
    test = metrics.get("test") or {}
    view = test.get("calibration")
    if not view:
        return ""
    calibration = info.calibration or {}
    if "temperature" in calibration and "scale" not in calibration:
        how = (f"Scores are calibrated by temperature scaling (Guo et al. 2017): the logits are divided by "
               f"T = {calibration['temperature']:.4f}, fitted on the validation set, before the softmax. This never "
               f"changes the predicted label. Stock code that takes a plain softmax of the logits gets the raw, "
               f"uncalibrated scores; divide by T first (it is in `textxfer.json`).")
    elif calibration:
        how = (f"Each label's sigmoid is calibrated on its own ({calibration['method']} scaling, chosen on held-out "
               f"validation rows; per-label `scale` and `bias` in `textxfer.json`: sigmoid(scale * logit + bias)); the "
               f"decision thresholds were tuned after calibration.")
    else:
        how = "The scores are raw (the run was trained with `train.calibration: none`)."
    lines = ["## Calibration and abstention", "", how, "",
             "| test set | ECE (15 bins) | Brier | NLL |", "|---|---:|---:|---:|"]
    for key, name in (("before", "raw scores"), ("after", "calibrated")):
        if key in view:
            row = view[key]
            lines.append(f"| {name} | {row['ece']:.4f} | {row['brier']:.4f} | {row['nll']:.4f} |")
    risk = test.get("risk_coverage")
    if risk and risk.get("n"):
        lines += ["", "Deciding only the texts the model is surest of (the rest go to a person): test accuracy "
                      "by the share of texts decided.", "",
                  "| coverage | " + " | ".join(f"{float(c):.0%}" for c in risk["accuracy_at_coverage"]) + " |",
                  "|---|" + "---:|" * len(risk["accuracy_at_coverage"]),
                  "| test accuracy | " + " | ".join(f"{v['accuracy']:.4f}" for v in risk["accuracy_at_coverage"].values())
                  + " |"]
        reach = ((metrics.get("validation") or {}).get("risk_coverage") or {}).get("coverage_at_accuracy", {})
        reached = [f"{float(target):.0%} at coverage {v['coverage']:.1%} (minimum confidence {v['threshold']:.3f})"
                   for target, v in reach.items() if v]
        if reached:
            lines += ["", "Validation accuracy reaches " + "; ".join(reached) + "."]
        if info.decision.get("min_confidence") is not None:
            lines += ["", f"This run abstains below a calibrated score of {info.decision['min_confidence']:.3f} "
                          f"(`train.min_confidence`)."]
    for image, caption in (("calibration.png", "Reliability diagram on the test set, before and after calibration"),
                           ("risk_coverage.png", "Accuracy against coverage on validation and test")):
        if image in plot_sources(run_dir):
            lines += ["", f"![{caption}]({image})"]
    return "\n".join(lines)


def _data(splits: list[Split], note: str | None, labels: list[str]) -> str:
    lines = ["## Training data", "",
             "Counts only: the texts themselves are not part of this repository.", "",
             "| split | source | rows |", "|---|---|---:|"]
    lines += [f"| {s.split} | {s.source} | {_fmt(s.rows)} |" for s in splits]
    with_counts = [s for s in splits if s.counts]
    if with_counts:
        lines += ["", "Label distribution (rows per label" + (", a row counts for each of its labels" if len(
            with_counts) and sum(sum(s.counts.values()) for s in with_counts) > sum(s.rows or 0 for s in with_counts)
            else "") + "):", "",
                  "| label | " + " | ".join(s.split for s in with_counts) + " |",
                  "|---|" + "---:|" * len(with_counts)]
        lines += [f"| `{label}` | " + " | ".join(_fmt(s.counts.get(label, 0)) for s in with_counts) + " |" for label in labels]
    if note:
        lines += ["", note]
    return "\n".join(lines)


def _training(info: RunInfo, recipe: dict, metrics: dict) -> str:
    model, train, data = recipe.get("model") or {}, recipe.get("train") or {}, recipe.get("data") or {}
    rows = [("method", info.trained_method)]
    keys = [("train", "epochs"), ("train", "min_steps"), ("train", "lr"), ("train", "batch_size"),
            ("train", "gradient_accumulation_steps"), ("train", "warmup_ratio"), ("train", "weight_decay"),
            ("train", "max_grad_norm"), ("train", "mixed_precision"), ("train", "seed"), ("data", "max_length"),
            ("data", "long_text"), ("train", "early_stopping_patience"), ("train", "class_weights"), ("train", "sampler"),
            ("train", "loss"), ("model", "freeze_layers"), ("train", "layer_lr_decay"), ("train", "gradual_unfreezing"),
            ("train", "l2_sp"), ("model", "pooler_init")]
    sections = {"train": train, "model": model, "data": data}
    for section, key in keys:
        value = sections[section].get(key)
        if value not in (None, False) and not (key == "class_weights" and value == "none"):
            rows.append((f"{section}.{key}", value))
    if get_method(info.trained_method).adapters:
        for key, value in (model.get("lora") or info.lora or {}).items():
            rows.append((f"model.lora.{key}", value))
    lines = ["## Training procedure", "", "| setting | value |", "|---|---|"]
    lines += [f"| `{k}` | `{json.dumps(v) if isinstance(v, (list, dict)) else v}` |" for k, v in rows]
    stats = metrics.get("train") or {}
    if stats:
        parts = []
        if "epochs_run" in stats:
            parts.append(f"{stats['epochs_run']} epoch(s) run, best epoch {stats.get('best_epoch', '–')}")
        if "wall_seconds" in stats:
            parts.append(f"{stats['wall_seconds']:.0f} s of training at {stats.get('samples_per_second', 0):.1f} "
                         f"samples/s on {stats.get('num_processes', 1)} process(es)")
        if "trainable_parameters" in stats:
            parts.append(f"{stats['trainable_parameters']:,} trainable of {stats.get('total_parameters', 0):,} parameters")
        lines += ["", "; ".join(parts) + "."]
    return "\n".join(lines)


def _is_decoder(run_dir: Path) -> bool:
    """Decoder-only models classify from the last non-padding token (causal LM types without a masked LM)."""

    try:
        model_type = json.loads((run_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return False
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def _usage(repo_id: str, info: RunInfo, adapter: bool, decoder: bool) -> str:
    multi = info.multi_label
    pair = info.text_pair_column
    call = 'tokenizer(["first text", "second text"], ["its pair", "its pair"], ' if pair else 'tokenizer(["first text", "second text"], '
    call += f'padding=True, truncation=True, max_length={info.max_length}, return_tensors="pt")'
    scores = "logits.sigmoid()  # one probability per label" if multi else "logits.softmax(-1)"
    if adapter:
        load = (f'from peft import AutoPeftModelForSequenceClassification\n'
                f'from transformers import AutoConfig, AutoTokenizer\n\n'
                f'repo = "{repo_id}"\n'
                f'config = AutoConfig.from_pretrained(repo)  # the trained head: labels and pad token\n'
                f'model = AutoPeftModelForSequenceClassification.from_pretrained(\n'
                f'    repo, num_labels=config.num_labels, id2label=config.id2label, label2id=config.label2id,\n'
                f'    pad_token_id=config.pad_token_id).eval()\n'
                f'tokenizer = AutoTokenizer.from_pretrained(repo)\n')
        intro = ("Stock peft loads the base model named in `adapter_config.json` and puts the adapters and the trained "
                 "head on it. The base model's own config has no labels (a head of its default size), so pass the "
                 "labels from this repository's `config.json`; without them loading stops with a size mismatch of the "
                 "head. `model.merge_and_unload()` turns it into a plain transformers model.")
    else:
        load = (f'from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n'
                f'repo = "{repo_id}"\n'
                f'model = AutoModelForSequenceClassification.from_pretrained(repo).eval()  # id2label included\n'
                f'tokenizer = AutoTokenizer.from_pretrained(repo)\n')
        intro = "Stock transformers loads the model, the label names (`model.config.id2label`) and the tokenizer:"
    code = (f"```python\nimport torch\n{load}\n"
            f"inputs = {call}\n"
            f"with torch.no_grad():\n"
            f"    probabilities = model(**inputs).{scores}\n")
    if multi:
        code += "print([[model.config.id2label[j] for j, p in enumerate(row) if p > 0.5] for row in probabilities])\n```"
    else:
        code += "print([model.config.id2label[int(i)] for i in probabilities.argmax(-1)])\n```"
    lines = ["## How to use", "", intro, "", code]
    if not adapter and not pair:
        lines += ["", "Or with a pipeline:", "", f'```python\nfrom transformers import pipeline\n\nclassifier = pipeline('
                  f'"text-classification", model="{repo_id}")\nclassifier("an example text")\n```']
    notes = []
    if info.long_text != "truncate":
        notes.append(f"textxfer scored long texts with `data.long_text={info.long_text}` (see `textxfer.json`); the "
                     f"snippet above truncates at {info.max_length} tokens instead.")
    if decoder:
        notes.append("Decoder models read the last non-padding token: pad batches on the left with "
                     "`position_ids=(inputs.attention_mask.cumsum(-1) - 1).clamp(min=0)` passed to the model, or on the "
                     "right, and the predictions match textxfer's.")
    if get_method(info.trained_method).quantized:
        notes.append("The adapters were trained on a 4-bit NF4 base: pass `quantization_config=BitsAndBytesConfig("
                     "load_in_4bit=True, bnb_4bit_quant_type=\"nf4\")` to reproduce training-time predictions exactly.")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def _reproduce(repo_id: str, info: RunInfo, recipe: dict, run_dir: Path, base: Base) -> str:
    output_dir = recipe.get("output_dir") or "OUTPUT_DIR"
    pushed = str(run_dir) if not run_dir.is_absolute() else run_dir.name
    commands = [f"textxfer train recipe.yaml                 # writes {output_dir}"]
    if info.merged_from:
        commands.append(f"textxfer merge {output_dir} {pushed}")
    flag = f" --base-model {base.hub_id}" if base.explicit else ""
    commands.append(f"textxfer push {pushed if info.merged_from else output_dir} --repo-id {repo_id}{flag}")
    return "\n".join([
        "## Reproduce", "",
        f"`recipe.yaml` in this repository is the resolved recipe of the run (textxfer "
        f"{info.textxfer_version}); with textxfer installed and the data files at the paths it names:", "",
        "```bash", *commands, "```", "",
        "`metrics.json` holds every figure above; `textxfer.json` the labels and the text and decision settings "
        "that textxfer's own `load_classifier` uses.",
    ])
