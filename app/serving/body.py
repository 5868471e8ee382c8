"""How a `/predict` body is read and parsed: read straight from the ASGI channel up to
MAX_BODY_BYTES, parsed on the event loop when it is small (the fast path), in a worker process,
a few at a time, when it is large, so parsing never stalls the event loop (and `/health`)."""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from fastapi import Request

from app.serving.payload import (
    MAX_BODY_BYTES,
    PayloadTooLargeError,
    PredictRequest,
    parse_predict,
    start_parser_process,
)

log = logging.getLogger(__name__)

LARGE_BODY_BYTES = 256 * 1024
"""Bodies from this size are parsed in the parser process. orjson and the checks hold the GIL for
~35 ms per MB (~130 ms for 64 instances of 10,000 values): parsed on the event loop, eight of
them at once stalled /health for a second. Smaller bodies stay on the loop: the fast path."""
LARGE_BODIES_AT_ONCE = 4
"""Large bodies read and parsed at once; more wait before reading, which bounds their memory."""


class ClientGoneError(Exception):
    """The connection closed (or timed out) before the body arrived."""


async def read_body(request: Request) -> bytes:
    """The request body, read straight from the ASGI channel (cheaper than `request.body()`).

    Raises PayloadTooLargeError as soon as it exceeds MAX_BODY_BYTES."""
    message = await request.receive()
    body = message.get("body", b"")
    if not message.get("more_body", False) and len(body) <= MAX_BODY_BYTES:
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        return body
    chunks, size = [body], len(body)
    while size <= MAX_BODY_BYTES and message.get("more_body", False):
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
    if size > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"body: larger than the {MAX_BODY_BYTES} bytes allowed")
    return b"".join(chunks)


class BodyParser:
    """Parses `/predict` bodies: small ones on the event loop (the fast path), large ones in a
    worker process, LARGE_BODIES_AT_ONCE at a time (`slots`, taken before reading them). The
    worker starts with the first large body: most servers never see one, and starting it with
    the server cost the cold start a second interpreter importing numpy on the same cores."""

    def __init__(self) -> None:
        self.slots = asyncio.Semaphore(LARGE_BODIES_AT_ONCE)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the server has threads by now, and a forked copy of a threaded
            # process may inherit a held lock. The worker dies with the server.
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_parser_process,
                initargs=(os.getpid(),),
            )
        return self._pool

    async def parse(self, body: bytes, **limits: Any) -> PredictRequest:
        if len(body) < LARGE_BODY_BYTES:
            return parse_predict(body, **limits)
        call = functools.partial(parse_predict, body, **limits)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor(), call)
        except BrokenProcessPool:
            log.error("the body parser process died; starting another")
            self._pool = None
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def declared_small(request: Request) -> bool:
    """True when the body is declared (Content-Length) smaller than LARGE_BODY_BYTES: it is read
    and parsed on the event loop."""
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            return value.isdigit() and int(value) < LARGE_BODY_BYTES
    return False
