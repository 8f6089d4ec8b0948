"""Feasibility probe: QLoRA (bitsandbytes 4-bit + peft LoRA) for sequence classification on CPU.

A tiny random Llama (hidden 64, 2 layers, vocab 1000) is saved to a temp folder, then loaded in 4-bit
NF4, prepared for k-bit training, wrapped in LoRA (all-linear), trained a few AdamW steps with gradient
checkpointing, saved, reloaded with AutoPeftModelForSequenceClassification, and (non-quantized variant)
merged and reloaded as a plain AutoModelForSequenceClassification. Prints facts; asserts what it claims.

    OMP_NUM_THREADS=1 .venv/bin/python bench/probe_qlora_cpu.py
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
from peft import (
    AutoPeftModelForSequenceClassification,
    LoraConfig,
    PeftModel,
    get_peft_model,
    prepare_model_for_kbit_training,
)
from safetensors import safe_open
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BitsAndBytesConfig,
    LlamaConfig,
    LlamaForCausalLM,
)

torch.set_num_threads(1)
ID2LABEL = {0: "neg", 1: "neu", 2: "pos"}
LABELS = {"num_labels": 3, "id2label": ID2LABEL, "label2id": {v: k for k, v in ID2LABEL.items()}}


def log(*args):
    print("::", *args, flush=True)


def base_folder(root: Path) -> Path:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    folder = root / "base"
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def bnb_config(compute_dtype, skip_score: bool):
    kwargs = {"llm_int8_skip_modules": ["score"]} if skip_score else {}
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype, **kwargs)


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 1000, (4, 12), generator=g)
    mask = torch.ones_like(ids)
    ids[1, 8:] = 0  # right padding in one row
    mask[1, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 3, (4,), generator=g)}


def logits(model, b):
    model.eval()
    with torch.no_grad():
        return model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float()


def describe(model, title):
    import bitsandbytes as bnb

    linear4 = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    score = model.get_submodule("score")
    log(f"{title}: {len(linear4)} Linear4bit, e.g. {linear4[:3]}; score is {type(score).__module__}."
        f"{type(score).__name__} {getattr(score, 'weight', None).dtype}; embed dtype "
        f"{model.get_input_embeddings().weight.dtype}")
    return linear4


def run(root: Path, base: Path, quantized: bool, compute_dtype=torch.float32, steps: int = 5):
    tag = f"{'4bit' if quantized else 'fp32'}{'-' + str(compute_dtype).split('.')[-1] if quantized else ''}"
    kwargs = dict(LABELS)
    if quantized:
        kwargs.update(quantization_config=bnb_config(compute_dtype, skip_score=False), device_map={"": "cpu"})
    start = time.perf_counter()
    model = AutoModelForSequenceClassification.from_pretrained(base, **kwargs)
    log(f"[{tag}] loaded in {time.perf_counter() - start:.2f}s")
    if quantized:
        describe(model, f"[{tag}] after load")
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.activation_checkpointing_enable({"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules="all-linear"))
    cfg = model.peft_config["default"]
    log(f"[{tag}] target_modules={sorted(cfg.target_modules)} modules_to_save={cfg.modules_to_save}")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    log(f"[{tag}] trainable: {len(trainable)} tensors, non-LoRA ones: {[n for n in trainable if 'lora_' not in n]}")
    assert not any("score" in n and "lora_" in n for n in trainable), "all-linear targeted score"
    log(f"[{tag}] gradient checkpointing on: {model.base_model.model.is_activation_checkpointing}")
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    start = time.perf_counter()
    losses = []
    for step in range(steps):
        out = model(**batch(step))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(round(out.loss.item(), 4))
    changed = sum(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in before)
    log(f"[{tag}] {steps} AdamW steps in {time.perf_counter() - start:.2f}s, losses {losses}; "
        f"{changed}/{len(before)} trainable tensors changed")
    assert all(map(torch.isfinite, map(torch.tensor, losses))) and changed == len(before)

    probe = batch(99)
    expected = logits(model, probe)
    adapter = root / f"adapter-{tag}"
    model.save_pretrained(adapter)
    # peft saves no config.json, so id2label would be lost: save the model config beside the adapter, minus
    # quantization_config (passing a config that carries it to from_pretrained breaks the 4-bit reload).
    labels_config = copy.deepcopy(model.base_model.model.config)
    labels_config.__dict__.pop("quantization_config", None)
    labels_config.save_pretrained(adapter)
    assert "quantization_config" not in json.loads((adapter / "config.json").read_text())
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    log(f"[{tag}] adapter_model.safetensors: {len(keys)} tensors, non-LoRA: {[k for k in keys if 'lora_' not in k]}")
    log(f"[{tag}] saved: {sorted(os.listdir(adapter))}; base_model_name_or_path="
        f"{json.loads((adapter / 'adapter_config.json').read_text())['base_model_name_or_path']}")

    saved = AutoConfig.from_pretrained(adapter)  # labels come back from the config.json saved beside the adapter
    reload_kwargs = {"num_labels": saved.num_labels, "id2label": saved.id2label, "label2id": saved.label2id}
    if quantized:
        reload_kwargs.update(quantization_config=bnb_config(compute_dtype, skip_score=False), device_map={"": "cpu"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        again = AutoPeftModelForSequenceClassification.from_pretrained(adapter, **reload_kwargs)
    log(f"[{tag}] AutoPeft reload in {time.perf_counter() - start:.2f}s, id2label={again.config.id2label}, "
        f"training={again.training}, max |logit diff| {(logits(again, probe) - expected).abs().max().item():.2e}; "
        f"warnings: {sorted({str(w.message)[:90] for w in caught})}")
    assert again.config.id2label == ID2LABEL
    try:  # without the labels kwargs the base config says num_labels=2
        AutoPeftModelForSequenceClassification.from_pretrained(adapter, **{k: v for k, v in reload_kwargs.items()
                                                                          if k not in LABELS})
        log(f"[{tag}] reload WITHOUT num_labels: loaded (unexpected)")
    except Exception as exc:  # noqa: BLE001 - report what users would see
        lines = [l for l in str(exc).splitlines() if "score" in l]
        log(f"[{tag}] reload WITHOUT num_labels fails: {type(exc).__name__}: {lines[:1]}")
    # Manual route: base with the saved config (labels included), then the adapter.
    base_kwargs = {k: v for k, v in reload_kwargs.items() if k not in LABELS}
    manual_base = AutoModelForSequenceClassification.from_pretrained(base, config=saved, **base_kwargs)
    manual = PeftModel.from_pretrained(manual_base, adapter)
    log(f"[{tag}] manual PeftModel reload: id2label={manual.config.id2label}, "
        f"max |logit diff| {(logits(manual, probe) - expected).abs().max().item():.2e}")
    if quantized:  # pitfall: a config that still carries quantization_config
        try:
            PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(
                base, config=model.base_model.model.config, **base_kwargs), adapter)
            log(f"[{tag}] config with quantization_config + quantization_config kwarg: works")
        except Exception as exc:  # noqa: BLE001
            log(f"[{tag}] config with quantization_config + quantization_config kwarg fails: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    if quantized:  # forgetting quantization_config on reload: fp base + adapter trained on the 4-bit base
        plain = AutoPeftModelForSequenceClassification.from_pretrained(adapter, **LABELS)
        log(f"[{tag}] reload without quantization_config: Linear4bit present="
            f"{any('Linear4bit' in type(m).__name__ for m in plain.modules())}, "
            f"max |logit diff| {(logits(plain, probe) - expected).abs().max().item():.2e}")

    if not quantized:
        merged = model.merge_and_unload()
        merged_dir = root / "merged"
        merged.save_pretrained(merged_dir)
        plain = AutoModelForSequenceClassification.from_pretrained(merged_dir)
        diff = (logits(plain, probe) - expected).abs().max().item()
        same_score = torch.equal(plain.score.weight, merged.score.weight)
        log(f"[{tag}] merge_and_unload -> {type(merged).__name__}; reload: num_labels={plain.config.num_labels} "
            f"id2label={plain.config.id2label} score kept={same_score} max |logit diff| {diff:.2e}; "
            f"files {sorted(os.listdir(merged_dir))}")
        assert plain.config.id2label == ID2LABEL and same_score and diff < 1e-4
    return model


def main():
    import bitsandbytes
    import peft
    import transformers

    log(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
        f"bitsandbytes {bitsandbytes.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = base_folder(root)
        # Does score stay out of 4-bit without llm_int8_skip_modules? And with it?
        full = AutoModelForSequenceClassification.from_pretrained(base, **LABELS)
        for skip in (False, True):
            m = AutoModelForSequenceClassification.from_pretrained(
                base, **LABELS, quantization_config=bnb_config(torch.float32, skip), device_map={"": "cpu"})
            describe(m, f"[load skip_score={skip}]")
            m.score.load_state_dict(full.score.state_dict())
            log(f"  4-bit vs fp32 logits (same score head): max |diff| "
                f"{(logits(m, batch(5)) - logits(full, batch(5))).abs().max().item():.3f}")
        try:
            m = AutoModelForSequenceClassification.from_pretrained(base, **LABELS,
                                                                   quantization_config=bnb_config(torch.float32, False))
            log(f"4-bit load WITHOUT device_map works: {describe(m, '[no device_map]')[:1]}")
        except Exception as exc:  # noqa: BLE001
            log(f"4-bit load WITHOUT device_map fails: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        run(root, base, quantized=False)
        run(root, base, quantized=True, compute_dtype=torch.float32)
        run(root, base, quantized=True, compute_dtype=torch.bfloat16)


if __name__ == "__main__":
    main()
