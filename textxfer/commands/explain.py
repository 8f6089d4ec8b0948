"""`textxfer explain`: which words made a run give a text its label.

    textxfer explain runs/tickets "my card was charged twice"
    textxfer explain runs/tickets data_samples/tickets_test.csv --html explained.html --json explained.json
    textxfer explain runs/tickets "where is my refund" --label refund_not_showing_up

Token attributions by layer integrated gradients on the input embeddings (`textxfer.inference.explain`,
Captum: the `explain` extra), for the predicted label or `--label`. The terminal view shades each word,
green toward the label and red against it (plain `word(+0.31)` when stdout is not a terminal or NO_COLOR
is set); `--html` writes a self-contained page with the words shaded; `--json` (or `-` for stdout) writes
the per-token and per-word scores.
"""
from __future__ import annotations

import html
import json
import os
import sys
from pathlib import Path

from ..data.io import FORMATS, check_readable
from ..data.splits import read_texts
from ..errors import TextxferError
from ..fsutil import atomic_file, write_json
from ..inference import load_classifier
from ..inference.explain import DEFAULT_STEPS, Explanation, check_explainable, check_label, explain
from ..log import get_logger, note
from ..runs.info import RunInfo

log = get_logger()
QUIET = 0.05  # words scored closer to 0 than this are shown unshaded
GREEN, RED = (0, 160, 60), (215, 40, 40)


def explain_command(run_dir: str | Path, inputs: list[str], label: str | None = None, html: str | None = None,
                    json_path: str | None = None, color: bool | None = None, steps: int = DEFAULT_STEPS,
                    text_column: str | list[str] | None = None, stream=None) -> list[Explanation]:
    """Explain literal texts, or the rows of one table file, with the run in `run_dir`; print the terminal
    view on `stream` (stdout; not when the JSON goes there), write the `html` page and the `json_path`
    scores (`-`: stdout). `color` None: shade when the stream is a terminal and NO_COLOR is unset."""
    run_dir = Path(run_dir)
    stream = stream or sys.stdout
    info = RunInfo.read(run_dir, "`textxfer explain`")  # cheap checks first: loading a model takes seconds
    check_explainable(info, str(run_dir))
    check_label(label, info.labels)
    source = _table_input(inputs)
    _check_outputs(html, json_path, source)
    texts, pairs = _read_inputs(inputs, source, info, text_column)
    classifier = load_classifier(run_dir)
    explanations = explain(classifier, texts, pairs, label, steps=steps, progress=_is_terminal(sys.stderr))
    tell = log.info if json_path != "-" else (lambda message: note(log, message))  # stdout holds the JSON
    if json_path != "-":
        stream.write(render_terminal(explanations, _use_color(stream) if color is None else color))
        stream.flush()
    if html:
        with atomic_file(Path(html), f"the explanations page {html}") as tmp:
            tmp.write_text(render_html(explanations, str(run_dir)), encoding="utf-8")
        tell(f"wrote the explanations of {len(texts)} texts to {html}")
    if json_path:
        document = {"run": str(run_dir), "steps": steps, "explanations": [e.to_dict() for e in explanations]}
        if json_path == "-":
            stream.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
            stream.flush()
        else:
            write_json(Path(json_path), document)
            tell(f"wrote the scores of {len(texts)} texts to {json_path}")
    return explanations


# --- inputs ----------------------------------------------------------------------------------------

def _table_input(inputs: list[str]) -> Path | None:
    """The table file among the arguments, if they name one: a single argument that is a file, or that
    looks like a table's path (a known extension, no spaces: then a missing file is an error, not a text)."""
    looks_like_file = [x for x in inputs if Path(x).is_file() or (Path(x).suffix.lower() in FORMATS
                                                                   and not any(c.isspace() for c in x))]
    if not looks_like_file:
        return None
    if len(inputs) > 1:
        raise TextxferError(f"`textxfer explain` takes either texts or one file of texts, and was given "
                            f"{len(inputs)} arguments of which {', '.join(looks_like_file[:3])} look like files. Give "
                            f"the file alone, or quote each text.")
    check_readable(looks_like_file[0], "input")
    return Path(looks_like_file[0])


