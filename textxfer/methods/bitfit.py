"""`bitfit`: BitFit (Ben Zaken et al. 2021). Only the bias terms of the pretrained model train, with the
new classification head; every weight matrix stays as pretrained. A tiny share of the parameters (0.25%
of MiniLM-L6 with a 77-class head), and the run still saves and loads as a stock transformers model.
It wants a far higher learning rate than full fine-tuning: on Banking77 at 10 labels per class (seed 0,
validation accuracy after the default 250 steps) lr 1e-3 reached 69.4%, 3e-3 81.7%, 1e-2 83.0% and
3e-2 79.8%, so the default is 1e-2 (docs/results.md)."""
from ..errors import TextxferError
from .base import Method, is_head_parameter


def train_biases_only(model) -> None:
    """Freeze everything but the bias terms and the classification head."""
    biases = 0
    for name, param in model.named_parameters():
        bias = name.endswith(".bias") and not is_head_parameter(name)
        biases += bias
        param.requires_grad_(bias or is_head_parameter(name))
    if not biases:
        raise TextxferError(f"`model.method=bitfit` trains the bias terms of the pretrained model, and "
                            f"{type(model).__name__} has none (Llama-style models are built without biases). Use "
                            f"`model.method=lora`, or an encoder with biases such as BERT or MiniLM.")


BITFIT = Method(
    name="bitfit", summary="fine-tune only the bias terms of the pretrained model, and the new head (BitFit)",
    epochs=5, lr=1e-2, min_steps=250, trainable=train_biases_only, trains="the bias terms and the head",
    layer_strategies="only the bias terms and the head train; the pretrained weight matrices stay as they are",
    card="BitFit: only the bias terms of the pretrained model and the new classification head trained")
