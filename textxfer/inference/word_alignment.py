"""Where the tokens of a model input lie in the text: character spans and words, found from the fast
tokenizer's offsets (or, for a head_tail cut, by aligning the input's ids with the whole text's
tokenization), and subword pieces merged into words with their scores summed. Used by
`textxfer.inference.explain`."""
from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher

from ..runs.info import RunInfo


@dataclass
class Word:
    """Subword pieces merged into a word of the text (or of its pair text): summed scores, and where it is.

    `start`/`end` are character offsets into the text (`segment` 0) or the pair text (`segment` 1); None for
    a piece that could not be placed (the joint of a head_tail cut). `tokens` is the range of its pieces in
    `Explanation.tokens`."""

    text: str
    score: float
    start: int | None
    end: int | None
    tokens: tuple[int, int]
    segment: int = 0


@dataclass
class Aligned:
    """Where each token of a model input lies: its segment (None for a special token), character span and
    word, found by aligning the input's ids with the whole text's tokenization (with offsets)."""

    segments: list[int | None]
    spans: list[tuple[int, int] | None]
    words: list[int | None]
    text_tokens: list[int | None]  # index among the text's tokens (segment 0, special tokens left out)
    special: list[bool]


@dataclass
class Encodings:
    """A text's tokenizations with offsets: the windows prediction's own tokenizer call makes (truncated,
    or a `chunks` run's overflowing windows; none for head_tail, which cuts the text first), each window's
    first token among the text's tokens, and the whole tokenization (no truncation)."""

    windows: list
    starts: list[int]
    full: object


def text_encodings(tokenizer, text: str, pair: str | None, info: RunInfo) -> Encodings | None:
    """The text's tokenizations with offsets (as `tokenize` calls the tokenizer), or None for a tokenizer
    without offsets."""
    if not getattr(tokenizer, "is_fast", False):
        return None
    full = tokenizer(text, pair, truncation=False, return_offsets_mapping=True, verbose=False).encodings[0]
    if info.long_text == "head_tail":
        return Encodings([], [], full)
    kwargs = {"truncation": "only_first" if pair is not None else True, "max_length": info.max_length}
    if info.long_text == "chunks":
        kwargs.update(stride=info.stride, return_overflowing_tokens=True)
    windows = tokenizer(text, pair, return_offsets_mapping=True, **kwargs).encodings
    starts = [0]
    for window in windows[:-1]:  # neighbouring windows share `stride` tokens
        starts.append(starts[-1] + window.sequence_ids.count(0) - info.stride)
    return Encodings(windows, starts, full)


def place_tokens(ids: list[int], encodings: Encodings | None, cursor: int, special_ids: set[int]) -> tuple[Aligned, int]:
    """Where the tokens of one model input lie, and the cursor past its window: the window of the same
    ids (windows come in order; `max_chunks` may skip some), or for a head_tail cut, an alignment with
    the whole tokenization."""
    if encodings is None:
        n = len(ids)
        return Aligned([None] * n, [None] * n, [None] * n, [None] * n, [i in special_ids for i in ids]), cursor
    for m in range(cursor, len(encodings.windows)):
        window = encodings.windows[m]
        if window.ids == list(ids):
            return _from_encoding(window, encodings.starts[m]), m + 1
    return _align_cut(ids, encodings.full, special_ids), cursor


def _from_encoding(encoding, start: int) -> Aligned:
    """Token positions straight from the encoding of the same ids (its first text token is the `start`-th)."""
    text_tokens, k = [], start
    for segment in encoding.sequence_ids:
        text_tokens.append(k if segment == 0 else None)
        k += segment == 0
    special = [bool(m) for m in encoding.special_tokens_mask]
    return Aligned([None if sp else seg for seg, sp in zip(encoding.sequence_ids, special)],
                    [None if sp else span for span, sp in zip(encoding.offsets, special)],
                    [None if sp else w for w, sp in zip(encoding.word_ids, special)], text_tokens, special)


def _align_cut(ids: list[int], full, special_ids: set[int]) -> Aligned:
    """Place the tokens of a head_tail cut (the head and the tail of the whole tokenization, and maybe a
    piece at the joint that matches neither) on the whole tokenization."""
    n = len(ids)
    aligned = Aligned([None] * n, [None] * n, [None] * n, [None] * n, [i in special_ids for i in ids])
    first_text = next((j for j, s in enumerate(full.sequence_ids) if s == 0), 0)
    matcher = SequenceMatcher(None, ids, full.ids, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            i, j = block.a + k, block.b + k
            segment = full.sequence_ids[j]
            aligned.special[i] = bool(full.special_tokens_mask[j])
            if segment is None or aligned.special[i]:
                continue
            aligned.segments[i], aligned.spans[i], aligned.words[i] = segment, full.offsets[j], full.word_ids[j]
            if segment == 0:
                aligned.text_tokens[i] = j - first_text
    for i in range(n):  # a piece that matched nothing (the joint of the cut) is the text's
        if aligned.segments[i] is None and not aligned.special[i]:
            aligned.segments[i] = 0
    return aligned


def merge_words(tokens: list[str], scores: list[float], aligned: Aligned, text: str, pair: str | None) -> list[Word]:
    """Pieces of one word (same segment and word id, next to each other) merged: summed scores, one span."""
    words: list[Word] = []
    key_of_last = None
    for i, (token, score) in enumerate(zip(tokens, scores)):
        if aligned.special[i]:
            key_of_last = None
            continue
        key = (aligned.segments[i], aligned.words[i]) if aligned.words[i] is not None else None
        if key is not None and key == key_of_last:
            word = words[-1]
            word.score += score
            word.tokens = (word.tokens[0], i + 1)
            if aligned.spans[i] is not None:
                word.start = aligned.spans[i][0] if word.start is None else min(word.start, aligned.spans[i][0])
                word.end = aligned.spans[i][1] if word.end is None else max(word.end, aligned.spans[i][1])
        else:
            span = aligned.spans[i]
            words.append(Word(token, score, span[0] if span else None, span[1] if span else None, (i, i + 1),
                              aligned.segments[i] or 0))
        key_of_last = key
    for word in words:
        source = pair if word.segment == 1 else text
        if word.start is not None and source is not None:
            piece = source[word.start:word.end]
            word.start += len(piece) - len(piece.lstrip())  # byte-level BPE pieces carry their leading space
            word.end -= len(piece) - len(piece.rstrip())
            word.text = source[word.start:word.end]
        word.score = float(word.score)
    return words