def _read_inputs(inputs: list[str], source: Path | None, info: RunInfo, text_column) -> tuple[list[str], list | None]:
    """The texts (and pair texts) to explain: the arguments, or the file's text column(s)."""
    if source is not None:
        if isinstance(text_column, str) and "," in text_column:
            text_column = text_column.split(",")
        texts, pairs, _ = read_texts(source, text_column or info.text_column, text_pair_column=info.text_pair_column)
        return texts, pairs
    if info.text_pair_column:
        raise TextxferError(f"This run classifies text pairs (`{info.text_column}` with `{info.text_pair_column}`), "
                            f"so a text alone cannot be explained. Give a CSV/TSV/JSONL/parquet file with both "
                            f"columns instead.")
    return list(inputs), None


def _check_outputs(html_path: str | None, json_path: str | None, source: Path | None) -> None:
    """Refuse, before any work, outputs that are folders, in missing folders, the input, or the same file."""
    if html_path and json_path and json_path != "-" and Path(html_path).resolve() == Path(json_path).resolve():
        raise TextxferError(f"--html and --json name the same file ({html_path}); give each its own name.")
    for path, flag, example in ((html_path, "--html", "explained.html"), (json_path, "--json", "explained.json")):
        if not path or (flag == "--json" and path == "-"):
            continue
        path = Path(path)
        if path.is_dir():
            raise TextxferError(f"The {flag} output {path} is a folder; give a file name such as {path / example}.")
        if not path.resolve().parent.is_dir():
            raise TextxferError(f"The folder of the {flag} output {path} does not exist ({path.resolve().parent}); "
                                f"create it first, or write somewhere else.")
        if source is not None and path.resolve() == source.resolve():
            raise TextxferError(f"The {flag} output {path} is the input file itself; textxfer does not overwrite its "
                                f"input. Give another name, e.g. {path.with_name(example)}.")


# --- the terminal view -----------------------------------------------------------------------------

def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _use_color(stream) -> bool:
    """Shade when writing to a terminal, unless NO_COLOR is set (https://no-color.org)."""
    return _is_terminal(stream) and not os.environ.get("NO_COLOR")


def _shade(score: float) -> tuple[tuple[int, int, int], float]:
    """The colour (green toward the label, red against) and its strength, from 0 to 1, of a score."""
    return (GREEN if score >= 0 else RED), min(1.0, abs(score))


def _ansi(word: str, score: float) -> str:
    """A word on a background blended from white toward its colour by |score| (black text on it)."""
    if abs(score) < QUIET:
        return word
    (r, g, b), strength = _shade(score)
    alpha = 0.25 + 0.75 * strength
    mix = [round(255 + (c - 255) * alpha) for c in (r, g, b)]
    return f"\x1b[38;2;0;0;0;48;2;{mix[0]};{mix[1]};{mix[2]}m{word}\x1b[0m"


def headline(e: Explanation) -> str:
    """The label explained, its probability, and the prediction when it is another."""
    predicted = ", ".join(e.predicted) if isinstance(e.predicted, list) else e.predicted
    line = f"{e.label} {e.probability:.2f}"
    if (e.label not in e.predicted) if isinstance(e.predicted, list) else (e.label != e.predicted):
        line += f" (predicted: {predicted or 'none'})"
    if e.window is not None:
        w = e.windows[e.window]
        where = f", characters {w.char_start}-{w.char_end}" if w.char_start is not None else ""
        line += f"; decided by window {e.window + 1} of {len(e.windows)} (tokens {w.token_start}-{w.token_end}{where})"
    return line


def _top(e: Explanation) -> str:
    return ", ".join(f"{w.text} {w.score:+.2f}" for w in e.top_words(3)) or "no word pushes toward it"


