"""capture-proxy: SageMaker-style data capture for any model server, as a sidecar in its task, with
no change to the server's image.

    client -> :MLOPS_CAPTURE_PORT (this proxy) -> 127.0.0.1:MLOPS_CAPTURE_UPSTREAM_PORT (the server)

Every request is forwarded as it came (GET /ping and everything else too): HTTP/1.1, keep-alive on
both sides (idle upstream connections are pooled), Content-Length and chunked bodies relayed as
they are, HEAD/1xx/204/304 without a body. Hop-by-hop fields are handled as RFC 9110 §7.6.1 says:
the Connection field and every field it names are removed, and so are Proxy-Connection,
Keep-Alive, TE, Transfer-Encoding and Upgrade, whose framing the proxy re-adds where it relays a
chunked body. `Expect: 100-continue` is answered by the proxy. The model server down: 502 with a
one-line body; a malformed request: 400 (431 for a head over 64 KiB, 501 for a transfer coding
other than chunked). No Via field is added: the proxy is part of the server's own task, and the
server sees the request as the client sent it. A client idle or stalled for 75 s is disconnected.
The proxy costs CPU on the server's cores (about 0.4 ms a request on a 2-core machine, mostly
asyncio and one more TCP hop): figures in benchmarks/README.md, "Data capture".

Settings (environment):
  MLOPS_CAPTURE_PORT           8081       where the proxy listens (all IPv4 interfaces)
  MLOPS_CAPTURE_UPSTREAM_PORT  8080       the model server on 127.0.0.1 (SageMaker's serving port,
                                          https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html)
  MLOPS_CAPTURE_PERCENT        required   share of POST /invocations captured, 0-100 (a float)
  MLOPS_CAPTURE_NAME           inference  the capture's directory under STORE_DIR/capture/
  MLOPS_CAPTURE_MAX_BYTES      1048576    the largest body captured, per side
  STORE_DIR                               the store (EFS mount); needed when the percent is above 0

Captured pairs are written in SageMaker Model Monitor's data capture format (SageMaker Developer
Guide, "Capture data from real-time endpoint", View Captured Data:
https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-data-capture-endpoint.html), one
JSON object a line, in SageMaker's hourly layout with the store in place of the S3 prefix:

  STORE_DIR/capture/<MLOPS_CAPTURE_NAME>/AllTraffic/yyyy/mm/dd/hh/<host>-<pid>-<start>.jsonl

  {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                     "data": "...", "encoding": "CSV"},
                   "endpointOutput": {"observedContentType": "application/json",
                                      "mode": "OUTPUT", "data": "...", "encoding": "JSON"}},
   "eventMetadata": {"eventId": "<uuid4>", "inferenceTime": "2025-01-31T12:00:00Z",
                     "inferenceId": "<X-Amzn-SageMaker-Inference-Id, when sent>",
                     "responseStatus": 200},
   "eventVersion": "0"}

The hour is the request's (UTC). text/csv is stored as text with encoding CSV; JSON, JSON Lines
and other text/* types as text with encoding JSON; anything else, or text that is not UTF-8, as
base64 with encoding BASE64. Every response status is captured and recorded as `responseStatus`
(not a SageMaker field: filter on it before using outputs as predictions). `inferenceId` is the
caller's InvokeEndpoint `InferenceId` header, recorded when it is 1-1024 visible ASCII
characters, as InvokeEndpoint allows; Model Monitor joins ground truth on it, else on `eventId`
(SageMaker Developer Guide, "model-monitor-model-quality-merge"). A captured response carries the
record's event id in `X-Mlops-Event-Id`. A file is complete once its hour has passed (it is synced
when the proxy moves on to the next hour and at exit).

Capture never fails or delays a request: a sampled pair is handed to a bounded queue that one
writer thread drains, appending what was queued every 0.2 s. A pair is dropped and counted by
reason when the queue is full (`queue_full`), a body is over MLOPS_CAPTURE_MAX_BYTES
(`too_large`), the exchange broke off (`incomplete`: the server was unreachable or a side hung
up) or the write failed (`write_failed`: full disk, permissions, the store not mounted). A
response may carry an event id whose record was dropped later. Only sampled pairs are buffered
beyond the request itself. stdout: one JSON line once listening (`capture-listening`), the
counts every 60 s (`capture-stats`), and the final counts at exit (`capture-stopped`).

SIGTERM (or SIGINT): stop accepting, close idle connections, let requests in flight finish (up to
25 s), write what is queued, print the final counts, exit 0.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import errno
import json
import math
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlops_contract import CAPTURE, Env

from .inputs import Refused, one_line

PORT = Env.CAPTURE_PORT
UPSTREAM_PORT = Env.CAPTURE_UPSTREAM_PORT
PERCENT = Env.CAPTURE_PERCENT
NAME = Env.CAPTURE_NAME
MAX_BYTES = Env.CAPTURE_MAX_BYTES

CAPTURE_DIR = CAPTURE
VARIANT = "AllTraffic"
"""SageMaker's name of the variant all traffic goes to: one server, one variant."""
EVENT_ID_HEADER = b"X-Mlops-Event-Id"
INFERENCE_ID_HEADER = b"x-amzn-sagemaker-inference-id"
INVOCATIONS = b"/invocations"

