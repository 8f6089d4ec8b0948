"""Why a text got its label: token attributions by layer integrated gradients (Sundararajan et al. 2017)
on the input embedding layer, with Captum (the optional `explain` extra).

```python
from textxfer import load_classifier
clf = load_classifier("runs/tickets")
[e] = clf.explain(["my card was charged twice"])
e.label, e.probability, [(w.text, round(w.score, 2)) for w in e.words]
```

What is explained is the logit of a class (the predicted one, or the one asked for; for multi-label runs
each predicted label), along the straight path from a baseline text to the text: the same sequence with
every token replaced by the pad token except the special tokens ([CLS], [SEP], BOS), which stay, with
the attention mask, token types and positions of the text held fixed. Texts are tokenized exactly as
prediction tokenizes them (`textxfer.data.batching.tokenize`: the run's max_length, truncation,
head_tail cut or chunk windows); a `chunks` run's windows are each explained, and the one whose logit
for the class is highest (the one that contributes most to the aggregated logit, by mean or max) is
reported as the window that decided the label.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from difflib import get_close_matches
from typing import Iterator

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.batching import tokenize
from ..errors import TextxferError
from ..runs.info import RunInfo
from .word_alignment import Aligned, Encodings, Word, merge_words, place_tokens, text_encodings

DEFAULT_STEPS = 50


@dataclass
class Window:
    """One window of a `chunks` run's text: where it lies in the text and its own attributions.

    `token_start`/`token_end` index the text's tokens (its whole tokenization, special tokens left out);
    `char_start`/`char_end` are character offsets into the text; `logit` is this window's logit for the
    explained label."""

    index: int
    token_start: int | None
    token_end: int | None
    char_start: int | None
    char_end: int | None
    logit: float
    tokens: list[str]
    scores: list[float]
    delta: float


@dataclass
class Explanation:
    """The attributions of one text for one label.

    `scores[i]` is the attribution of `tokens[i]` (summed over the embedding dimensions) divided by the L2
    norm of all of the text's token attributions, so scores compare across texts; positive pushes toward
    `label`. `probability` is the run's calibrated probability of `label` (what `predict_proba` gives);
    `predicted` is the run's decision (a label, or for multi-label runs the list of labels). `delta` is
    Captum's convergence delta (how far the attributions' sum is from the logit difference between the
    text and the baseline; more `steps` make it smaller). For a `chunks` run, `windows` holds every window
    and `window` the index of the one that decided the label, whose tokens, scores and words these are.
    `index` is the text's position in the input (a multi-label text can have one explanation per label).
    """

    index: int
    text: str
    label: str
    probability: float
    predicted: str | list[str]
    tokens: list[str]
    scores: list[float]
    delta: float
    words: list[Word]
    pair: str | None = None
    window: int | None = None
    windows: list[Window] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON-ready fields (floats rounded to 6 decimals)."""
        data = asdict(self)
        data["scores"] = _rounded(self.scores)
        data["probability"] = round(float(self.probability), 6)
        data["delta"] = round(float(self.delta), 6)
        for word in data["words"]:
            word["score"] = round(float(word["score"]), 6)
            word["tokens"] = list(word["tokens"])
        for window in data["windows"]:
            window.update(scores=_rounded(window["scores"]), logit=round(float(window["logit"]), 6),
                          delta=round(float(window["delta"]), 6))
        return data

    def top_words(self, k: int = 3) -> list[Word]:
        """Up to `k` words that push hardest toward the label (positive scores only, largest first)."""
        return sorted((w for w in self.words if w.score > 0), key=lambda w: -w.score)[:k]


def _rounded(values: list[float]) -> list[float]:
    return [round(float(v), 6) for v in values]


# --- checks ----------------------------------------------------------------------------------------

def check_explainable(info: RunInfo, run_dir: str = "the run") -> None:
    """Refuse, before any model is loaded, a folder whose predictions cannot be attributed to tokens."""
    if info.is_ensemble:
        shown = [f"{run_dir}/{m['folder']}" for m in info.members[:3] if isinstance(m, dict) and "folder" in m]
        more = f" and {len(info.members) - len(shown)} more" if len(info.members) > len(shown) else ""
        raise TextxferError(f"{run_dir} is an ensemble of {len(info.members)} runs, whose prediction averages its "
                            f"members' probabilities, so there is no one model to attribute it to. Explain one of "
                            f"its members instead; they are under {run_dir}/members ({', '.join(shown)}{more}).")
    if info.onnx is not None:
        raise TextxferError(f"{run_dir} is an ONNX export, which textxfer cannot take gradients through to explain. "
                            f"Point `explain` at the run it was exported from.")


