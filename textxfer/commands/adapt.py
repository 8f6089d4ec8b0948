"""Domain-adaptive pretraining: `textxfer adapt RECIPE data.unlabeled=FILE`.

Continues the pretraining objective of the recipe's model on unlabeled in-domain text (Gururangan et
al. 2020, "Don't stop pretraining"): masked-LM for encoders, causal LM through LoRA adapters (merged
afterwards) for decoders. It trains through the same loop as `textxfer train` (mixed precision,
gradient accumulation, checkpoints every epoch and `train.resume=auto`), keeps the epoch with the
lowest held-out loss, and writes a plain model folder that `model.name` can point to, plus
`adapt_metrics.json` with the held-out language-modelling loss before and after.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import datasets
import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, DataCollatorForLanguageModeling

from ..config import Recipe
from ..data.batching import LengthBucketBatchSampler, TokenizedDataset, tokenize
from ..data.splits import read_unlabeled
from ..errors import TextxferError
from ..fsutil import write_json
from ..outputs import OutputFolder
from ..log import get_logger, note
from ..models.build import is_sentence_embedding_model
from ..models.embedded import resolve_model_path
from ..models.loading import build_tokenizer
from ..models.quiet import quiet_loading
from ..training import resume
from ..training.loop import Loop, fit
from ..training.trainer import make_accelerator

log = get_logger("adapt")
DECODER_SUFFIX = "ForCausalLM"
DECODER_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3")
HELD_OUT_EVERY = 20  # every 20th text measures the loss before and after


def adapt(recipe: Recipe, output: str | None = None, epochs: int = 1, lr: float = 5e-5,
          mlm_probability: float = 0.15) -> Path:
    """Continue pretraining the recipe's model on `data.unlabeled`; returns the adapted model folder."""
    if not recipe.data.unlabeled:
        raise TextxferError("`textxfer adapt` needs unlabeled text: pass `data.unlabeled=FILE` (.txt with one text "
                            "per line, or a CSV/JSONL/parquet file with the recipe's text column).")
    final = Path(output or f"{recipe.output_dir}-adapted")
    # The loop's recipe: this command's epochs and rate; checkpoints beside the output folder.
    recipe = dataclasses.replace(recipe, output_dir=str(final), train=dataclasses.replace(
        recipe.train, epochs=epochs, lr=lr, min_steps=0, early_stopping_patience=None, layer_lr_decay=None))
    accelerator = make_accelerator(recipe)
    target = OutputFolder(final, overwrite=recipe.overwrite, inputs=[recipe.data.unlabeled, recipe.model.name],
                          setting="--output" if output else "output_dir (+ `-adapted`)", kind="adapted model",
                          overwrite_hint="--overwrite")
    with target if accelerator.is_main_process else nullcontext():
        if accelerator.is_main_process:
            resume.check_root(final)
        return _adapt(recipe, accelerator, target, mlm_probability)


def _adapt(recipe: Recipe, accelerator, target: OutputFolder, mlm_probability: float) -> Path:
    set_seed(recipe.train.seed)
    path = resolve_model_path(recipe.model.name)
    tokenizer = build_tokenizer(recipe.model)
    config = AutoConfig.from_pretrained(path)
    decoder = any(a.endswith(DECODER_SUFFIX) for a in (config.architectures or [])) or config.model_type in DECODER_TYPES
    texts = read_unlabeled(recipe.data.unlabeled, recipe.data.text_column, recipe.data.encoding)
    if len(texts) < HELD_OUT_EVERY:
        raise TextxferError(f"The unlabeled file {recipe.data.unlabeled} has {len(texts)} texts; domain-adaptive "
                            f"pretraining needs at least {HELD_OUT_EVERY} (thousands help).")
    held = texts[::HELD_OUT_EVERY]
    train_texts = [t for i, t in enumerate(texts) if i % HELD_OUT_EVERY]
    with quiet_loading():
        model, head_pretrained = _lm_model(path, decoder, recipe)
    _say_what_it_does(recipe, path, decoder, head_pretrained)
    collate = DataCollatorForLanguageModeling(tokenizer, mlm=not decoder, mlm_probability=mlm_probability)
    train_loader, sampler = _loader(train_texts, tokenizer, recipe, collate, recipe.train.seed)
    eval_loader = accelerator.prepare(_loader(held, tokenizer, recipe, collate, 0)[0])

    def evaluate(m):
        loss = _lm_loss(m, eval_loader, accelerator, recipe.train.seed)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50))}, None, None

    before = _lm_loss(model.to(accelerator.device), eval_loader, accelerator, recipe.train.seed)
    log.info(f"{'causal LM (LoRA)' if decoder else 'masked LM'} on {len(train_texts)} texts from "
             f"{recipe.data.unlabeled}; held-out loss before: {before:.4f}")
    started = time.perf_counter()
    loop = Loop(forward=lambda m, batch: m(**batch).loss, loss=lambda value, batch: value, loader=train_loader,
                evaluate=evaluate, select="loss", minimize=True, sampler=sampler, label="adapt")
    result = fit(accelerator, model, loop, recipe)
    after = -result.best_score
    seconds = time.perf_counter() - started
    log.info(f"held-out loss after: {after:.4f} (perplexity {math.exp(before):.1f} -> {math.exp(after):.1f}) in "
             f"{seconds:.0f}s")
    final = target.path
    if accelerator.is_main_process:
        with target.staging() as staging:
            _save_adapted(accelerator.unwrap_model(model), decoder, tokenizer, path, staging, {
                "base_model": recipe.model.name, "objective": "causal_lm_lora" if decoder else "masked_lm",
                "unlabeled": recipe.data.unlabeled, "texts": len(train_texts), "held_out_texts": len(held),
                "epochs": recipe.train.epochs, "best_epoch": result.best_epoch, "lr": recipe.train.lr,
                "lm_head_pretrained": head_pretrained, "held_out_loss_before": before, "held_out_loss_after": after,
                "wall_seconds": seconds, "history": result.history})
        resume.remove_all(final)
        log.info(f"wrote {final}; train on it with `model.name={final}`")
    accelerator.wait_for_everyone()
    return final