def render_terminal(explanations: list[Explanation], color: bool) -> str:
    """One block per explanation: the text's number and headline, its words scored, and the top words."""
    blocks = []
    for e in explanations:
        if color:
            words = " ".join(_ansi(w.text, w.score) for w in e.words)
        else:
            words = " ".join(f"{w.text}({w.score:+.2f})" for w in e.words)
        blocks.append(f"[{e.index + 1}] {headline(e)}\n    {words}\n    top: {_top(e)}\n")
    return "\n".join(blocks)


# --- the HTML page ---------------------------------------------------------------------------------

_STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
section{border-top:1px solid #ddd;padding:.8rem 0}h1{font-size:1.3rem}h2{font-size:1rem;margin:.2rem 0}
.text{line-height:1.9;white-space:pre-wrap}.text span{border-radius:3px;padding:1px 2px}.outside{color:#999}
.meta{color:#555;font-size:.9rem}details{font-size:.85rem;margin-top:.4rem}.tokens span{margin-right:.3rem}"""


def _css(score: float) -> str:
    (r, g, b), strength = _shade(score)
    return f"background:rgba({r},{g},{b},{strength:.3f})"


def _span(text: str, score: float) -> str:
    return f'<span style="{_css(score)}" title="{score:+.3f}">{html.escape(text)}</span>'


def _shaded_text(source: str, words: list, segment: int, outside_from: int | None = None,
                 outside_to: int | None = None) -> str:
    """The text with its words shaded in place (its own spacing and characters kept, escaped); text outside
    the explained window greyed; words that could not be placed follow at the end."""
    placed = sorted((w for w in words if w.segment == segment and w.start is not None), key=lambda w: w.start)
    parts, at = [], 0
    if outside_from is not None and outside_from > 0:
        parts.append(f'<span class="outside">{html.escape(source[:outside_from])}</span>')
        at = outside_from
    for w in placed:
        if w.start < at:
            continue
        parts.append(html.escape(source[at:w.start]))
        parts.append(_span(source[w.start:w.end], w.score))
        at = w.end
    end = outside_to if outside_to is not None else len(source)
    parts.append(html.escape(source[at:end]))
    if end < len(source):
        parts.append(f'<span class="outside">{html.escape(source[end:])}</span>')
    unplaced = [w for w in words if w.segment == segment and w.start is None]
    parts += [" " + _span(w.text, w.score) for w in unplaced]
    return "".join(parts)


def _section(e: Explanation) -> str:
    window = e.windows[e.window] if e.window is not None else None
    text = _shaded_text(e.text, e.words, 0, window.char_start if window else None, window.char_end if window else None)
    pair = (f'<p class="meta">pair text:</p><div class="text">{_shaded_text(e.pair, e.words, 1)}</div>'
            if e.pair is not None else "")
    tokens = "".join(_span(t, s) for t, s in zip(e.tokens, e.scores))
    return (f"<section><h2>{e.index + 1}. {html.escape(headline(e))}</h2>"
            f'<div class="text">{text}</div>{pair}'
            f'<p class="meta">top words: {html.escape(_top(e))}'
            f"; convergence delta {e.delta:.4f}</p>"
            f'<details><summary>tokens</summary><div class="tokens">{tokens}</div></details></section>')


def render_html(explanations: list[Explanation], run: str) -> str:
    """A self-contained page (inline styles, no scripts or links): one section per explanation."""
    legend = f"{_span('toward the label', 0.6)} {_span('against it', -0.6)}"
    body = "\n".join(_section(e) for e in explanations)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>textxfer explain: '
            f"{html.escape(run)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>Why {html.escape(run)} chose its labels</h1>"
            f'<p class="meta">Word attributions by layer integrated gradients on the input embeddings, normalised '
            f"per text (hover a word for its score): {legend}</p>\n{body}\n</body></html>\n")
