"""capture-proxy as the container runs it (`python -m mlops_platform capture-proxy`, settings from
the environment) in front of a real model server (a threaded `http.server` in this process
answering /ping and /invocations), driven by a real HTTP client. The records must be SageMaker's
data capture format: https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-data-capture-endpoint.html
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.platform.conftest import Env

BINARY = bytes(range(256)) * 3
CSV = b"5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------ the model server
@dataclass
class Received:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    chunks: list[int]


class ModelHandler(BaseHTTPRequestHandler):
    """/ping; POST /invocations answers the body reversed, typed as the request's Accept (or its
    Content-Type); `?status=`, `?chunked=1`, `?sleep=`, `?hop=1` change how. /empty is a 204,
    /cached a 304."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body go in two writes
    server: ModelServer

    def log_message(self, *args: Any) -> None:
        pass

    def _read_body(self) -> tuple[bytes, list[int]]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts, sizes = [], []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                parts.append(self.rfile.read(size))
                sizes.append(size)
                self.rfile.read(2)
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            return b"".join(parts), sizes
        return self.rfile.read(int(self.headers.get("Content-Length", "0"))), []

    def _answer(
        self, status: int, body: bytes, headers: list[tuple[str, str]], chunked: bool = False
    ) -> None:
        self.send_response_only(status)  # no Server or Date: responses compare byte for byte
        headers = [*headers, ("X-Model-Version", "7"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
        for name, value in headers:
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD" or status in (204, 304):
            return
        if chunked:
            for piece in (body[:5], body[5:]):
                if piece:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.received.append(
            Received(self.command, self.path, self.headers.items(), b"", [])
        )
        if self.path == "/ping":
            self._answer(200, b'{"status": "ok"}', [("Content-Type", "application/json")])
        elif self.path == "/empty":
            self._answer(204, b"", [])
        elif self.path == "/cached":
            self._answer(304, b"", [("ETag", '"v7"')])
        else:
            self._answer(404, b'{"error": "no route"}', [("Content-Type", "application/json")])

    do_HEAD = do_GET

    def do_POST(self) -> None:
        body, chunks = self._read_body()
        self.server.received.append(
            Received(self.command, self.path, self.headers.items(), body, chunks)
        )
        query = {key: values[0] for key, values in parse_qs(urlsplit(self.path).query).items()}
        time.sleep(float(query.get("sleep", 0)))
        content_type = self.headers.get("Accept") or self.headers.get("Content-Type") or ""
        headers = [("Content-Type", content_type)] if content_type else []
        if query.get("hop"):
            headers += [
                ("Connection", "X-Upstream-Hop"),
                ("X-Upstream-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
            ]
        status = int(query.get("status", 200))
        self._answer(status, body[::-1], headers, chunked=bool(query.get("chunked")))


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ModelHandler)
        self.received: list[Received] = []
        self.port = self.server_address[1]


@pytest.fixture
def model() -> Iterator[ModelServer]:
    server = ModelServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# ------------------------------------------------------------------------------ the proxy
@dataclass
class Stopped:
    code: int
    summary: dict[str, Any]
    stdout: str
    stderr: str


@dataclass
class Proxy:
    env: Env
    upstream_port: int
    settings: dict[str, str]
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.process = self.env.popen(
            "capture-proxy",
            MLOPS_CAPTURE_PORT=str(self.port),
            MLOPS_CAPTURE_UPSTREAM_PORT=str(self.upstream_port),
            **self.settings,
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        assert '"capture-listening"' in first, first + self._stderr()

    def _stderr(self) -> str:
        self.process.wait(timeout=10)
        return self.process.stderr.read() if self.process.stderr else ""

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def stop(self) -> Stopped:
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=30)
        summary = json.loads(out.strip().splitlines()[-1])
        return Stopped(self.process.returncode, summary, out, err)


@pytest.fixture
def proxies() -> Iterator[list[Proxy]]:
    started: list[Proxy] = []
    yield started
    for proxy in started:
        if proxy.process.poll() is None:
            proxy.process.kill()
            proxy.process.communicate()


@pytest.fixture
def start(env: Env, model: ModelServer, proxies: list[Proxy]):
    def start(upstream_port: int | None = None, **settings: str) -> Proxy:
        proxy = Proxy(env, model.port if upstream_port is None else upstream_port, settings)
        proxies.append(proxy)
        return proxy

    return start


def request(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
) -> tuple[int, str, list[tuple[str, str]], bytes]:
    conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
    response = conn.getresponse()
    return response.status, response.reason, response.getheaders(), response.read()


def records(env: Env) -> list[tuple[Path, dict[str, Any]]]:
    root = env.store / "capture"
    return [
        (path.relative_to(root), json.loads(line))
        for path in sorted(root.rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def decoded(side: dict[str, str]) -> bytes:
    if side["encoding"] == "BASE64":
        return base64.b64decode(side["data"])
    return side["data"].encode()


def event_id(headers: list[tuple[str, str]]) -> str | None:
    found = [value for name, value in headers if name.lower() == "x-mlops-event-id"]
    assert len(found) <= 1
    return found[0] if found else None


# ------------------------------------------------------------------------------ capture
def test_full_capture_writes_sagemaker_records_whose_event_id_the_client_got(
    env: Env, start: Any
) -> None:
    proxy = start(MLOPS_CAPTURE_PERCENT="100")
    sent = [  # (path, body, headers, expected input encoding, expected output encoding)
        (
            "/invocations",
            CSV,
            {"Content-Type": "text/csv", "Accept": "application/json"},
            "CSV",
            "JSON",
        ),
        (
            "/invocations",
            b'{"instances": [[1, 2]]}',
            {"Content-Type": "application/json", "X-Amzn-SageMaker-Inference-Id": "order-17"},
            "JSON",
            "JSON",
        ),
        ("/invocations", BINARY, {"Content-Type": "application/x-npy"}, "BASE64", "BASE64"),
        (
            "/invocations?status=422",
            b"not,a,row",
            {"Content-Type": "text/csv; charset=utf-8"},
            "CSV",
            "CSV",
        ),
    ]
    before = time.time()
    conn = proxy.connection()
    assert request(conn, "GET", "/ping")[0] == 200  # passes, never captured
    answers = {}
    for path, body, headers, _, _ in sent:
        status, _, response_headers, answer = request(conn, "POST", path, body, headers)
        answers[event_id(response_headers)] = (path, body, headers, status, answer)
    conn.close()
    stopped = proxy.stop()

    assert stopped.code == 0, stopped.stderr
    found = records(env)
    assert len(found) == len(sent)
    for (path, record), (_, _, _, input_encoding, output_encoding) in zip(found, sent, strict=True):
        assert set(record) == {"captureData", "eventMetadata", "eventVersion"}
        assert record["eventVersion"] == "0"
        metadata = record["eventMetadata"]
        assert uuid.UUID(metadata["eventId"]).version == 4
        sent_path, body, headers, status, answer = answers[metadata["eventId"]]
        captured = record["captureData"]
        assert set(captured) == {"endpointInput", "endpointOutput"}
        for side, mode in (("endpointInput", "INPUT"), ("endpointOutput", "OUTPUT")):
            assert set(captured[side]) == {"observedContentType", "mode", "data", "encoding"}
            assert captured[side]["mode"] == mode
        assert captured["endpointInput"]["encoding"] == input_encoding
        assert captured["endpointOutput"]["encoding"] == output_encoding
        assert captured["endpointInput"]["observedContentType"] == headers["Content-Type"]
        assert decoded(captured["endpointInput"]) == body
        assert decoded(captured["endpointOutput"]) == answer == body[::-1]
        assert metadata["responseStatus"] == status == (422 if "status" in sent_path else 200)
        assert metadata.get("inferenceId") == headers.get("X-Amzn-SageMaker-Inference-Id")
        inferred = time.strptime(metadata["inferenceTime"], "%Y-%m-%dT%H:%M:%SZ")
        assert before - 1 <= time.mktime(inferred) - time.mktime(time.gmtime(0)) <= time.time()
        # SageMaker's hourly layout: <name>/<variant>/yyyy/mm/dd/hh/<file>.jsonl
        assert path.parts[:2] == ("inference", "AllTraffic")
        assert path.parts[2:6] == tuple(time.strftime("%Y %m %d %H", inferred).split())
        assert re.fullmatch(r".+-\d+-\d{8}T\d{6}Z\.jsonl", path.name)
    summary = stopped.summary
    assert summary["event"] == "capture-stopped"
    assert summary["captured"] == len(sent) == summary["invocations"]
    assert summary["requests"] == len(sent) + 1
    assert summary["sampled_out"] == 0
    assert set(summary["dropped"].values()) == {0}
    files = list((env.store / "capture").rglob("*.jsonl"))
    assert summary["bytes_written"] == sum(path.stat().st_size for path in files)


def test_zero_percent_writes_nothing_and_adds_no_header(env: Env, start: Any) -> None:
    proxy = start(MLOPS_CAPTURE_PERCENT="0")
    conn = proxy.connection()
    for _ in range(3):
        status, _, headers, answer = request(
            conn, "POST", "/invocations", CSV, {"Content-Type": "text/csv"}
        )
        assert (status, answer, event_id(headers)) == (200, CSV[::-1], None)
    stopped = proxy.stop()
    assert stopped.code == 0
    assert not (env.store / "capture").exists()
    assert stopped.summary["sampled_out"] == 3
    assert stopped.summary["captured"] == 0


def test_a_share_is_sampled_and_every_invocation_counted(env: Env, start: Any) -> None:
    proxy = start(MLOPS_CAPTURE_PERCENT="50")
    conn = proxy.connection()
    ids = [
        event_id(request(conn, "POST", "/invocations", CSV, {"Content-Type": "text/csv"})[2])
        for _ in range(60)
    ]
    stopped = proxy.stop()
    captured = {record["eventMetadata"]["eventId"] for _, record in records(env)}
    assert captured == {i for i in ids if i}
    assert 10 <= len(captured) <= 50  # 50 %: fewer than 10 of 60 has odds below 1e-6
    assert stopped.summary["captured"] + stopped.summary["sampled_out"] == 60


def test_a_body_over_the_limit_is_dropped_and_counted(env: Env, start: Any) -> None:
    proxy = start(MLOPS_CAPTURE_PERCENT="100", MLOPS_CAPTURE_MAX_BYTES="100")
    conn = proxy.connection()
    status, _, headers, answer = request(
        conn, "POST", "/invocations", b"1," * 100, {"Content-Type": "text/csv"}
    )
    assert (status, answer, event_id(headers)) == (200, b",1" * 100, None)
    assert request(conn, "POST", "/invocations", b"1,2", {"Content-Type": "text/csv"})[0] == 200
    stopped = proxy.stop()
    assert [decoded(r["captureData"]["endpointInput"]) for _, r in records(env)] == [b"1,2"]
    assert stopped.summary["dropped"]["too_large"] == 1


@pytest.mark.parametrize("store", ["missing", "unwritable"])
def test_a_store_that_cannot_be_written_drops_and_counts_but_every_request_succeeds(
    env: Env, start: Any, store: str
) -> None:
    if store == "missing":
        settings = {"STORE_DIR": str(env.store / "not-mounted")}
    else:
        settings = {}
        if os.getuid() == 0:  # root writes through permissions: block the path instead
            (env.store / "capture").write_text("")
        else:
            env.store.chmod(0o555)
    proxy = start(MLOPS_CAPTURE_PERCENT="100", **settings)
    conn = proxy.connection()
    for _ in range(5):
        status, _, _, answer = request(
            conn, "POST", "/invocations", CSV, {"Content-Type": "text/csv"}
        )
        assert (status, answer) == (200, CSV[::-1])
    stopped = proxy.stop()
    env.store.chmod(0o755)
    assert stopped.code == 0
    assert stopped.summary["dropped"]["write_failed"] == 5
    assert stopped.summary["captured"] == 0
    assert stopped.stderr.count("cannot write captures") == 1, stopped.stderr


# ------------------------------------------------------------------------------ pass-through
def test_requests_and_responses_pass_through_byte_for_byte(model: ModelServer, start: Any) -> None:
    proxy = start(MLOPS_CAPTURE_PERCENT="0")
    for path, body, content_type in [
        ("/invocations", BINARY, "application/octet-stream"),
        ("/invocations?status=400", b'{"bad": 1}', "application/json"),
        ("/invocations?hop=1", CSV, "text/csv"),
    ]:
        got = {}
        for name, port in (("direct", model.port), ("proxied", proxy.port)):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.putrequest("POST", path, skip_accept_encoding=True)
            for header, value in [
                ("Content-Type", content_type),
                ("X-Trace", "a"),
                ("X-Trace", "b"),
                ("Content-Length", str(len(body))),
                ("Connection", "keep-alive, X-Client-Hop"),
                ("X-Client-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
            ]:
                conn.putheader(header, value)
            conn.endheaders(body)
            response = conn.getresponse()
            got[name] = (
                response.status,
                response.reason,
                response.getheaders(),
                response.read(),
                model.received[-1],
            )
            conn.close()
        direct, proxied = got["direct"], got["proxied"]
        hop_by_hop = {"connection", "keep-alive", "te", "x-client-hop", "x-upstream-hop"}
        assert proxied[:2] == direct[:2]
        assert proxied[2] == [h for h in direct[2] if h[0].lower() not in hop_by_hop]
        assert proxied[3] == direct[3] == body[::-1]
        received_direct, received = direct[4], proxied[4]
        assert received.body == received_direct.body == body
        assert received.headers == [
            (name, value if name != "Host" else f"127.0.0.1:{proxy.port}")
            for name, value in received_direct.headers
            if name.lower() not in hop_by_hop
        ]


def test_one_client_connection_carries_many_requests_chunked_and_bodiless_ones_too(
    env: Env, model: ModelServer, start: Any
) -> None:
    proxy = start(MLOPS_CAPTURE_PERCENT="100")
    conn = proxy.connection()
    assert request(conn, "GET", "/ping")[::3] == (200, b'{"status": "ok"}')
    sock = conn.sock
    pieces = [b"5.1,3.5", b",1.4,0.2\n", b"6.2,2.9,4.3,1.3\n"]
    status, _, headers, answer = request(
        conn,
        "POST",
        "/invocations?chunked=1",
        iter(pieces),
        {"Content-Type": "text/csv", "Transfer-Encoding": "chunked"},
        chunked=True,
    )
    assert (status, answer) == (200, CSV[::-1])
    assert ("Transfer-Encoding", "chunked") in headers
    assert model.received[-1].chunks == [len(piece) for piece in pieces]  # chunks as sent
    assert model.received[-1].body == CSV
    head = request(conn, "HEAD", "/ping")
    assert head[0] == 200 and head[3] == b"" and ("Content-Length", "16") in head[2]
    assert request(conn, "GET", "/empty")[::3] == (204, b"")
    cached = request(conn, "GET", "/cached")
    assert cached[0] == 304 and ("ETag", '"v7"') in cached[2]
    for _ in range(3):
        assert request(conn, "POST", "/invocations", CSV, {"Content-Type": "text/csv"})[0] == 200
    assert conn.sock is sock  # never reconnected
    conn.close()
    stopped = proxy.stop()
    chunked_record = next(
        r for _, r in records(env) if r["eventMetadata"]["eventId"] == event_id(headers)
    )
    assert decoded(chunked_record["captureData"]["endpointInput"]) == CSV
    assert decoded(chunked_record["captureData"]["endpointOutput"]) == CSV[::-1]
    assert stopped.summary["captured"] == 4


def test_a_pooled_connection_the_server_closed_is_not_a_502(start: Any) -> None:
    """A keep-alive server closing an idle connection just as a request goes on it (the
    race every pooling proxy meets): the proxy sends the request again on a new connection."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:  # answers one request per connection, closes on the next
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                conn.recv(65536)

    threading.Thread(target=serve, daemon=True).start()
    proxy = start(upstream_port=listener.getsockname()[1], MLOPS_CAPTURE_PERCENT="0")
    conn = proxy.connection()
    for _ in range(3):
        assert request(conn, "GET", "/ping")[::3] == (200, b"ok")
    listener.close()


# ------------------------------------------------------------------------------ failures
def test_model_server_down_gives_a_502_with_one_line(start: Any) -> None:
    proxy = start(upstream_port=free_port(), MLOPS_CAPTURE_PERCENT="100")
    for method, path in (("GET", "/ping"), ("POST", "/invocations")):
        status, _, headers, body = request(
            proxy.connection(), method, path, b"1" if method == "POST" else None
        )
        assert status == 502
        assert body.endswith(b"\n") and body.count(b"\n") == 1
        assert b"does not answer" in body
        assert event_id(headers) is None
    stopped = proxy.stop()
    assert stopped.summary["dropped"]["incomplete"] == 1


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"NOT A REQUEST\r\n\r\n", 400),
        (b"GET /ping HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET /ping HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n", 400),
        (
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n"
            b"\r\nabcd",
            400,
        ),
        (b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ],
)
def test_a_malformed_request_gets_a_4xx_and_never_reaches_the_model(
    model: ModelServer, start: Any, raw: bytes, status: int
) -> None:
    proxy = start(MLOPS_CAPTURE_PERCENT="100")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer
    if status == 400 and b"chunked\r\n\r\nzz" not in raw:
        assert model.received == []


@pytest.mark.parametrize("value", ["abc", "150", "-1", "nan", ""])
def test_a_bad_percent_is_refused_in_one_line(env: Env, value: str) -> None:
    result = env.run("capture-proxy", MLOPS_CAPTURE_PERCENT=value)
    assert result.returncode == 1
    assert result.stdout == ""
    line = result.stderr.strip()
    assert "\n" not in line
    assert "MLOPS_CAPTURE_PERCENT" in line and "0" in line and "100" in line
    if value:
        assert repr(value) in line


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(env: Env, start: Any) -> None:
    proxy = start(MLOPS_CAPTURE_PERCENT="100")
    idle = proxy.connection()
    assert request(idle, "GET", "/ping")[0] == 200
    answer: list[Any] = []
    slow = threading.Thread(
        target=lambda: answer.append(
            request(
                proxy.connection(),
                "POST",
                "/invocations?sleep=0.6",
                CSV,
                {"Content-Type": "text/csv"},
            )
        )
    )
    slow.start()
    time.sleep(0.3)
    stopped = proxy.stop()
    slow.join(timeout=5)
    assert stopped.code == 0, stopped.stderr
    status, _, headers, body = answer[0]
    assert (status, body) == (200, CSV[::-1])
    assert ("Connection", "close") in headers  # the proxy is going away
    assert [r["eventMetadata"]["eventId"] for _, r in records(env)] == [event_id(headers)]
    assert stopped.summary["captured"] == 1
    assert stopped.stdout.splitlines()[-1] == json.dumps(stopped.summary)
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        idle.request("GET", "/ping")
        idle.getresponse()