def _say_what_it_does(recipe: Recipe, path: str, decoder: bool, head_pretrained: bool) -> None:
    if not head_pretrained:
        log.info(f"note: {recipe.model.name} ships no pretrained language-model head, so it starts untrained: the "
                 f"'before' loss is that of a random head, and part of the drop is the head learning")
    if not decoder and is_sentence_embedding_model(path):
        # Measured: Banking77, MiniLM-L6 adapted for one epoch on the 9.5k training texts; a logistic
        # regression on its frozen mean-pooled features at 10 labels per class fell from 85% to 77%.
        note(log, f"{recipe.model.name} is a sentence-embedding model (trained contrastively); masked-LM training "
                  f"moves its embeddings away from that geometry, which hurts `feature_extraction` on the result "
                  f"(Banking77 at 10 labels per class: 85% -> 77%). Fine-tune (`full`, `lp_ft`) the adapted model, or "
                  f"adapt a masked-LM encoder such as BERT.")


def _loader(items: list[str], tokenizer, recipe: Recipe, collate, shuffle_seed: int):
    """Length-bucketed batches of the texts, masked (or shifted) by the language-modelling collator."""
    data = TokenizedDataset(tokenize(datasets.Dataset.from_dict({"text": items}), tokenizer, recipe.data.max_length))
    examples = [{"input_ids": ids, "attention_mask": mask}
                for ids, mask in zip(data.columns["input_ids"], data.columns["attention_mask"])]
    sampler = LengthBucketBatchSampler(data.lengths, recipe.train.batch_size, shuffle_seed)
    return DataLoader(examples, batch_sampler=sampler, collate_fn=collate), sampler


def _save_adapted(model, decoder: bool, tokenizer, path: str, staging: Path, metrics: dict) -> None:
    """The adapted model (a decoder's LoRA merged in), its tokenizer and `adapt_metrics.json`."""
    if decoder:
        model = model.merge_and_unload()
    with quiet_loading():
        model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if (Path(path) / "modules.json").is_file():  # still a sentence encoder: keeps pooler_init=auto right
        shutil.copy2(Path(path) / "modules.json", staging / "modules.json")
    write_json(staging / "adapt_metrics.json", metrics)


def _lm_model(path: str, decoder: bool, recipe: Recipe):
    """The model with its language-modelling head, and whether that head came pretrained."""
    if not decoder:
        model, info = AutoModelForMaskedLM.from_pretrained(path, use_safetensors=True, output_loading_info=True)
        head_missing = any(k.startswith(("cls.", "lm_head.", "vocab_")) and not k.endswith("decoder.weight")
                           for k in info["missing_keys"])
        return model, not head_missing
    from peft import LoraConfig, get_peft_model  # peft: imported for decoders only

    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, dtype=torch.float32)
    lora = recipe.model.lora
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha,
                                            lora_dropout=lora.dropout, target_modules=lora.target_modules)), True


@torch.inference_mode()
def _lm_loss(model, loader, accelerator, seed: int) -> float:
    """Mean held-out LM loss; the masking is seeded so every evaluation sees the same masks."""
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    losses = [accelerator.gather_for_metrics(model(**batch).loss.detach().reshape(1)) for batch in loader]
    model.train(was_training)
    torch.set_rng_state(state)
    return torch.cat(losses).float().mean().item()