HEAD_LIMIT = 64 * 1024
"""The largest request or response head read (request line or status line and fields)."""
SMALL_BODY = 64 * 1024
"""A body up to this size is read whole and sent with its head in one send; larger ones stream."""
PIECE = 64 * 1024
POOL_SIZE = 32
"""Idle upstream connections kept for reuse."""
UPSTREAM_IDLE_SECONDS = 1.5
"""An idle upstream connection older than this is closed instead of reused: servers close theirs
after a few seconds (gunicorn's keepalive is 2 s), and one closed unseen costs a second send."""
CLIENT_TIMEOUT_SECONDS = 75.0
"""How long a client may keep a connection idle or stall a request: longer than the load
balancer's idle timeout (60 s on an ALB), so the balancer, not the proxy, closes idle
connections and never sends a request on one the proxy is closing."""
SHUTDOWN_GRACE_SECONDS = 25.0
"""How long requests in flight may take after SIGTERM: within ECS's default stopTimeout (30 s)."""
STATS_SECONDS = 60.0
FLUSH_SECONDS = 0.2
"""How often the writer appends what was queued (sooner when the queue is half full)."""
SWITCH_INTERVAL_SECONDS = 0.0005
"""The longest the writer thread holds the GIL while the event loop waits for it (Python's
default is 5 ms, which would show in the requests' latency)."""
QUEUE_RECORDS = 4096
QUEUE_BYTES = 64 * 1024 * 1024
"""The writer's queue, bounded in records and in body bytes."""
DROP_REASONS = ("queue_full", "too_large", "incomplete", "write_failed")

HOP_BY_HOP = frozenset(
    (b"connection", b"proxy-connection", b"keep-alive", b"te", b"transfer-encoding", b"upgrade")
)
"""RFC 9110 §7.6.1: removed before forwarding, with every field the Connection field names."""
END_TO_END = frozenset((b"content-length", b"host"))
"""Fields a Connection field may not name: the proxy frames and routes by them."""
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] [0-9]{3}( |$)")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_VISIBLE_ASCII = re.compile(rb"[\x21-\x7e]{1,1024}")
_REASONS = {
    400: b"Bad Request",
    417: b"Expectation Failed",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    505: b"HTTP Version Not Supported",
}
_JSON_TYPES = (
    "application/json",
    "application/jsonlines",
    "application/x-jsonlines",
    "application/x-ndjson",
    "application/ndjson",
)


# ------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Settings:
    port: int
    upstream_port: int
    percent: float
    """0-100: the share of POST /invocations captured."""
    name: str
    max_bytes: int
    """The largest body captured, per side."""
    store: Path | None
    """STORE_DIR; None when nothing is captured."""

    @property
    def directory(self) -> Path | None:
        return self.store / CAPTURE_DIR / self.name / VARIANT if self.store else None


def _integer(name: str, default: int, low: int, high: int, what: str) -> int:
    raw = os.environ.get(name, "") or str(default)
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else -1
    if not low <= value <= high:
        raise Refused(f"{name}={raw[:100]!r} is not {what} (an integer {low}-{high})")
    return value


def read_settings() -> Settings:
    """The proxy's settings from the environment; Refused with one line naming the bad one."""
    port = _integer(PORT, 8081, 1, 65535, "a port")
    upstream = _integer(UPSTREAM_PORT, 8080, 1, 65535, "a port")
    if port == upstream:
        raise Refused(f"{PORT} and {UPSTREAM_PORT} are both {port}: the proxy needs its own port")
    raw = os.environ.get(PERCENT, "")
    if not raw:
        raise Refused(f"{PERCENT} is not set: the share of POST /invocations to capture, 0-100")
    try:
        percent = float(raw)
    except ValueError:
        percent = math.nan
    if not 0 <= percent <= 100:  # NaN fails this too
        raise Refused(
            f"{PERCENT}={raw[:100]!r} is not a percentage: use a number from 0 to 100 "
            "(the share of POST /invocations to capture)"
        )
    name = os.environ.get(NAME, "") or "inference"
    if not _NAME.fullmatch(name):
        raise Refused(
            f"{NAME}={name[:140]!r} is not a directory name: use letters, digits, '.', '_' and "
            "'-' (at most 128 characters, not starting with '.', '_' or '-')"
        )
    max_bytes = _integer(MAX_BYTES, 1024 * 1024, 1, 1 << 40, "a size in bytes")
    store = None
    if percent > 0:
        raw_store = os.environ.get(Env.STORE_DIR, "")
        if not raw_store:
            raise Refused(f"{Env.STORE_DIR} is not set: captures are written to the store")
        store = Path(raw_store)
    return Settings(port, upstream, percent, name, max_bytes, store)


# ------------------------------------------------------------------------------ counts
class Stats:
    """The counts of one proxy's life. Each is written by one thread only (the loop's or the
    writer's), so no lock is needed."""

    def __init__(self) -> None:
        self.requests = 0
        self.invocations = 0
        self.sampled_out = 0
        self.captured = 0
        self.bytes_written = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)

    def line(self, event: str, queued: int) -> str:
        return json.dumps(
            {
                "event": event,
                "requests": self.requests,
                "invocations": self.invocations,
                "captured": self.captured,
                "dropped": dict(self.dropped),
                "sampled_out": self.sampled_out,
                "queued": queued,
                "bytes_written": self.bytes_written,
            }
        )


# ------------------------------------------------------------------------------ records
class Exchange:
    """One sampled request/response pair, as the event loop hands it to the writer: raw bytes
    only, the record is built on the writer's thread."""

    __slots__ = (
        "event_id",
        "inference_id",
        "request_body",
        "request_type",
        "response_body",
        "response_type",
        "status",
        "time",
    )

    def __init__(self, event_id: str, at: float, request_type: bytes, inference_id: bytes) -> None:
        self.event_id = event_id
        self.time = at
        self.request_type = request_type
        self.inference_id = inference_id
        self.request_body = b""
        self.response_body = b""
        self.response_type = b""
        self.status = 0

    @property
    def size(self) -> int:
        return len(self.request_body) + len(self.response_body)


