"""`lora` and `qlora`: low-rank adapters (peft) on the frozen pretrained classifier, whose new head trains
in full and is saved with them; `qlora` puts them on a 4-bit NF4 base (bitsandbytes). Adapters train few
weights from a small init: they want a higher learning rate than full fine-tuning."""
from .base import Method

_ADAPTERS_ONLY = "only low-rank adapters train, not the pretrained layers themselves"
_MERGE_FIRST = "its adapters must be folded into the base first: run `textxfer merge RUN OUT` and export OUT"

LORA = Method(
    name="lora", summary="LoRA adapters on the frozen pretrained model; the head trains in full",
    epochs=3, lr=1e-3, min_steps=250, adapters=True, trains="the LoRA adapters and the head",
    layer_strategies=_ADAPTERS_ONLY, onnx=_MERGE_FIRST,
    card="LoRA adapters and a new classification head (the base model's weights are unchanged)")

QLORA = Method(
    name="qlora", summary="LoRA adapters on a 4-bit NF4 quantized base (bitsandbytes)",
    epochs=3, lr=1e-3, min_steps=250, adapters=True, quantized=True, trains="the LoRA adapters and the head",
    layer_strategies="only low-rank adapters train, not the pretrained (4-bit) layers themselves", onnx=_MERGE_FIRST,
    card="QLoRA: LoRA adapters and a new classification head on a 4-bit NF4 base")
