"""`textxfer serve` vs a naive FastAPI server around ``transformers.pipeline`` on the same model and texts.

    python bench/serve.py --run /tmp/serve-bench/b77-full --seconds 20 --repeats 2

Two servers, one at a time, each in its own process on 127.0.0.1:

- (t) ``textxfer serve RUN`` with its defaults (dynamic batching: at most 64 texts a batch, at most
  5 ms of waiting for more under load, the model in one worker thread);
- (n) the naive server: FastAPI with a plain ``def`` endpoint (FastAPI runs it in its thread pool, as
  its documentation advises for blocking code) calling ``pipeline("text-classification", model=RUN)``
  on the request's text, truncated at the run's ``max_length``.

The load: ``--concurrency`` closed-loop clients (1, 8 and 32 by default), each sending one text per
request (``{"texts": [text]}``) and the next as soon as the answer comes, cycling through the run's test
texts (Banking77's, for a Banking77 run), over keep-alive connections opened by a minimal asyncio
HTTP/1.1 client in this process (httpx is used only to check the servers' labels). Per level:
``--warmup`` seconds unmeasured, then ``--seconds`` measured: completed requests per second and the
latency percentiles (p50, p99). Both servers' labels on the first 200 texts are compared, so that a
speed-up cannot come from computing something else. The client shares the machine with the server:
its CPU is reported, and so is the CPU of other processes during each measurement (a busy machine
shows there). With ``--repeats`` > 1 the variants alternate and the report gives medians.
"""
import argparse
import asyncio
import csv
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import _common as common

VARIANTS = {"t": "(t) textxfer serve", "n": "(n) naive FastAPI + pipeline"}


def read_texts(run: Path, texts_file: str | None) -> list[str]:
    """The texts of `--texts`, else of the run's test file (its recipe.yaml says which)."""
    import yaml

    recipe = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))
    path = texts_file or recipe["data"].get("test")
    if not path or not Path(path).is_file():
        sys.exit(f"bench/serve.py: no texts to send ({path!r}); pass --texts FILE (a CSV with the run's text column).")
    with open(path, newline="", encoding="utf-8") as fh:
        return [row[recipe["data"].get("text_column", "text")] for row in csv.DictReader(fh)]


def naive_server(run: Path, port: int) -> None:
    """The baseline: FastAPI calling the transformers pipeline per request, one text at a time."""
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import pipeline

    max_length = json.loads((run / "textxfer.json").read_text(encoding="utf-8"))["max_length"]
    pipe = pipeline("text-classification", model=str(run), device="cpu")
    app = FastAPI()

    class Request(BaseModel):
        texts: list[str]

    @app.post("/predict")  # (no `from __future__ import annotations` in this file: FastAPI must see the class)
    def predict(request: Request):
        return {"predictions": [pipe(text, truncation=True, max_length=max_length)[0] for text in request.texts]}

    @app.get("/health")
    def health():
        return {"status": "ok"}

    pipe("warm up", truncation=True, max_length=max_length)
    print(f"naive server at http://127.0.0.1:{port} ", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server process of one variant; `url` once /health answers."""

    def __init__(self, variant: str, run: Path):
        import httpx

        if variant == "t":
            cmd = [sys.executable, "-m", "textxfer", "serve", str(run), "--port", "0"]
        else:
            cmd = [sys.executable, __file__, "--naive-server", str(run), "--port", str(_free_port())]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=common.child_env("cpu"))
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            urls = [m.group(1) for line in list(self.lines) for m in [re.search(r"at (http://[\d.]+:\d+) ", line)] if m]
            if urls:
                try:
                    if httpx.get(urls[0] + "/health", timeout=5).status_code == 200:
                        self.url = urls[0]
                        return
                except httpx.TransportError:
                    pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        sys.exit(f"bench/serve.py: the {VARIANTS[variant]} server did not start:\n{''.join(self.lines)}")

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process (all its threads) so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class _Connection:
    """A keep-alive HTTP/1.1 connection that POSTs JSON and reads the answer: a few lines of asyncio
    streams, so that the load generator spends little of the machine's 2 cores (httpx spent ~3 ms of
    CPU a request here, which the servers would have had to share)."""

    def __init__(self, url: str):
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.reader = self.writer = None

    async def post(self, path: str, payload: dict) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = json.dumps(payload).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json"
                          f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        length = next(int(line.split(":", 1)[1]) for line in head if line.lower().startswith("content-length:"))
        return int(head[0].split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _load(url: str, texts: list[str], concurrency: int, warmup: float, seconds: float) -> dict:
    """Closed-loop clients for `warmup` + `seconds`; figures of the measured part."""
    latencies: list[float] = []
    state = {"next": 0, "measuring": False, "errors": 0}

    async def worker(stop_at: float):
        connection = _Connection(url)
        try:
            while time.perf_counter() < stop_at:
                text = texts[state["next"] % len(texts)]
                state["next"] += 1
                started = time.perf_counter()
                try:
                    status, _ = await connection.post("/predict", {"texts": [text]})
                except (OSError, asyncio.IncompleteReadError):
                    status, connection = 0, _Connection(url)
                if status != 200:
                    state["errors"] += 1
                elif state["measuring"]:
                    latencies.append(time.perf_counter() - started)
        finally:
            connection.close()

    start = time.perf_counter()
    tasks = [asyncio.create_task(worker(start + warmup + seconds)) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    state["measuring"], measured_from = True, time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - measured_from
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else None  # noqa: E731
    return {"requests": len(latencies), "requests_per_second": len(latencies) / elapsed, "p50_ms": pick(0.50),
            "p99_ms": pick(0.99), "errors": state["errors"], "seconds": elapsed}


def _labels(url: str, texts: list[str]) -> list[str]:
    import httpx

    out = []
    for text in texts:
        p = httpx.post(url + "/predict", json={"texts": [text]}, timeout=60).json()["predictions"][0]
        out.append(p["label"] if "suggested_label" not in p else p["suggested_label"])
    return out


def run_variant(variant: str, run: Path, texts: list[str], levels: list[int], warmup: float, seconds: float) -> dict:
    """Start the variant's server, load it at every level, stop it."""
    server = Server(variant, run)
    try:
        out, previous = {"labels": _labels(server.url, texts[:200]), "levels": {}}, None
        for c in levels:
            busy, server_cpu, own_cpu = common.system_busy_cpu_seconds(), server.cpu_seconds(), time.process_time()
            figures = asyncio.run(_load(server.url, texts, c, warmup, seconds))
            server_cpu, own_cpu = server.cpu_seconds() - server_cpu, time.process_time() - own_cpu
            busy = common.system_busy_cpu_seconds() - busy if busy is not None else None
            total = warmup + seconds
            figures.update(server_cpu=server_cpu / total, client_cpu=own_cpu / total,
                           other_cpu=None if busy is None else max(0.0, busy - server_cpu - own_cpu) / total)
            if variant == "t":  # the server's batch counters, cumulative: this level's share is the difference
                figures["batching"] = __import__("httpx").get(server.url + "/health").json()["batching"]
                before = previous or {"batches": 0, "requests": 0}
                batches = figures["batching"]["batches"] - before["batches"]
                figures["requests_per_batch"] = (figures["batching"]["requests"] - before["requests"]) / max(batches, 1)
                previous = figures["batching"]
            out["levels"][c] = figures
            if server.proc.poll() is not None:
                print(f"  the server exited ({server.proc.returncode}):\n{''.join(server.lines[-20:])}", flush=True)
                break
            print(f"  {VARIANTS[variant]} c={c}: {figures['requests_per_second']:.1f} req/s, p50 "
                  f"{figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms (other processes "
                  f"{common.fmt(figures['other_cpu'], 2)} cores)", flush=True)
        return out
    finally:
        server.stop()


