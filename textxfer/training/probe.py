"""LP-FT's first phase (`lp_ft`): fit the classification head alone on the frozen model's cached head
inputs, so fine-tuning starts from a good head instead of a random one that would distort the
pretrained features (Kumar et al. 2022). The probe uses feature extraction's SGD head settings."""
from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.batching import eval_loader, input_order
from ..errors import TextxferError
from ..log import get_logger
from ..methods.lp_ft import PROBE
from .context import Run
from .evaluate import model_inputs, validation_scores
from .heads import feature_loader, head_loop
from .loop import fit
from .results import FitResult

log = get_logger()


def linear_probe(run: Run) -> FitResult:
    """Fit the model's linear head on its cached inputs; leaves the model with the best probe head."""
    model = run.model
    head = getattr(model, "classifier", None) or getattr(model, "score", None)
    if not isinstance(head, nn.Linear):
        raise TextxferError(f"`model.method=lp_ft` needs a model whose classification head is one linear layer "
                            f"(`classifier` or `score`); {type(model).__name__} has none. Use `full`.")
    bs = run.recipe.train.eval_batch_size
    train_x, train_y, _ = head_inputs(run, head, run.train_set, bs)
    val_x, val_y, val_docs = head_inputs(run, head, run.val_set, bs)
    probe = run.with_train(**PROBE, layer_lr_decay=None, early_stopping_patience=None)
    loader = feature_loader(train_x, train_y, probe.train.batch_size, probe.train.seed)
    probe = run.resolve_epochs(probe, len(loader), "the linear probe")

    def evaluate(h):
        with torch.inference_mode():
            logits = h(val_x.to(run.accelerator.device)).cpu()
        return validation_scores(logits, val_y, val_docs, run.recipe, run.multi_label)

    result = fit(run.accelerator, head, head_loop(loader, evaluate, run.loss_fn, run.multi_label), probe)
    best = result.history[result.best_epoch - 1]
    log.info(f"linear probe (LP-FT phase 1): validation loss {best['validation_loss']:.4f}; fine-tuning everything "
             f"from this head")
    return result


@torch.inference_mode()
def head_inputs(run: Run, head: nn.Module, dataset, batch_size: int):
    """What the classification head receives, per example (eval mode: no dropout), in input order."""
    accelerator, model = run.accelerator, run.model
    captured = []
    hook = head.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach().float()))
    was_training = model.training
    model.eval()
    model.to(accelerator.device)
    try:
        loader, order = eval_loader(dataset, batch_size, run.collate)
        labels = []
        for batch in tqdm(loader, desc="head inputs", leave=False, disable=not accelerator.is_local_main_process):
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.autocast():
                model(**model_inputs(batch))
            labels.append(batch["labels"].cpu())
    finally:
        hook.remove()
        model.train(was_training)
    features = torch.cat([c.cpu() for c in captured])
    if features.ndim != 2:
        raise TextxferError("`model.method=lp_ft` supports classifiers whose head reads one vector per text "
                            "(BERT-style encoders); this model's head reads every token. Use `full` or `lora`.")
    restore = input_order(order)
    return features[restore], torch.cat(labels)[restore], torch.tensor(dataset.columns["doc"])
