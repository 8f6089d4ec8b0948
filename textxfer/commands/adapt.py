"""Domain-adaptive pretraining: `textxfer adapt RECIPE data.unlabeled=FILE`.

Continues the pretraining objective of the recipe's model on unlabeled in-domain text (Gururangan et
al. 2020, "Don't stop pretraining"): masked-LM for encoders, causal LM through LoRA adapters (merged
afterwards) for decoders. Writes a plain model folder that `model.name` can point to, plus
`adapt_metrics.json` with the held-out language-modelling loss before and after.
"""
from __future__ import annotations

import math
import shutil
import sys
from contextlib import nullcontext
import time
from pathlib import Path

import datasets
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.batching import LengthBucketBatchSampler, TokenizedDataset, tokenize
from ..config.schema import Recipe
from ..data.splits import read_unlabeled
from ..errors import TextxferError
from ..fsutil import OutputFolder, write_json

DECODER_SUFFIX = "ForCausalLM"


def adapt(recipe: Recipe, output: str | None = None, epochs: int = 1, lr: float = 5e-5,
          mlm_probability: float = 0.15) -> Path:
    """Continue pretraining the recipe's model on `data.unlabeled`; returns the adapted model folder."""
    from accelerate import Accelerator

    if not recipe.data.unlabeled:
        raise TextxferError("`textxfer adapt` needs unlabeled text: pass `data.unlabeled=FILE` (.txt with one text "
                            "per line, or a CSV/JSONL/parquet file with the recipe's text column).")
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    final = Path(output or f"{recipe.output_dir}-adapted")
    target = OutputFolder(final, overwrite=recipe.overwrite, inputs=[recipe.data.unlabeled, recipe.model.name],
                          setting="--output" if output else "output_dir (+ `-adapted`)", kind="adapted model",
                          overwrite_hint="--overwrite")
    with target if accelerator.is_main_process else nullcontext():
        return _adapt(recipe, accelerator, target, epochs, lr, mlm_probability)


