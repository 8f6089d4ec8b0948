"""The `feature_extraction` classifier: a frozen backbone, pooling (mean or [CLS]), L2-normalised
features and a linear head. The trainer computes the features once and fits the head alone; with
`train.student_epochs`, self-training's noisy student fine-tunes the backbone too."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel

from .quiet import quiet_loading


@dataclass
class HeadConfig:
    """What a feature-extraction head needs besides its weights."""

    num_labels: int
    pooling: str = "mean"
    id2label: dict | None = None


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Sentence features from token states: masked mean, or the first ([CLS]) token."""
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class PooledClassifier(nn.Module):
    """A frozen backbone, a pooling step and a linear head on L2-normalised features (the backbone
    trains only in self-training's noisy-student phase)."""

    HEAD_FILE = "head.safetensors"
    BACKBONE_DIR = "backbone"

    def __init__(self, backbone: nn.Module, head_config: HeadConfig):
        super().__init__()
        self.backbone = backbone
        self.head_config = head_config
        self.head = nn.Linear(backbone.config.hidden_size, head_config.num_labels)
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    @property
    def config(self):
        return self.backbone.config

    def encode(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """Normalised pooled backbone features of one batch; differentiable when the backbone trains
        (the noisy student of self-training fine-tunes it)."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**kwargs).last_hidden_state
        return nn.functional.normalize(pool(hidden, attention_mask, self.head_config.pooling).float(), dim=-1)

    @torch.inference_mode()
    def features(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """Normalised pooled backbone features of one batch (no gradients)."""
        return self.encode(input_ids, attention_mask, token_type_ids)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        return self.head(self.encode(input_ids, attention_mask, token_type_ids))

    def save_pretrained(self, folder: str | Path) -> None:
        """Backbone in `backbone/` (standard HF folder), head weights and pooling beside it."""
        folder = Path(folder)
        self.backbone.save_pretrained(folder / self.BACKBONE_DIR)
        save_file({k: v.detach().contiguous() for k, v in self.head.state_dict().items()}, str(folder / self.HEAD_FILE))
        meta = {"num_labels": self.head_config.num_labels, "pooling": self.head_config.pooling}
        (folder / "head_config.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "PooledClassifier":
        """Reload what `save_pretrained` wrote."""
        folder = Path(folder)
        meta = json.loads((folder / "head_config.json").read_text())
        with quiet_loading():
            backbone = AutoModel.from_pretrained(folder / cls.BACKBONE_DIR, use_safetensors=True)
        model = cls(backbone, HeadConfig(meta["num_labels"], meta["pooling"]))
        model.head.load_state_dict(load_file(str(folder / cls.HEAD_FILE)))
        return model
