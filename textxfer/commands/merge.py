"""`textxfer merge RUN OUT`: fold a LoRA run's adapters into the base weights: a standalone model folder
with the head, the label names, the tokenizer and textxfer's run info, that loads with
`AutoModelForSequenceClassification` alone."""
from __future__ import annotations

import shutil
from pathlib import Path

from transformers import AutoTokenizer

from ..config import LoraSettings
from ..errors import TextxferError
from ..outputs import OutputFolder
from ..methods import METHODS
from ..models.adapters import load_adapter
from ..models.quiet import quiet_loading
from ..runs.folder import VALIDATION_SCORES
from ..runs.info import RunInfo


def merge(run_dir: str | Path, output_dir: str | Path, overwrite: bool = False) -> Path:
    """Merge the adapters of `run_dir` into a standalone model at `output_dir`; returns it."""
    run_dir, output_dir = Path(run_dir), Path(output_dir)
    info = RunInfo.read(run_dir, "`textxfer merge`")
    if info.is_ensemble or info.method_spec.saves != "adapter":
        with_adapters = " and ".join(f"`{m.name}`" for m in METHODS.values() if m.adapters)
        raise TextxferError(f"{run_dir} holds no LoRA adapter (its method is `{info.method}`): only {with_adapters} "
                            f"runs can be merged; other runs are standalone models already.")
    target = OutputFolder(output_dir, overwrite=overwrite, inputs=[run_dir], setting="OUTPUT_DIR",
                          kind="merged model", overwrite_hint="--overwrite")
    with target:
        # Quantized adapters merge into the full-precision base: merging into 4-bit weights would round them.
        model = load_adapter(run_dir, LoraSettings(**(info.lora or {})), "cpu", quantized=False).merge_and_unload()
        with target.staging() as staging, quiet_loading():
            model.save_pretrained(staging)
            AutoTokenizer.from_pretrained(run_dir).save_pretrained(staging)
            info.replace(method="full", merged_from=str(run_dir), adapter_method=info.method).write(staging)
            # validation_scores.json: `predict --coverage` on the merged model picks its threshold from it.
            for extra in ("recipe.yaml", "metrics.json", VALIDATION_SCORES):
                if (run_dir / extra).is_file():
                    shutil.copy2(run_dir / extra, staging / extra)
    return output_dir