def _adapt(recipe: Recipe, accelerator, target: OutputFolder, epochs: int, lr: float, mlm_probability: float) -> Path:
    from accelerate.utils import set_seed
    from transformers import AutoConfig, DataCollatorForLanguageModeling, get_linear_schedule_with_warmup

    from ..models.build import build_tokenizer, is_sentence_embedding_model, quiet_loading, resolve_model_path

    final = target.path
    set_seed(recipe.train.seed)
    path = resolve_model_path(recipe.model.name)
    tokenizer = build_tokenizer(recipe.model)
    config = AutoConfig.from_pretrained(path)
    decoder = any(a.endswith(DECODER_SUFFIX) for a in (config.architectures or [])) or config.model_type in (
        "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3")
    texts = read_unlabeled(recipe.data.unlabeled, recipe.data.text_column, recipe.data.encoding)
    if len(texts) < 20:
        raise TextxferError(f"The unlabeled file {recipe.data.unlabeled} has {len(texts)} texts; domain-adaptive "
                            f"pretraining needs at least 20 (thousands help).")
    held = texts[:: 20]  # every 20th text measures the loss before and after
    train_texts = [t for i, t in enumerate(texts) if i % 20]
    with quiet_loading():
        model, head_pretrained = _lm_model(path, decoder, recipe)
    if not head_pretrained:
        accelerator.print(f"textxfer adapt: note: {recipe.model.name} ships no pretrained language-model head, so it "
                          f"starts untrained: the 'before' loss is that of a random head, and part of the drop is "
                          f"the head learning")
    if not decoder and is_sentence_embedding_model(path):
        # Measured: Banking77, MiniLM-L6 adapted for one epoch on the 9.5k training texts; a logistic
        # regression on its frozen mean-pooled features at 10 labels per class fell from 85% to 77%.
        accelerator.print(f"textxfer adapt: note: {recipe.model.name} is a sentence-embedding model (trained "
                          f"contrastively); masked-LM training moves its embeddings away from that geometry, which "
                          f"hurts `feature_extraction` on the result (Banking77 at 10 labels per class: 85% -> 77%). "
                          f"Fine-tune (`full`, `lp_ft`) the adapted model, or adapt a masked-LM encoder such as BERT.",
                          file=sys.stderr)
    collate = DataCollatorForLanguageModeling(tokenizer, mlm=not decoder, mlm_probability=mlm_probability)

    def loader(items, shuffle_seed):
        data = TokenizedDataset(tokenize(datasets.Dataset.from_dict({"text": items}), tokenizer, recipe.data.max_length))
        examples = [{"input_ids": ids, "attention_mask": mask}
                    for ids, mask in zip(data.columns["input_ids"], data.columns["attention_mask"])]
        sampler = LengthBucketBatchSampler(data.lengths, recipe.train.batch_size, shuffle_seed)
        return DataLoader(examples, batch_sampler=sampler, collate_fn=collate), sampler

    train_loader, sampler = loader(train_texts, recipe.train.seed)
    eval_loader, _ = loader(held, 0)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=recipe.train.weight_decay)
    steps = len(train_loader) * epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, round(0.06 * steps), steps)
    model, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, eval_loader, scheduler)

    before = _lm_loss(model, eval_loader, accelerator, recipe.train.seed)
    accelerator.print(f"textxfer adapt: {'causal LM (LoRA)' if decoder else 'masked LM'} on {len(train_texts)} "
                      f"texts from {recipe.data.unlabeled}; held-out loss before: {before:.4f}")
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        sampler.start_epoch(epoch)
        model.train()
        for batch in tqdm(train_loader, desc=f"adapt epoch {epoch}/{epochs}", leave=False,
                          disable=not accelerator.is_local_main_process):
            loss = model(**batch).loss
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    after = _lm_loss(model, eval_loader, accelerator, recipe.train.seed)
    seconds = time.perf_counter() - started
    accelerator.print(f"textxfer adapt: held-out loss after: {after:.4f} (perplexity {math.exp(before):.1f} -> "
                      f"{math.exp(after):.1f}) in {seconds:.0f}s")

    if accelerator.is_main_process:
        with target.staging() as staging:
            _save_adapted(accelerator.unwrap_model(model), decoder, tokenizer, path, staging, {
                "base_model": recipe.model.name, "objective": "causal_lm_lora" if decoder else "masked_lm",
                "unlabeled": recipe.data.unlabeled, "texts": len(train_texts), "held_out_texts": len(held),
                "epochs": epochs, "lr": lr, "lm_head_pretrained": head_pretrained, "held_out_loss_before": before,
                "held_out_loss_after": after, "wall_seconds": seconds})
        accelerator.print(f"textxfer adapt: wrote {final}; train on it with `model.name={final}`")
    accelerator.wait_for_everyone()
    return final


def _save_adapted(model, decoder: bool, tokenizer, path: str, staging: Path, metrics: dict) -> None:
    """The adapted model (a decoder's LoRA merged in), its tokenizer and `adapt_metrics.json`."""
    if decoder:
        model = model.merge_and_unload()
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if (Path(path) / "modules.json").is_file():  # still a sentence encoder: keeps pooler_init=auto right
        shutil.copy2(Path(path) / "modules.json", staging / "modules.json")
    write_json(staging / "adapt_metrics.json", metrics)


def _lm_model(path: str, decoder: bool, recipe: Recipe):
    """The model with its language-modelling head, and whether that head came pretrained."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    if not decoder:
        model, info = AutoModelForMaskedLM.from_pretrained(path, use_safetensors=True, output_loading_info=True)
        head_missing = any(k.startswith(("cls.", "lm_head.", "vocab_")) and not k.endswith("decoder.weight")
                           for k in info["missing_keys"])
        return model, not head_missing
    from peft import LoraConfig, get_peft_model

    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, dtype=torch.float32)
    lora = recipe.model.lora
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha,
                                            lora_dropout=lora.dropout, target_modules=lora.target_modules)), True


@torch.inference_mode()
def _lm_loss(model, loader, accelerator, seed: int) -> float:
    """Mean held-out LM loss; the masking is seeded so before/after see the same masks."""
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    model.eval()
    losses = [accelerator.gather_for_metrics(model(**batch).loss.detach().reshape(1)) for batch in loader]
    torch.set_rng_state(state)
    return torch.cat(losses).float().mean().item()
