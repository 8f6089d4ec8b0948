"""The HTTP API of `textxfer serve`: the FastAPI app, its request and response models, its limits.

    POST /predict   {"texts": [...], "pairs": [...]?, "return_probabilities": false, "min_confidence": 0.8?}
    GET  /health    {"status": "ok", ...}
    GET  /metadata  labels, method, base model, versions, decision rule, test metrics, limits

Every error is a JSON body `{"error": "...", "status": N}` (validation errors add `detail`, without the
offending input echoed back), never a stack trace: 413 for too many texts, too long a text or too large
a body; 422 for an empty list, wrong types, unknown keys, pairs that do not fit the run, or a threshold
the run cannot take; 404/405 for other paths and methods; 500 (logged on the server) otherwise.
"""
from __future__ import annotations

import json
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr
from starlette.exceptions import HTTPException

from .._version import __version__
from ..errors import TextxferError
from ..inference import Classifier
from ..log import get_logger
from .answers import answers, metadata
from .batcher import Batcher

log = get_logger("serve")


@dataclass(frozen=True)
class Limits:
    """What one request may hold, and how requests are batched."""

    max_texts: int = 256
    max_chars: int = 20000
    max_batch: int = 64
    max_wait_ms: float = 5.0

    def max_body_bytes(self) -> int:
        """A generous cap on a request body: every text and pair at the limit, each character escaped."""
        return self.max_texts * self.max_chars * 2 * 12 + 65536


class PredictRequest(BaseModel):
    """Texts to classify (with their pair texts, for runs that classify pairs)."""

    model_config = ConfigDict(extra="forbid")
    texts: list[StrictStr] = Field(description="the texts to classify, in order")
    pairs: list[StrictStr] | None = Field(None, description="one pair text per text, for runs that classify pairs")
    return_probabilities: StrictBool = Field(False, description="add each text's probability for every label")
    min_confidence: float | None = Field(None, ge=0.0, le=1.0, strict=True,
                                         description="abstain below this calibrated score (default: the run's)")


class Prediction(BaseModel):
    """A single-label prediction: `label` is null when the model abstains (its score is under the
    threshold); `suggested_label` is always the best guess."""

    label: str | None
    score: float
    abstained: bool
    suggested_label: str
    probabilities: dict[str, float] | None = None


class LabelSet(BaseModel):
    """A multi-label prediction: the labels whose calibrated score reaches the run's threshold for it."""

    labels: list[str]
    scores: dict[str, float]
    probabilities: dict[str, float] | None = None


class PredictResponse(BaseModel):
    predictions: list[Prediction] | list[LabelSet]
    min_confidence: float | None = None


class Refused(Exception):
    """A request the server will not run: an HTTP status and one sentence for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def create_app(classifier: Classifier, backend: str = "torch", limits: Limits = Limits()) -> FastAPI:
    """The app serving `classifier`: one `Batcher` (its model thread starts with the app, stops with it)."""
    state: dict = {}

    @asynccontextmanager
    async def lifespan(_app):
        state["batcher"] = Batcher(_probabilities(classifier, limits.max_batch), limits.max_batch, limits.max_wait_ms)
        try:
            yield
        finally:
            state.pop("batcher").close()

    app = FastAPI(title="textxfer", version=__version__, lifespan=lifespan,
                  description="A textxfer classifier: POST /predict classifies texts in dynamic batches.")
    about = metadata(classifier, backend, {**asdict(limits)})
    _add_error_handlers(app)

    @app.get("/health")
    async def health() -> dict:
        batcher = state.get("batcher")
        return {"status": "ok" if batcher else "starting", "backend": backend,
                "batching": batcher.stats.to_dict() if batcher else None}

    @app.get("/metadata")
    async def get_metadata() -> dict:
        return about

    @app.post("/predict", response_model=PredictResponse, response_model_exclude_unset=True)
    async def predict(request: PredictRequest):
        _check(request, classifier, limits)
        try:
            threshold = classifier.min_confidence(request.min_confidence)  # the request's, or the run's
        except TextxferError as exc:
            raise Refused(422, str(exc)) from None
        probs = await state["batcher"].predict(request.texts, request.pairs)
        return {"predictions": answers(classifier, probs, threshold, request.return_probabilities),
                "min_confidence": threshold}

    return _BodyLimit(app, limits.max_body_bytes())


def _probabilities(classifier: Classifier, max_batch: int):
    """What the model thread runs on a gathered batch: calibrated probabilities, `max_batch` texts a pass."""
    return lambda texts, pairs: classifier.predict_proba(texts, pairs, batch_size=max_batch)


def _check(request: PredictRequest, classifier: Classifier, limits: Limits) -> None:
    """The limits and the run's shape (pairs or not), before anything queues."""
    texts, pairs, pair_column = request.texts, request.pairs, classifier.info.text_pair_column
    if not texts:
        raise Refused(422, "`texts` is empty: send at least one text, e.g. "
                           "{\"texts\": [\"my card was charged twice\"]}.")
    if len(texts) > limits.max_texts:
        raise Refused(413, f"{len(texts)} texts in one request; this server takes at most {limits.max_texts} "
                           f"(`--max-texts`): split them over several requests.")
    for name, values in (("texts", texts), ("pairs", pairs or [])):
        for i, text in enumerate(values):
            if len(text) > limits.max_chars:
                raise Refused(413, f"`{name}[{i}]` has {len(text)} characters; this server takes at most "
                                   f"{limits.max_chars} per text (`--max-chars`).")
    if request.min_confidence is not None and classifier.multi_label:
        raise Refused(422, "`min_confidence` applies to single-label runs; this run is multi-label: each label is "
                           "decided by its own threshold, tuned on validation. Leave it out.")
    if pair_column and pairs is None:
        raise Refused(422, f"This run classifies text pairs (`{pair_column}` with each text): send `pairs`, one "
                           f"per text.")
    if not pair_column and pairs is not None:
        raise Refused(422, "This run classifies single texts, not pairs: leave out `pairs`.")
    if pairs is not None and len(pairs) != len(texts):
        raise Refused(422, f"`pairs` has {len(pairs)} texts for {len(texts)} `texts`: send one pair text per text.")


def _error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Refused)
    async def refused(_request, exc: Refused):
        return _error(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, exc: RequestValidationError):
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]  # without `input`: a request's texts are not echoed back
        first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "the body"
        return _error(422, f"Invalid request: {where}: {first['msg']}. Send JSON like "
                           f"{{\"texts\": [\"a text\", \"another\"]}}.", detail=detail)

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(TextxferError)
    async def textxfer_error(_request, exc: TextxferError):
        return _error(422, str(exc))

    @app.exception_handler(Exception)
    async def crashed(_request, exc: Exception):
        log.error(f"prediction failed: {type(exc).__name__}: {exc}", exc_info=exc)
        return _error(500, f"The server failed on this request ({type(exc).__name__}); its log has the details.")


class _BodyLimit:
    """ASGI wrapper that answers 413 to a body whose declared length is past the limit, before reading it."""

    def __init__(self, app: FastAPI, limit: int):
        self.app, self.limit = app, limit

    def __getattr__(self, name):  # the wrapped app's attributes (routes, state) stay reachable
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.limit:
                body = json.dumps({"error": f"The request body has {int(length)} bytes; this server takes at most "
                                            f"{self.limit}: send fewer or shorter texts.", "status": 413}).encode()
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 413, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