def check_label(label: str | None, labels: list[str]) -> None:
    """Refuse a label the run does not have, naming some it has (the closest first)."""
    if label is None or label in labels:
        return
    close = get_close_matches(str(label), labels, n=3)
    shown = close or labels[:8]
    more = f" and {len(labels) - len(shown)} more" if len(labels) > len(shown) else ""
    hint = "the closest: " if close else ""
    raise TextxferError(f"The label {label!r} is not one of this run's {len(labels)} labels ({hint}"
                        f"{', '.join(shown)}{more}). Give `--label` (or `label=`) exactly as the run's labels are "
                        f"written, or leave it out to explain the predicted label.")


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise TextxferError(f"`steps` must be a whole number of at least 1 (the integration steps of integrated "
                            f"gradients; {DEFAULT_STEPS} by default, fewer is faster and rougher), not {steps!r}.")
    return steps


def _captum():
    try:
        from captum.attr import LayerIntegratedGradients
    except ImportError:
        raise TextxferError("Explaining predictions needs Captum, an optional dependency of textxfer that is not "
                            "installed here. Install it with `pip install 'textxfer[explain]'` (or `pip install "
                            "captum`) and run the command again.") from None
    return LayerIntegratedGradients


# --- the model -------------------------------------------------------------------------------------

def embedding_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The token embedding layer that prediction feeds `input_ids` through (a peft model's base model's;
    a feature-extraction model's backbone's)."""
    try:
        layer = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        layer = None
    if layer is None and hasattr(model, "backbone"):
        layer = model.backbone.get_input_embeddings()
    if layer is None:
        raise TextxferError(f"Cannot find the input embedding layer of this run's model ({type(model).__name__}), "
                            f"which explanations attribute to. Explain a run of another method.")
    return layer


@contextmanager
def _attribution_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode, gradients on, and no parameter gradients (the attribution needs only the embeddings'
    output's); the model's training flag and each parameter's requires_grad are restored afterwards."""
    was_training = model.training
    grads = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        for p, _ in grads:
            p.requires_grad_(False)
        with torch.enable_grad():
            yield
    finally:
        for p, flag in grads:
            p.requires_grad_(flag)
        model.train(was_training)


def _logits(out) -> torch.Tensor:
    return (out if isinstance(out, torch.Tensor) else out.logits).float()


# --- attribution -----------------------------------------------------------------------------------

class _Attributor:
    """Layer integrated gradients of one classifier's logits on its input embeddings."""

    def __init__(self, classifier, steps: int, internal_batch_size: int | None):
        self.model = classifier.model
        self.collate = classifier.collate
        self.pad_id = classifier.tokenizer.pad_token_id
        if self.pad_id is None:
            raise TextxferError("This run's tokenizer has no pad token, which the explanation's baseline is made of. "
                                "Explain a run whose tokenizer sets one (textxfer sets one when it trains).")
        self.steps = steps
        self.internal_batch_size = internal_batch_size
        self.device = next(self.model.parameters()).device
        self.layer = embedding_layer(self.model)
        self.integrated_gradients = _captum()

    def batch(self, window: dict) -> dict:
        """One window as prediction batches it (its collator: positions counted over real tokens)."""
        batch = self.collate([{k: v for k, v in window.items() if k != "doc"}])
        return {k: v.to(self.device) for k, v in batch.items()}

    def logits(self, window: dict) -> torch.Tensor:
        """The window's logits (one row)."""
        with torch.inference_mode():
            return _logits(self.model(**self.batch(window)))[0].cpu()

    def attribute(self, window: dict, special: list[bool], target: int) -> tuple[list[float], float]:
        """Normalised per-token attributions of the window toward class `target`, and the convergence delta."""
        batch = self.batch(window)
        input_ids = batch.pop("input_ids")
        names = list(batch)  # attention mask, token types, positions: held fixed along the path

        def forward(ids, *fixed):
            return _logits(self.model(input_ids=ids, **dict(zip(names, fixed))))

        keep = torch.tensor(special, dtype=torch.bool, device=self.device)[None]
        baseline = torch.where(keep, input_ids, torch.full_like(input_ids, self.pad_id))
        with _attribution_mode(self.model):
            attributions, delta = self.integrated_gradients(forward, self.layer).attribute(
                input_ids, baselines=baseline, target=target, additional_forward_args=tuple(batch.values()),
                n_steps=self.steps, internal_batch_size=self.internal_batch_size, return_convergence_delta=True)
        per_token = attributions.sum(-1)[0].detach().float().cpu().numpy()
        norm = float(np.linalg.norm(per_token))
        if norm > 0:
            per_token = per_token / norm
        return [float(s) for s in per_token], float(delta.reshape(-1)[0])


def _targets(probs: np.ndarray, decided, label: str | None, labels: list[str], multi_label: bool) -> list[int]:
    """The label indices to explain for one text: the given one; else the predicted one, or for multi-label
    runs every predicted label (the most probable when none is predicted)."""
    if label is not None:
        return [labels.index(label)]
    if not multi_label:
        return [int(decided)]
    chosen = [int(j) for j in np.flatnonzero(decided)]
    return chosen or [int(np.argmax(probs))]


