"""Serving a run over HTTP: the FastAPI app, dynamic batching and the request limits."""