def _encoding(content_type: str) -> str:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "text/csv":
        return "CSV"
    if media.startswith("text/") or media in _JSON_TYPES or media.endswith("+json"):
        return "JSON"
    return "BASE64"


def _side(content_type: bytes, body: bytes, mode: str) -> dict[str, str]:
    observed = content_type.decode("latin-1")
    encoding = _encoding(observed)
    data = None
    if encoding != "BASE64":
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:
            encoding = "BASE64"
    if data is None:
        data = base64.b64encode(body).decode("ascii")
    return {"observedContentType": observed, "mode": mode, "data": data, "encoding": encoding}


def capture_record(exchange: Exchange) -> dict:
    """The SageMaker data capture record of one pair."""
    metadata: dict[str, object] = {
        "eventId": exchange.event_id,
        "inferenceTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exchange.time)),
    }
    if exchange.inference_id:
        metadata["inferenceId"] = exchange.inference_id.decode("ascii")
    metadata["responseStatus"] = exchange.status
    return {
        "captureData": {
            "endpointInput": _side(exchange.request_type, exchange.request_body, "INPUT"),
            "endpointOutput": _side(exchange.response_type, exchange.response_body, "OUTPUT"),
        },
        "eventMetadata": metadata,
        "eventVersion": "0",
    }


class CaptureWriter:
    """A bounded queue of pairs and the one thread that appends them to the hour's file."""

    RETRY_SECONDS = 1.0
    """After a failed write, pairs are dropped without trying for this long."""

    def __init__(self, directory: Path, store: Path, stats: Stats) -> None:
        self._directory = directory
        self._store = store
        self._stats = stats
        host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64] or "host"
        started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.file_name = f"{host}-{os.getpid()}-{started}.jsonl"
        self._pending: collections.deque[Exchange] = collections.deque()
        self._pending_bytes = 0
        self._ready = threading.Condition()
        self._closed = False
        self._fd: int | None = None
        self._hour: str | None = None
        self._retry_at = 0.0
        self._last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return len(self._pending)

    def offer(self, exchange: Exchange) -> bool:
        """Queue a pair; False when the queue is full (or closed). Never blocks on I/O."""
        size = exchange.size
        with self._ready:
            if (
                self._closed
                or len(self._pending) >= QUEUE_RECORDS
                or self._pending_bytes + size > QUEUE_BYTES
            ):
                return False
            self._pending.append(exchange)
            self._pending_bytes += size
            if len(self._pending) == QUEUE_RECORDS // 2:
                self._ready.notify()
        return True

    def close(self, timeout: float) -> None:
        """Write what is queued and stop; gives up after `timeout` (a hung mount)."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._ready:
                # A wake-up per flush, not per pair: waking this thread for each pair (a futex,
                # a context switch, the GIL back and forth) cost the event loop more than
                # writing the pair.
                if not self._closed:
                    self._ready.wait(FLUSH_SECONDS)
                batch = list(self._pending)
                self._pending.clear()
                closed = self._closed
            if batch:
                self._write(batch)
                with self._ready:
                    self._pending_bytes -= sum(exchange.size for exchange in batch)
            elif closed:
                self._close_file()
                return

    def _write(self, batch: list[Exchange]) -> None:
        by_hour: dict[str, list[bytes]] = {}
        for number, exchange in enumerate(batch, 1):
            if number % 32 == 0:
                time.sleep(0)  # hand the GIL to the event loop now and then
            line = json.dumps(capture_record(exchange), separators=(",", ":")) + "\n"
            hour = time.strftime("%Y/%m/%d/%H", time.gmtime(exchange.time))
            by_hour.setdefault(hour, []).append(line.encode())
        for hour, lines in by_hour.items():
            if time.monotonic() < self._retry_at:
                self._stats.dropped["write_failed"] += len(lines)
                continue
            data = b"".join(lines)
            try:
                self._append(hour, data)
            except OSError as exc:
                self._failed(hour, exc, len(lines))
                continue
            self._stats.captured += len(lines)
            self._stats.bytes_written += len(data)
            if self._last_error is not None:
                self._last_error = None
                print(
                    f"capture-proxy: writing captures again to {self._directory}",
                    file=sys.stderr,
                    flush=True,
                )

    def _append(self, hour: str, data: bytes) -> None:
        if hour != self._hour or self._fd is None:
            self._close_file()
            # The store must be mounted: its mount point is never created here.
            if not self._store.is_dir():
                raise FileNotFoundError(
                    errno.ENOENT, "the store is not mounted (no such directory)", str(self._store)
                )
            directory = self._directory / hour
            directory.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            self._fd = os.open(directory / self.file_name, flags, 0o644)
            self._hour = hour
        before = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
        except OSError:
            # Whole lines only: a torn batch would glue the next record onto a partial line.
            try:
                os.ftruncate(self._fd, before)
            except OSError:
                self._close_file()
            raise

    def _failed(self, hour: str, exc: OSError, count: int) -> None:
        self._stats.dropped["write_failed"] += count
        self._retry_at = time.monotonic() + self.RETRY_SECONDS
        where = exc.filename or self._directory / hour
        message = f"{where}: {exc.strerror or exc}"
        if message != self._last_error:
            self._last_error = message
            print(
                f"capture-proxy: cannot write captures ({one_line(message, 300)}): dropping "
                "them until it works again",
                file=sys.stderr,
                flush=True,
            )
        self._close_file()

    def _close_file(self) -> None:
        if self._fd is None:
            return
        fd, self._fd, self._hour = self._fd, None, None
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


# ------------------------------------------------------------------------------ HTTP
class HttpError(Exception):
    """A request the proxy answers itself: its status and the one line it sends back."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UpstreamBroke(Exception):
    """The model server could not be reached, or broke off or garbled the exchange before the
    response began: the client gets a 502."""


