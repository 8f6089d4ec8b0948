"""`full`: fine-tune every weight of the pretrained classifier at a low learning rate."""
from .base import Method

FULL = Method(
    name="full", summary="fine-tune every weight of the pretrained model", epochs=5, lr=1e-4, min_steps=250,
    card="full fine-tuning (every weight trained)", tag="full-fine-tuning")