def report(results: dict, levels: list[int], agreement: float, args, machine: dict) -> str:
    med = lambda variant, c, key: common.median_or_none(r["levels"][c][key] for r in results[variant])  # noqa: E731
    rows = []
    for c in levels:
        t, n = med("t", c, "requests_per_second"), med("n", c, "requests_per_second")
        for v in ("t", "n"):
            rows.append([VARIANTS[v], str(c), common.fmt(med(v, c, "requests_per_second")), common.fmt(med(v, c, "p50_ms")),
                         common.fmt(med(v, c, "p99_ms")), f"{t / n:.2f}x" if v == "t" else "", common.fmt(med(v, c, "server_cpu"), 2),
                         common.fmt(med(v, c, "client_cpu"), 2), common.fmt(med(v, c, "other_cpu"), 2)])
    table = common.markdown_table(["server", "concurrency", "requests/s", "p50 ms", "p99 ms", "vs naive",
                                   "server CPU (cores)", "client CPU", "other processes' CPU"], rows)
    batching = [f"c={c}: {common.fmt(med('t', c, 'requests_per_batch'), 1)}" for c in levels]
    return (f"{table}\n\nLabel agreement between the two servers on the first 200 texts: {agreement:.1%}. "
            f"textxfer requests per batch (this level's, with its warm-up): {'; '.join(batching)}.\n\nMachine: {machine['cpu_model']}, "
            f"{machine['usable_cores']} cores, torch {machine['versions']['torch']}, transformers "
            f"{machine['versions']['transformers']}; {date.today().isoformat()}; "
            f"`{common.display_command(['bench/serve.py', *sys.argv[1:]])}`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a full (or merged) run folder: the pipeline loads it too")
    parser.add_argument("--texts", help="CSV of texts to send (default: the run's test file)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each level")
    parser.add_argument("--repeats", type=int, default=1, help="rounds, the variants alternating")
    parser.add_argument("--out", help="also write the figures as JSON here")
    parser.add_argument("--naive-server", metavar="RUN", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        return naive_server(Path(args.naive_server), args.port)
    if not args.run:
        parser.error("--run RUN is required")
    run, levels = Path(args.run), [int(c) for c in args.concurrency.split(",")]
    texts = read_texts(run, args.texts)
    results: dict[str, list] = {"t": [], "n": []}
    for r in range(args.repeats):
        for v in ("t", "n") if r % 2 == 0 else ("n", "t"):
            print(f"round {r + 1}: {VARIANTS[v]}", flush=True)
            results[v].append(run_variant(v, run, texts, levels, args.warmup, args.seconds))
    a, b = results["t"][0]["labels"], results["n"][0]["labels"]
    agreement = sum(x == y for x, y in zip(a, b)) / max(len(a), 1)
    machine = common.machine_info()
    print(report(results, levels, agreement, args, machine))
    if args.out:
        common.atomic_write_text(args.out, json.dumps({"results": results, "machine": machine}, indent=1, default=str))


if __name__ == "__main__":
    main()