class ClientGone(Exception):
    """The connection to the client is over: it hung up or stalled, or the response it was
    getting broke off (then closing the connection is all that can tell it)."""


class _StalePooled(Exception):
    """A pooled upstream connection closed before any byte of the response came."""


Fields = list[tuple[bytes, bytes, bytes]]
"""A head's field lines: (lower-case name, value, the line as it came)."""


def _bad_request(message: str) -> Exception:
    return HttpError(400, message)


def _bad_response(message: str) -> Exception:
    return UpstreamBroke(f"the model server sent a malformed response ({message})")


def _head_fields(
    head: bytes, error: Callable[[str], Exception]
) -> tuple[bytes, Fields, dict[bytes, list[bytes]]]:
    """The first line of a head (ending in an empty line), its fields, and the values of each
    (lower-case) field name."""
    crlf = head.count(b"\r\n")
    if head.count(b"\r") != crlf or head.count(b"\n") != crlf:
        raise error("bare CR or LF in the head")
    lines = head[:-4].split(b"\r\n")
    fields = []
    by_name: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        colon = line.find(b":")
        name = line[:colon]
        # No space before the colon and no obsolete line folding (RFC 9112 §5.1, §5.2).
        if colon <= 0 or not _TOKEN.fullmatch(name):
            raise error(f"malformed field line {line[:60]!r}")
        key = name.lower()
        value = line[colon + 1 :].strip(b" \t")
        fields.append((key, value, line))
        by_name.setdefault(key, []).append(value)
    return lines[0], fields, by_name


def _tokens(values: list[bytes] | None) -> list[bytes]:
    """The items of comma-separated list fields, lower-case."""
    if not values:
        return []
    return [
        token.strip().lower() for value in values for token in value.split(b",") if token.strip()
    ]


def _content_length(
    values: list[bytes] | None, error: Callable[[str], Exception]
) -> tuple[int | None, bool]:
    """The Content-Length (None without one) and whether it came as one plain number. Several
    equal values count as one (RFC 9110 §8.6); differing or malformed ones are an error."""
    if not values:
        return None, True
    found = None
    for value in values:
        for item in value.split(b","):
            item = item.strip()
            if not item.isdigit() or len(item) > 18:
                raise error(f"Content-Length {value[:40]!r} is not a length")
            if found is not None and int(item) != found:
                raise error("Content-Length values disagree")
            found = int(item)
    return found, len(values) == 1 and values[0].isdigit()


def _last(values: list[bytes] | None) -> bytes:
    return values[-1] if values else b""


def _chunk_size(line: bytes) -> int | None:
    """The size in a chunk's size line (extensions ignored), None when malformed."""
    digits = line.split(b";", 1)[0].strip()
    if not digits or len(digits) > 16 or digits.strip(b"0123456789abcdefABCDEF"):
        return None
    return int(digits, 16)


def _error_response(status: int, message: str, with_body: bool) -> bytes:
    body = (one_line(message, 300) + "\n").encode()
    head = (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n" % (status, _REASONS[status], len(body))
    )
    return head + body if with_body else head


def _response_head(
    status_line: bytes, fields: Fields, drop: frozenset[bytes], extra: list[bytes]
) -> bytes:
    # The proxy speaks HTTP/1.1 to its client; the status code and reason go as they came.
    out = [b"HTTP/1.1" + status_line[8:]]
    out += [raw for key, _, raw in fields if key not in drop]
    out += extra
    out.append(b"\r\n")
    return b"\r\n".join(out)


@dataclass
class Request:
    """A client's request head, checked, and the head to send upstream."""

    method: bytes
    http10: bool
    keep_alive: bool
    length: int | None
    chunked: bool
    expect_continue: bool
    capturable: bool
    """POST /invocations."""
    content_type: bytes
    inference_id: bytes
    """X-Amzn-SageMaker-Inference-Id when it is what InvokeEndpoint allows, else empty."""
    upstream_head: bytes


def parse_request(head: bytes, upstream_host: bytes) -> Request:
    """The request in `head` (request line to empty line); HttpError when it cannot be
    forwarded as HTTP/1.1 without ambiguity about where its body ends."""
    request_line, fields, by_name = _head_fields(head, _bad_request)
    parts = request_line.split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise HttpError(400, f"malformed request line {request_line[:80]!r}")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if _VERSION.fullmatch(version):
            raise HttpError(505, f"{version.decode()} is not supported: use HTTP/1.1")
        raise HttpError(400, f"malformed request line {request_line[:80]!r}")
    http10 = version == b"HTTP/1.0"
    connection = _tokens(by_name.get(b"connection"))
    if END_TO_END.intersection(connection):
        raise HttpError(400, "the Connection field names Content-Length or Host")
    length, plain_length = _content_length(by_name.get(b"content-length"), _bad_request)
    codings = _tokens(by_name.get(b"transfer-encoding"))
    if codings:
        # Both, or chunked from HTTP/1.0: where the body ends would be ambiguous (smuggling).
        if http10 or length is not None:
            raise HttpError(400, "Transfer-Encoding with HTTP/1.0 or with Content-Length")
        if codings != [b"chunked"]:
            raise HttpError(501, "only the chunked transfer coding is supported")
    hosts = len(by_name.get(b"host", ()))
    if hosts > 1 or (hosts == 0 and not http10):
        raise HttpError(400, "an HTTP/1.1 request needs exactly one Host field")
    expect = _tokens(by_name.get(b"expect"))
    if expect and not http10 and expect != [b"100-continue"]:
        raise HttpError(417, "only the 100-continue expectation is supported")

    inference_id = _last(by_name.get(INFERENCE_ID_HEADER))
    drop = HOP_BY_HOP.union(connection, (b"expect",) if expect else ())
    if not plain_length:
        drop = drop.union((b"content-length",))
    out = [method + b" " + target + b" HTTP/1.1"]
    out += [raw for key, _, raw in fields if key not in drop]
    if not plain_length:
        out.append(b"Content-Length: %d" % length)
    if hosts == 0:
        out.append(b"Host: " + upstream_host)
    if codings:
        out.append(b"Transfer-Encoding: chunked")
    out.append(b"\r\n")
    return Request(
        method=method,
        http10=http10,
        keep_alive=b"keep-alive" in connection if http10 else b"close" not in connection,
        length=length,
        chunked=bool(codings),
        expect_continue=bool(expect) and not http10,
        capturable=method == b"POST" and target.split(b"?", 1)[0] == INVOCATIONS,
        content_type=_last(by_name.get(b"content-type")),
        inference_id=inference_id if _VISIBLE_ASCII.fullmatch(inference_id) else b"",
        upstream_head=b"\r\n".join(out),
    )


