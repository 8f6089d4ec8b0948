"""Scoring during training: logits of a loader's examples gathered from every process, validation
scores per document (windows aggregated), and the frozen backbone's features in input order."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..config import Recipe
from ..data.batching import MODEL_INPUTS, TokenizedDataset, eval_loader, input_order
from ..evaluation import metrics
from ..evaluation.decisions import aggregate
from ..models.pooled import PooledClassifier
from .losses import make_loss


def model_inputs(batch: dict) -> dict:
    """The tensors a model's forward takes (not labels or document ids)."""
    return {k: v for k, v in batch.items() if k in MODEL_INPUTS or k == "position_ids"}


def logits_of(output) -> torch.Tensor:
    """A transformers model returns an output object; a PooledClassifier returns the logits tensor."""
    return output if isinstance(output, torch.Tensor) else output.logits


def forward_logits(model, batch) -> torch.Tensor:
    """The logits of a batch (the `Loop.forward` of every classifier but a bare head)."""
    return logits_of(model(**model_inputs(batch)))


def validation_scores(logits: torch.Tensor, labels: torch.Tensor, docs: torch.Tensor, recipe: Recipe,
                      multi_label: bool):
    """Scores per document (windows aggregated), at the default decision rule; plus the document logits
    and labels."""
    logits, labels = aggregate(logits, labels, docs, recipe.data.chunk_aggregation)
    loss = make_loss(multi_label)(logits, labels).item()
    predicted = (logits > 0).int().numpy() if multi_label else logits.argmax(-1).numpy()
    return {**metrics.summary(labels.numpy(), predicted, multi_label), "loss": loss}, logits, labels


@torch.inference_mode()
def predict_logits(accelerator, model, loader, forward) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, labels and document ids over exactly the loader's examples, gathered from every process."""
    was_training = model.training
    model.eval()
    all_logits, all_labels, all_docs = [], [], []
    for batch in loader:
        with accelerator.autocast():
            logits = forward(model, batch)
        logits, labels, docs = accelerator.gather_for_metrics((logits.float(), batch["labels"], batch["doc"]))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
        all_docs.append(docs.cpu())
    model.train(was_training)
    return torch.cat(all_logits), torch.cat(all_labels), torch.cat(all_docs)


@torch.inference_mode()
def backbone_features(accelerator, model: PooledClassifier, dataset: TokenizedDataset, collate, batch_size: int,
                      desc: str):
    """Backbone features and labels (None for unlabeled data) of every example, computed once, in input
    order, on every process."""
    loader, order = eval_loader(dataset, batch_size, collate)
    loader = accelerator.prepare(loader)
    model.backbone.to(accelerator.device)
    chunks, labels = [], []
    for batch in tqdm(loader, desc=f"features {desc}", leave=False, disable=not accelerator.is_local_main_process):
        with accelerator.autocast():
            feats = model.features(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        if "labels" in batch:
            feats, batch_labels = accelerator.gather_for_metrics((feats.float(), batch["labels"]))
            labels.append(batch_labels.cpu())
        else:  # unlabeled texts
            feats = accelerator.gather_for_metrics(feats.float())
        chunks.append(feats.cpu())
    restore = input_order(order)
    return torch.cat(chunks)[restore], (torch.cat(labels)[restore] if labels else None)
