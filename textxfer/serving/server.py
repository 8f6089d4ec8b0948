"""`textxfer serve RUN`: a run (or an ONNX export) behind uvicorn, on this machine only unless told otherwise.

    textxfer serve runs/tickets                      # http://127.0.0.1:8000
    curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"texts": ["my card was charged twice"]}'

The model is loaded and warmed up before the port opens, so the first request is as fast as the rest;
the socket is bound here (a port in use is one clear error, and `--port 0` takes a free port and says
which), then handed to uvicorn.
"""
from __future__ import annotations

import socket
from pathlib import Path

from ..errors import TextxferError
from ..log import get_logger, note

log = get_logger("serve")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _require_packages():
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise TextxferError(f"`textxfer serve` needs FastAPI and uvicorn ({exc.name} is missing). Install them with "
                            f"`pip install 'textxfer[serve]'` (or `pip install fastapi uvicorn`).") from None


def _check_settings(port: int, max_batch: int, max_wait_ms: float, max_texts: int, max_chars: int) -> None:
    checks = [(0 <= port <= 65535, f"--port must be from 0 to 65535 (0: any free port), got {port}"),
              (max_batch >= 1, f"--max-batch must be at least 1, got {max_batch}"),
              (0 <= max_wait_ms <= 1000, f"--max-wait-ms must be from 0 to 1000 milliseconds, got {max_wait_ms:g}"),
              (max_texts >= 1, f"--max-texts must be at least 1, got {max_texts}"),
              (max_chars >= 1, f"--max-chars must be at least 1, got {max_chars}")]
    for ok, message in checks:
        if not ok:
            raise TextxferError(message + ".")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port` (IPv4 or IPv6), or one clear error."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise TextxferError(f"Cannot listen on --host {host}: {exc.strerror or exc}. Use an address of this machine, "
                            f"e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every interface).") from None
    # IPPROTO_TCP said outright: asyncio sets TCP_NODELAY only on such sockets, and without it a small
    # response waits for the client's delayed ACK (40 ms a request)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        taken = "is in use (another server?)" if exc.errno in (98, 48, 10048) else f"cannot be used ({exc.strerror})"
        raise TextxferError(f"Port {port} on {host} {taken}: pick another with --port, or --port 0 for any free "
                            f"port.") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, backend: str | None = None,
          max_batch: int = 64, max_wait_ms: float = 5.0, max_texts: int = 256, max_chars: int = 20000,
          access_log: bool = False) -> None:
    """Serve `run_dir` over HTTP until interrupted: POST /predict (dynamic batches of at most `max_batch`
    texts, waiting at most `max_wait_ms` for more under load), GET /health, GET /metadata."""
    _require_packages()
    _check_settings(port, max_batch, max_wait_ms, max_texts, max_chars)
    import uvicorn

    from .app import Limits, create_app
    from .backends import load_backend

    classifier, backend = load_backend(run_dir, backend)
    classifier.predict_proba(["warm up"], ["warm up"] if classifier.info.text_pair_column else None)
    limits = Limits(max_texts=max_texts, max_chars=max_chars, max_batch=max_batch, max_wait_ms=max_wait_ms)
    app = create_app(classifier, backend, limits)
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="info" if access_log else "warning", access_log=access_log,
                            lifespan="on", timeout_graceful_shutdown=5)
    shown = f"[{host}]" if ":" in host else host
    log.info(f"serving {run_dir} ({backend}, {len(classifier.labels)} labels) at http://{shown}:{bound} "
             f"(POST /predict, GET /health, GET /metadata, docs at /docs); Ctrl+C stops it")
    if host not in LOCAL_HOSTS:
        note(log, f"listening on {host}: other machines can reach this server, and it has no authentication")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