def explain(classifier, texts: list[str] | str, pairs: list[str] | None = None, label: str | None = None,
            steps: int = DEFAULT_STEPS, internal_batch_size: int | None = None,
            progress: bool = False) -> list[Explanation]:
    """Explain the classifier's label of each text by layer integrated gradients on its input embeddings.

    Explains the predicted label, or `label` for every text; a multi-label run's text gets one
    `Explanation` per predicted label (its most probable label when none is predicted), otherwise one per
    text, in input order. `steps` is the number of integration steps (more: a smaller convergence delta,
    slower); `internal_batch_size` caps how many of them run through the model at once (memory; the
    run's evaluation batch size by default);
    `progress` shows a progress bar over the texts (on stderr).
    """
    info = classifier.info
    check_explainable(info)
    check_label(label, classifier.labels)
    steps = _check_steps(steps)
    if isinstance(texts, str):
        texts, pairs = [texts], [pairs] if isinstance(pairs, str) else pairs
    texts = list(texts)
    if pairs is not None and len(pairs) != len(texts):
        raise TextxferError(f"`pairs` has {len(pairs)} texts for {len(texts)} texts; give one pair text per text.")
    if not texts:
        return []
    attributor = _Attributor(classifier, steps, internal_batch_size or info.eval_batch_size)
    probs = classifier.predict_proba(texts, pairs)  # also refuses a pair run's texts without pairs
    decided = classifier.decide(probs)
    windows = _windows(classifier, texts, pairs)
    special_ids = set(classifier.tokenizer.all_special_ids)
    explanations = []
    for index, text in enumerate(tqdm(texts, desc="explaining", unit="text", disable=not progress, leave=False)):
        pair = pairs[index] if pairs is not None else None
        encodings = text_encodings(classifier.tokenizer, text, pair, info)
        predicted = ([classifier.labels[j] for j in np.flatnonzero(decided[index])] if classifier.multi_label
                     else classifier.labels[int(decided[index])])
        for target in _targets(probs[index], decided[index], label, classifier.labels, classifier.multi_label):
            explanations.append(_explain_one(attributor, classifier, windows[index], encodings, special_ids, target,
                                             index, text, pair, float(probs[index, target]), predicted))
    return explanations


def _windows(classifier, texts: list[str], pairs: list[str] | None) -> list[list[dict]]:
    """Each text's model inputs as prediction makes them (one, or a `chunks` run's windows, in order)."""
    info = classifier.info
    columns = {"text": texts, **({"text_pair": list(pairs)} if pairs is not None else {})}
    rows = tokenize(datasets.Dataset.from_dict(columns), classifier.tokenizer, info.max_length, info.long_text,
                    info.stride, info.max_chunks).to_list()
    by_text: list[list[dict]] = [[] for _ in texts]
    for row in rows:
        by_text[row["doc"]].append(row)
    return by_text


def _explain_one(attributor: _Attributor, classifier, windows: list[dict], encodings: Encodings | None,
                 special_ids: set[int], target: int, index: int, text: str, pair: str | None, probability: float,
                 predicted) -> Explanation:
    """Attribute every window of one text toward `target`; for a `chunks` run, the window whose logit for
    it is highest is the one that decided."""
    tokenizer = classifier.tokenizer
    chunked = classifier.info.long_text == "chunks"
    explained, cursor = [], 0
    for k, window in enumerate(windows):
        aligned, cursor = place_tokens(window["input_ids"], encodings, cursor, special_ids)
        tokens = tokenizer.convert_ids_to_tokens(window["input_ids"])
        scores, delta = attributor.attribute(window, aligned.special, target)
        logit = float(attributor.logits(window)[target]) if chunked else math.nan
        explained.append((aligned, _window(k, aligned, tokens, scores, delta, logit)))
    decider = max(range(len(explained)), key=lambda k: explained[k][1].logit) if chunked else 0
    aligned, best = explained[decider]
    return Explanation(
        index=index, text=text, label=classifier.labels[target], probability=probability, predicted=predicted,
        tokens=best.tokens, scores=best.scores, delta=best.delta,
        words=merge_words(best.tokens, best.scores, aligned, text, pair), pair=pair,
        window=decider if chunked else None, windows=[w for _, w in explained] if chunked else [])


def _window(k: int, aligned: Aligned, tokens: list[str], scores: list[float], delta: float, logit: float) -> Window:
    """One explained window, with its token and character range in the text."""
    placed = [i for i, t in enumerate(aligned.text_tokens) if t is not None]
    return Window(index=k,
                  token_start=aligned.text_tokens[placed[0]] if placed else None,
                  token_end=aligned.text_tokens[placed[-1]] + 1 if placed else None,
                  char_start=aligned.spans[placed[0]][0] if placed else None,
                  char_end=aligned.spans[placed[-1]][1] if placed else None,
                  logit=logit, tokens=tokens, scores=scores, delta=delta)