@dataclass
class Response:
    """The model server's response head, checked."""

    status: int
    status_line: bytes
    fields: Fields
    content_type: bytes
    connection: list[bytes]
    length: int | None
    """The body's length; None when chunked or delimited by the connection's close."""
    plain_length: bool
    chunked: bool
    until_close: bool
    no_body: bool


def parse_response(head: bytes, method: bytes) -> Response:
    status_line, fields, by_name = _head_fields(head, _bad_response)
    if not _STATUS_LINE.match(status_line):
        raise _bad_response(f"status line {status_line[:80]!r}")
    status = int(status_line[9:12])
    connection = _tokens(by_name.get(b"connection"))
    if END_TO_END.intersection(connection):
        raise _bad_response("its Connection field names Content-Length or Host")
    length, plain_length = _content_length(by_name.get(b"content-length"), _bad_response)
    # RFC 9112 §6.3: no body after HEAD, 1xx, 204 and 304, whatever the fields say.
    no_body = method == b"HEAD" or status < 200 or status in (204, 304)
    chunked = until_close = False
    if not no_body:
        codings = _tokens(by_name.get(b"transfer-encoding"))
        if codings:
            if codings != [b"chunked"]:
                raise UpstreamBroke(
                    f"the model server sent Transfer-Encoding {b', '.join(codings)[:60]!r}, "
                    "which the proxy does not relay"
                )
            chunked, length, plain_length = True, None, False
        elif length is None:
            until_close = True
    content_type = _last(by_name.get(b"content-type"))
    return Response(
        status,
        status_line,
        fields,
        content_type,
        connection,
        length,
        plain_length,
        chunked,
        until_close,
        no_body,
    )


class _Closed(Exception):
    """The peer closed (or reset) the connection before the bytes asked for came."""

    def __init__(self, partial: bool) -> None:
        super().__init__()
        self.partial = partial
        """Some bytes had come."""


class _TooLong(Exception):
    """No separator within the limit."""


class _Conn:
    """A non-blocking TCP socket and what was read from it but not used yet, driven by the
    event loop's sock_* calls. No transports: an upstream connection per request (what a
    gunicorn sync worker allows) then costs a socket and a connect, not a protocol, a transport
    and a stream pair, about 100 µs of CPU less."""

    __slots__ = ("buffer", "loop", "sock")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.loop = loop
        self.sock = sock
        self.buffer = bytearray()

    async def _fill(self) -> None:
        try:
            data = await self.loop.sock_recv(self.sock, PIECE)
        except OSError:
            data = b""
        if not data:
            raise _Closed(bool(self.buffer))
        self.buffer += data

    async def read_until(self, separator: bytes, limit: int) -> bytes:
        """The bytes up to and including `separator`, at most `limit` of them."""
        start = 0
        while (end := self.buffer.find(separator, start)) < 0:
            if len(self.buffer) > limit:
                raise _TooLong()
            start = max(0, len(self.buffer) - len(separator) + 1)
            await self._fill()
        end += len(separator)
        if end > limit:
            raise _TooLong()
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data

    async def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def read_some(self, size: int) -> bytes:
        """Up to `size` bytes: those buffered, else one receive's; b"" once the peer closed."""
        if not self.buffer:
            try:
                await self._fill()
            except _Closed:
                return b""
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def send(self, data: bytes) -> None:
        """Sends all of `data`, waiting while the peer does not read (OSError once it is gone)."""
        await self.loop.sock_sendall(self.sock, data)

    def idle_and_open(self) -> bool:
        """Nothing unread, and the peer has not closed: an idle connection that may be reused."""
        if self.buffer:
            return False
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False  # closed, or bytes nobody asked for

    def close(self) -> None:
        self.sock.close()


class _Client:
    __slots__ = ("busy", "conn", "deadline", "task")

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        self.deadline: float | None = None
        """When the sweeper cancels the connection's task: set while the proxy waits on the
        client."""
        self.busy = False
        """A request is in flight: shutdown lets it finish."""
        self.task: asyncio.Task[None] | None = None


