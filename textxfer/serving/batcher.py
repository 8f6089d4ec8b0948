"""Dynamic batching: concurrent requests share one forward pass, in one model thread.

Each request hands its texts to `Batcher.predict` and awaits a future; the event loop only enqueues and
waits, so it never blocks on the model. One worker thread takes the oldest request and gathers the
others already queued, up to `max_batch` texts, into one batch; the classifier sorts that batch by
token length and pads each forward chunk to its longest text, and every request gets its own rows back,
in its order. While the model runs, new requests queue, so the batch grows with the load by itself (as
in Text Embeddings Inference's continuous batching). The worker also waits up to `max_wait_ms` for more
requests, but only when the previous batch held several requests (there is load, and the clients that
just got their answers are about to send again): a request that comes alone, after alone, never waits.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

Predict = Callable[[list[str], "list[str] | None"], np.ndarray]


@dataclass
class _Job:
    texts: list[str]
    pairs: list[str] | None
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


@dataclass
class BatchStats:
    """What the worker has done: batches run, requests and texts in them, the largest batch."""

    batches: int = 0
    requests: int = 0
    texts: int = 0
    largest: int = 0

    def to_dict(self) -> dict:
        return {"batches": self.batches, "requests": self.requests, "texts": self.texts, "largest_batch": self.largest,
                "mean_requests_per_batch": round(self.requests / self.batches, 3) if self.batches else None}


class Batcher:
    """Gathers concurrent `predict` calls into batches for `predict_batch(texts, pairs) -> probabilities`,
    which runs in one worker thread (started here; `close` stops it)."""

    def __init__(self, predict_batch: Predict, max_batch: int = 64, max_wait_ms: float = 5.0):
        self.predict_batch = predict_batch
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000
        self.stats = BatchStats()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="textxfer-model", daemon=True)
        self._thread.start()

    async def predict(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """The probabilities of `texts` (one row each, in order), computed in a shared batch."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Job(texts, pairs, future, loop))
        return await future

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker after the batch it is running (requests still queued get an error)."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        expected = 1  # requests in the previous batch: how many to wait for under load
        carry = None  # a request that did not fit in the previous batch
        while True:
            first = carry if carry is not None else self._queue.get()
            if first is None:
                break
            jobs, carry, stop = self._gather(first, expected)
            expected = len(jobs)
            self._process(jobs)
            if stop:
                break
        self._fail_queued()

    def _gather(self, first: _Job, expected: int) -> tuple[list[_Job], _Job | None, bool]:
        """The batch that starts with `first`: the requests already queued, and under load (`expected` > 1)
        those that come within `max_wait`, while they fit in `max_batch` texts. Returns the batch, the
        request that did not fit (it starts the next batch) and whether to stop after this one."""
        jobs, size = [first], len(first.texts)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if len(jobs) >= expected or left <= 0:
                    break
                try:
                    job = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if job is None:
                return jobs, None, True
            if size + len(job.texts) > self.max_batch:
                return jobs, job, False
            jobs.append(job)
            size += len(job.texts)
        return jobs, None, False

    def _process(self, jobs: list[_Job]) -> None:
        jobs = [j for j in jobs if not j.future.cancelled()]  # a client that went away needs no answer
        if not jobs:
            return
        texts = [t for j in jobs for t in j.texts]
        pairs = [p for j in jobs for p in j.pairs] if jobs[0].pairs is not None else None
        try:
            probs = self.predict_batch(texts, pairs)
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error, the worker goes on
            for job in jobs:
                _post(job, None, exc)
            return
        self.stats.batches += 1
        self.stats.requests += len(jobs)
        self.stats.texts += len(texts)
        self.stats.largest = max(self.stats.largest, len(texts))
        start = 0
        for job in jobs:
            end = start + len(job.texts)
            _post(job, probs[start:end], None)
            start = end

    def _fail_queued(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                _post(job, None, RuntimeError("the server is shutting down"))


def _post(job: _Job, result, error: BaseException | None) -> None:
    """Hand a result (or an error) to the request's event loop, from the worker thread."""
    try:
        job.loop.call_soon_threadsafe(_settle, job.future, result, error)
    except RuntimeError:  # the loop is closed: the server stopped, nobody waits any more
        pass


def _settle(future: asyncio.Future, result, error: BaseException | None) -> None:
    """Resolve a request's future in its event loop (unless the request was cancelled meanwhile)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
