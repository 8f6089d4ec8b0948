"""`scratch`: the same architecture with random weights; the no-transfer baseline that shows what
pretraining buys. A random network wants a higher learning rate than fine-tuning."""
from .base import Method

SCRATCH = Method(
    name="scratch", summary="the same architecture trained from random weights (the no-transfer baseline)",
    epochs=5, lr=3e-4, min_steps=250, backbone="random",
    layer_strategies="there are no pretrained weights to protect or to transfer",
    card="training from random initialisation (the architecture only, no pretrained weights)", tag="from-scratch")
