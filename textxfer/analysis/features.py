"""Frozen sentence features for the data checks: a pretrained backbone's pooled, L2-normalised token
states (the features `feature_extraction` trains its head on), computed once per text in
length-sorted batches. Cosine similarity of two texts is then the dot product of their features."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from ..config import ModelConfig
from ..data.batching import PadCollator, TokenizedDataset, eval_loader, input_order, tokenize
from ..models.embedded import resolve_model_path
from ..models.loading import build_tokenizer, hub_kwargs, load_error
from ..models.pooled import HeadConfig, PooledClassifier
from ..models.quiet import quiet_loading
from ..runs.info import RunInfo


def device() -> torch.device:
    """Where the backbone runs: the first GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class FrozenEncoder:
    """A frozen backbone with its tokenizer and pooling, turning texts into normalised features."""

    model: PooledClassifier
    tokenizer: object
    max_length: int
    name: str  # what it is, for messages and reports

    @classmethod
    def pretrained(cls, cfg: ModelConfig, max_length: int, pooling: str = "mean") -> "FrozenEncoder":
        """The recipe's base model, pooled as `pooling` (mean: what sentence-embedding models are trained for)."""
        tokenizer = build_tokenizer(cfg)
        try:
            with quiet_loading():
                backbone = AutoModel.from_pretrained(resolve_model_path(cfg.name), use_safetensors=True,
                                                     **hub_kwargs(cfg))
        except (OSError, ValueError) as exc:
            raise load_error(cfg.name, exc) from None
        return cls(PooledClassifier(backbone, HeadConfig(1, pooling)), tokenizer, _fit(max_length, tokenizer, backbone),
                   f"{cfg.name} ({pooling}-pooled)")

    @classmethod
    def of_run(cls, run_dir: str | Path, info: RunInfo) -> "FrozenEncoder":
        """The features a run's texts are best compared on: a feature-extraction run's own backbone and
        pooling, else the run's base model, mean-pooled."""
        if not info.is_ensemble and info.method_spec.saves == "pooled":
            model = PooledClassifier.from_pretrained(run_dir)
            with quiet_loading():
                tokenizer = AutoTokenizer.from_pretrained(run_dir)
            return cls(model, tokenizer, _fit(info.max_length, tokenizer, model.backbone),
                       f"the run's backbone ({model.head_config.pooling}-pooled)")
        return cls.pretrained(ModelConfig(name=info.base_model), info.max_length)

    @torch.inference_mode()
    def encode(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 64,
               desc: str = "features") -> torch.Tensor:
        """Features of `texts` (with their pair texts), one row per text, in input order; float32 on CPU."""
        if not texts:
            return torch.zeros((0, self.model.config.hidden_size))
        columns = {"text": list(texts), **({"text_pair": list(pairs)} if pairs is not None else {})}
        dataset = TokenizedDataset(tokenize(datasets.Dataset.from_dict(columns), self.tokenizer, self.max_length))
        loader, order = eval_loader(dataset, batch_size, PadCollator(self.tokenizer.pad_token_id,
                                                                      self.tokenizer.padding_side))
        where = device()
        self.model.backbone.to(where)
        chunks = []
        for batch in tqdm(loader, desc=desc, leave=False):
            chunks.append(self.model.features(batch["input_ids"].to(where), batch["attention_mask"].to(where),
                                              batch["token_type_ids"].to(where) if "token_type_ids" in batch
                                              else None).float().cpu())
        return torch.cat(chunks)[input_order(order)]


def _fit(max_length: int, tokenizer, backbone) -> int:
    """`max_length` clamped to what the tokenizer and the position embeddings allow."""
    limits = [getattr(tokenizer, "model_max_length", None), getattr(backbone.config, "max_position_embeddings", None)]
    return min([max_length, *(limit for limit in limits if limit and limit < 1_000_000)])
