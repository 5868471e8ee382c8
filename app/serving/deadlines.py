"""Read deadlines for the api's connections, which uvicorn does not have: a request's headers must
arrive within HEADER_TIMEOUT_SECONDS of its first byte and its body within BODY_TIMEOUT_SECONDS
of its headers, or it gets 408 and its connection is closed."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with read deadlines, which uvicorn does not have.

    A new connection may stay idle as long as a kept-alive one (KEEP_ALIVE_SECONDS); once a
    request starts, its headers must be complete within `header_timeout` seconds and its body
    within `body_timeout` seconds after them (set per server by `timed_protocol`). A late
    request gets 408 (unless the app has already started answering it) and its connection is
    closed: a client trickling bytes cannot hold a connection open for ever."""

    header_timeout = 10.0
    body_timeout = 30.0
    _deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        answered = phase == "body" and self.cycle is not None and self.cycle.response_started
        if phase != "idle" and not answered:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.timeout_keep_alive, "idle")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout, "headers")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout, "body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


def timed_protocol(header_timeout: float, body_timeout: float) -> type[TimedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, with these read deadlines."""
    return type(
        "TimedHttpToolsProtocol",
        (TimedHttpToolsProtocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout},
    )


_REQUEST_TIMEOUT_BODY = b'{"detail":"request not received in time"}'
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_REQUEST_TIMEOUT_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _REQUEST_TIMEOUT_BODY
)