class CaptureProxy:
    """The proxy's server: one task per client connection, a pool of idle upstream
    connections."""

    _loop: asyncio.AbstractEventLoop

    def __init__(self, settings: Settings, stats: Stats, writer: CaptureWriter | None) -> None:
        self._settings = settings
        self._stats = stats
        self._writer = writer
        self._percent = settings.percent
        self._max_bytes = settings.max_bytes
        self._upstream = ("127.0.0.1", settings.upstream_port)
        self._upstream_name = f"127.0.0.1:{settings.upstream_port}"
        self._upstream_host = self._upstream_name.encode()
        self._idle: list[tuple[_Conn, float]] = []
        self._clients: set[_Client] = set()
        self._stopping = False

    # -------------------------------------------------------------- life
    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("0.0.0.0", self._settings.port))
        except OSError as exc:
            listener.close()
            raise Refused(
                f"{PORT}={self._settings.port}: cannot listen there ({exc.strerror or exc})"
            ) from None
        listener.listen(1024)
        listener.setblocking(False)
        return listener

    async def run(self) -> None:
        """Serves until SIGTERM or SIGINT, then shuts down gracefully."""
        self._loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, stop.set)
        listener = self._listen()
        directory = self._settings.directory
        where = (
            directory / "yyyy/mm/dd/hh" / self._writer.file_name
            if directory and self._writer
            else None
        )
        print(
            json.dumps(
                {
                    "event": "capture-listening",
                    "port": self._settings.port,
                    "upstream": self._upstream_name,
                    "percent": self._percent,
                    "file": str(where) if where else None,
                }
            ),
            flush=True,
        )
        accepting = self._loop.create_task(self._accept(listener))
        ticker = self._loop.create_task(self._tick())
        await stop.wait()
        self._stopping = True
        accepting.cancel()
        await asyncio.gather(accepting, return_exceptions=True)
        listener.close()
        for client in list(self._clients):
            if not client.busy and client.task:
                client.task.cancel()
        deadline = self._loop.time() + SHUTDOWN_GRACE_SECONDS
        while any(client.busy for client in self._clients) and self._loop.time() < deadline:
            await asyncio.sleep(0.01)
        tasks = [client.task for client in self._clients if client.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ticker.cancel()
        for conn, _ in self._idle:
            conn.close()
        self._idle.clear()

    async def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = await self._loop.sock_accept(listener)
            except OSError:  # out of descriptors, a connection reset in the backlog
                await asyncio.sleep(0.01)
                continue
            client = _Client(_Conn(self._loop, sock))
            self._clients.add(client)
            client.task = self._loop.create_task(self._serve(client))

    async def _tick(self) -> None:
        """Each second cancels clients past their deadline; every STATS_SECONDS prints the
        counts."""
        next_stats = self._loop.time() + STATS_SECONDS
        while True:
            await asyncio.sleep(1.0)
            now = self._loop.time()
            for client in list(self._clients):
                if client.deadline is not None and now > client.deadline and client.task:
                    client.task.cancel()
            if now >= next_stats:
                next_stats = now + STATS_SECONDS
                queued = self._writer.queued if self._writer else 0
                print(self._stats.line("capture-stats", queued), flush=True)

    # -------------------------------------------------------------- clients
    async def _serve(self, client: _Client) -> None:
        conn = client.conn
        try:
            keep = True
            while keep and not self._stopping:
                client.deadline = self._loop.time() + CLIENT_TIMEOUT_SECONDS
                try:
                    head = await conn.read_until(b"\r\n\r\n", HEAD_LIMIT)
                except _TooLong:
                    await conn.send(_error_response(431, "request head over 64 KiB", True))
                    break
                except _Closed:
                    break
                client.deadline = None
                client.busy = True
                try:
                    keep = await self._exchange(client, head)
                finally:
                    client.busy = False
        except (asyncio.CancelledError, OSError):
            pass  # stalled past its deadline, the proxy stopping, or the client gone
        except Exception as exc:  # a bug must cost one connection, never the proxy
            print(
                f"capture-proxy: internal error: {one_line(repr(exc), 300)}",
                file=sys.stderr,
                flush=True,
            )
        finally:
            conn.close()
            self._clients.discard(client)

    async def _read_client(self, client: _Client, size: int, exact: bool) -> bytes:
        client.deadline = self._loop.time() + CLIENT_TIMEOUT_SECONDS
        try:
            data = await (client.conn.read_exact(size) if exact else client.conn.read_some(size))
        except _Closed:
            raise ClientGone() from None
        finally:
            client.deadline = None
        if not data:
            raise ClientGone()
        return data

    async def _read_client_line(self, client: _Client) -> bytes:
        client.deadline = self._loop.time() + CLIENT_TIMEOUT_SECONDS
        try:
            return await client.conn.read_until(b"\r\n", HEAD_LIMIT)
        except _TooLong:
            raise HttpError(400, "chunk line over 64 KiB") from None
        except _Closed:
            raise ClientGone() from None
        finally:
            client.deadline = None

    async def _to_client(self, client: _Client, data: bytes) -> None:
        client.deadline = self._loop.time() + CLIENT_TIMEOUT_SECONDS
        try:
            await client.conn.send(data)
        except OSError:
            raise ClientGone() from None
        finally:
            client.deadline = None

    # -------------------------------------------------------------- one exchange
    async def _exchange(self, client: _Client, head: bytes) -> bool:
        """Forward one request and its response; whether the client connection stays open."""
        head = head.lstrip(b"\r\n")  # RFC 9112 §2.2: empty lines before a request are ignored
        if not head:
            return True
        self._stats.requests += 1
        method = b""
        upstream: _Conn | None = None
        reusable = False
        answered = False
        exchange: Exchange | None = None
        try:
            request = parse_request(head, self._upstream_host)
            method = request.method
            if request.capturable:
                self._stats.invocations += 1
                if self._percent and random.random() * 100 < self._percent:
                    exchange = Exchange(
                        str(uuid.uuid4()), time.time(), request.content_type, request.inference_id
                    )
                else:
                    self._stats.sampled_out += 1
            if request.expect_continue and (request.chunked or request.length):
                await self._to_client(client, b"HTTP/1.1 100 Continue\r\n\r\n")

            # A small body is read whole and goes with its head in one send, and may be sent
            # again when a pooled connection turns out closed; larger ones stream.
            length = request.length or 0
            whole = not request.chunked and length <= SMALL_BODY
            payload = request.upstream_head
            if whole and length:
                body = await self._read_client(client, length, exact=True)
                payload += body
                if exchange is not None:
                    exchange.request_body = body
            sink: list[bytes] | None = [] if exchange is not None and not whole else None
            upstream, response_head = await self._send(
                payload, client, request.chunked, 0 if whole else length, sink, pooled_ok=whole
            )
            if exchange is not None and sink is not None:
                exchange.request_body = b"".join(sink)
            if exchange is not None and len(exchange.request_body) > self._max_bytes:
                self._stats.dropped["too_large"] += 1
                exchange = None

            response = parse_response(response_head, method)
            while response.status < 200:  # 1xx: 100 was the proxy's own; others go to 1.1
                if response.status == 101:
                    raise UpstreamBroke("the model server switched protocols (not relayed)")
                if response.status != 100 and not request.http10:
                    interim = _response_head(response.status_line, response.fields, HOP_BY_HOP, [])
                    await self._to_client(client, interim)
                response = parse_response(await self._upstream_head(upstream, False), method)

            keep = request.keep_alive and not response.until_close and not self._stopping
            if response.chunked and request.http10:
                keep = False  # the body goes to it decoded, delimited by the close
            extra = []
            if exchange is not None:
                if not response.no_body and (response.length or 0) > self._max_bytes:
                    self._stats.dropped["too_large"] += 1
                    exchange = None
                else:
                    extra.append(EVENT_ID_HEADER + b": " + exchange.event_id.encode())
                    exchange.status = response.status
                    exchange.response_type = response.content_type
            if response.chunked and not request.http10:
                extra.append(b"Transfer-Encoding: chunked")
            drop = HOP_BY_HOP.union(response.connection)
            if not response.plain_length:
                drop = drop.union((b"content-length",))
                if response.length is not None:
                    extra.append(b"Content-Length: %d" % response.length)
            if not keep:
                extra.append(b"Connection: close")
            elif request.http10:
                extra.append(b"Connection: keep-alive")
            out_head = _response_head(response.status_line, response.fields, drop, extra)

            sink = [] if exchange is not None else None
            length = 0 if response.no_body else response.length or 0
            if response.no_body or (response.length is not None and length <= SMALL_BODY):
                body = await self._read_upstream_exact(upstream, length) if length else b""
                answered = True
                await self._to_client(client, out_head + body)
                if sink is not None:
                    sink.append(body)
            else:
                answered = True
                await self._to_client(client, out_head)
                if response.chunked:
                    await self._relay_chunked_response(upstream, client, sink, request.http10)
                elif response.until_close:
                    await self._relay_until_close(upstream, client, sink)
                else:
                    await self._relay_response(upstream, client, length, sink)
            reusable = (
                not response.until_close
                and b"close" not in response.connection
                and response.status_line.startswith(b"HTTP/1.1")
            )
            if exchange is not None:
                exchange.response_body = b"".join(sink) if sink else b""
                if len(exchange.response_body) > self._max_bytes:
                    self._stats.dropped["too_large"] += 1
                elif self._writer is None or not self._writer.offer(exchange):
                    self._stats.dropped["queue_full"] += 1
                exchange = None
            return keep
        except HttpError as exc:
            if not answered:
                await self._answer(client, exc.status, str(exc), method)
            return False
        except UpstreamBroke as exc:
            if not answered:
                await self._answer(client, 502, f"capture proxy: {exc}", method)
            return False
        except ClientGone:
            return False
        finally:
            if exchange is not None:
                self._stats.dropped["incomplete"] += 1
            if upstream is not None:
                if reusable and not self._stopping and len(self._idle) < POOL_SIZE:
                    self._idle.append((upstream, self._loop.time()))
                else:
                    upstream.close()

    async def _answer(self, client: _Client, status: int, message: str, method: bytes) -> None:
        """The proxy's own answer, after which the connection closes."""
        with contextlib.suppress(ClientGone):
            await self._to_client(client, _error_response(status, message, method != b"HEAD"))

    # -------------------------------------------------------------- upstream
    async def _connect(self, pooled_ok: bool) -> tuple[_Conn, bool]:
        """An upstream connection, and whether it came from the pool (the server may have
        closed it since, unseen)."""
        if pooled_ok:
            now = self._loop.time()
            while self._idle:
                conn, since = self._idle.pop()
                if now - since < UPSTREAM_IDLE_SECONDS and conn.idle_and_open():
                    return conn, True
                conn.close()
        conn = _Conn(self._loop, socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        # On loopback the handshake is done when connect() returns (EINPROGRESS or not): the
        # request goes out at once instead of a loop iteration later, while a sync worker that
        # accepted the connection would wait for it idle. A connect still in progress makes
        # the first send wait until it completes.
        code = conn.sock.connect_ex(self._upstream)
        if code not in (0, errno.EINPROGRESS):
            conn.close()
            raise UpstreamBroke(self._not_answering(os.strerror(code)))
        return conn, False

    def _not_answering(self, why: str) -> str:
        return f"the model server at {self._upstream_name} does not answer ({why})"

    async def _send(
        self,
        payload: bytes,
        client: _Client,
        chunked: bool,
        stream_length: int,
        sink: list[bytes] | None,
        pooled_ok: bool,
    ) -> tuple[_Conn, bytes]:
        """Sends `payload` (the head, with the whole body when small), streams the rest of the
        body from the client, and reads the response head. Only a request held whole may go
        on a pooled connection: if that one turns out closed, it is sent again on a new one."""
        while True:
            upstream, pooled = await self._connect(pooled_ok)
            try:
                try:
                    await upstream.send(payload)
                except OSError as exc:
                    if pooled:
                        raise _Closed(False) from None
                    raise UpstreamBroke(self._not_answering(exc.strerror or str(exc))) from None
                if chunked:
                    await self._relay_chunked_request(client, upstream, sink)
                elif stream_length:
                    await self._relay_request(client, upstream, stream_length, sink)
                return upstream, await self._upstream_head(upstream, pooled)
            except _Closed:  # only from a pooled connection, before any byte of an answer
                upstream.close()
                pooled_ok = False
            except OSError:
                upstream.close()
                raise UpstreamBroke(
                    f"the model server at {self._upstream_name} stopped reading the request"
                ) from None
            except BaseException:
                upstream.close()
                raise

    async def _upstream_head(self, upstream: _Conn, pooled: bool) -> bytes:
        try:
            return await upstream.read_until(b"\r\n\r\n", HEAD_LIMIT)
        except _TooLong:
            raise UpstreamBroke("the model server's response head is over 64 KiB") from None
        except _Closed as exc:
            if pooled and not exc.partial:
                raise
            raise UpstreamBroke(
                f"the model server at {self._upstream_name} closed the connection without answering"
            ) from None

    async def _read_upstream_exact(self, upstream: _Conn, size: int) -> bytes:
        try:
            return await upstream.read_exact(size)
        except _Closed:
            raise UpstreamBroke(
                f"the model server at {self._upstream_name} closed the connection in the "
                "middle of the response"
            ) from None

    # -------------------------------------------------------------- streamed bodies
    def _keep(self, sink: list[bytes] | None, kept: int, data: bytes) -> int:
        """Adds `data` to a capture's body until it passes the limit (then it is dropped)."""
        if sink is not None and kept <= self._max_bytes:
            sink.append(data)
            kept += len(data)
        return kept

    async def _relay_request(
        self, client: _Client, upstream: _Conn, size: int, sink: list[bytes] | None
    ) -> None:
        kept = 0
        while size:
            data = await self._read_client(client, min(size, PIECE), exact=False)
            size -= len(data)
            await upstream.send(data)
            kept = self._keep(sink, kept, data)

    async def _relay_chunked_request(
        self, client: _Client, upstream: _Conn, sink: list[bytes] | None
    ) -> None:
        """Relays a chunked body as it came (size lines, extensions, trailer fields)."""
        kept = 0
        while True:
            line = await self._read_client_line(client)
            size = _chunk_size(line)
            if size is None:
                raise HttpError(400, f"malformed chunk size line {line[:40]!r}")
            await upstream.send(line)
            if size == 0:
                while True:  # the trailer section, up to its empty line
                    line = await self._read_client_line(client)
                    await upstream.send(line)
                    if line == b"\r\n":
                        return
            while size:
                data = await self._read_client(client, min(size, PIECE), exact=False)
                size -= len(data)
                await upstream.send(data)
                kept = self._keep(sink, kept, data)
            if await self._read_client_line(client) != b"\r\n":
                raise HttpError(400, "chunk data not followed by CRLF")
            await upstream.send(b"\r\n")

    async def _relay_response(
        self, upstream: _Conn, client: _Client, size: int, sink: list[bytes] | None
    ) -> None:
        kept = 0
        while size:
            data = await upstream.read_some(min(size, PIECE))
            if not data:
                raise ClientGone()  # the response broke off: closing is all that tells the client
            size -= len(data)
            await self._to_client(client, data)
            kept = self._keep(sink, kept, data)

    async def _relay_chunked_response(
        self, upstream: _Conn, client: _Client, sink: list[bytes] | None, decode: bool
    ) -> None:
        """Relays a chunked response as it came, or decoded for an HTTP/1.0 client (whose
        connection then closes)."""
        kept = 0
        try:
            while True:
                line = await upstream.read_until(b"\r\n", HEAD_LIMIT)
                size = _chunk_size(line)
                if size is None:
                    raise ClientGone()  # garbled mid-response: only closing can tell the client
                if not decode:
                    await self._to_client(client, line)
                if size == 0:
                    while True:
                        line = await upstream.read_until(b"\r\n", HEAD_LIMIT)
                        if not decode:
                            await self._to_client(client, line)
                        if line == b"\r\n":
                            return
                while size:
                    data = await upstream.read_some(min(size, PIECE))
                    if not data:
                        raise ClientGone()
                    size -= len(data)
                    await self._to_client(client, data)
                    kept = self._keep(sink, kept, data)
                if await upstream.read_exact(2) != b"\r\n":
                    raise ClientGone()
                if not decode:
                    await self._to_client(client, b"\r\n")
        except (_Closed, _TooLong):
            raise ClientGone() from None

    async def _relay_until_close(
        self, upstream: _Conn, client: _Client, sink: list[bytes] | None
    ) -> None:
        kept = 0
        while data := await upstream.read_some(PIECE):
            await self._to_client(client, data)
            kept = self._keep(sink, kept, data)


# ------------------------------------------------------------------------------ command
def capture_proxy() -> str:
    """Runs until SIGTERM; returns the final counts as one JSON line."""
    settings = read_settings()
    stats = Stats()
    writer = None
    if settings.store is not None and settings.directory is not None:
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        writer = CaptureWriter(settings.directory, settings.store, stats)
    try:
        asyncio.run(CaptureProxy(settings, stats, writer).run())
    finally:
        if writer is not None:
            writer.close(timeout=10.0)
    return stats.line("capture-stopped", writer.queued if writer else 0)
