"""The lifecycle hook against a real HTTP server on 127.0.0.1: answers of 200 and 500, one too
slow for the budget, one that never answers, a redirect, and a port nobody listens on.

Latency checks only ever use a lower bound (a server that sleeps longer than the budget) or a
budget far beyond any machine's load, so no test depends on this machine's speed."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rollout import sample_check

HEADER, VALUE = "X-Mlops-Test-Traffic", "candidate"
SLOW_SECONDS = 0.3
GENEROUS_MS = 60_000
"""A budget no healthy answer on this machine misses, however loaded it is."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[dict] = []
        self.release = threading.Event()

    def handle_error(self, request, client_address) -> None:
        """A client that gave up (the timeout test) closed the socket: nothing to report."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # keep the test output to the hook's own lines
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "header": self.headers.get(HEADER),
                "content_type": self.headers.get("Content-Type"),
                "body": self.rfile.read(length).decode(),
            }
        )
        if self.path == "/error":
            status = 500
        elif self.path == "/redirect":
            status = 302
        else:
            status = 200
        if self.path == "/slow":
            self.server.release.wait(SLOW_SECONDS)
        elif self.path == "/hang":
            self.server.release.wait(30)
        body = b'{"predictions": [1]}'
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/ok")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer


@pytest.fixture
def server():
    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def url(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def sample(path="/invocations", **extra) -> dict:
    return {
        "method": "POST",
        "path": path,
        "content_type": "application/json",
        "body": '{"instances": [[1.0, 2.0]]}',
        "expect_status": 200,
        **extra,
    }


def details(server: _Server, samples, **extra) -> dict:
    return {
        "base_url": url(server),
        "header": HEADER,
        "header_value": VALUE,
        "latency_budget_ms": GENEROUS_MS,
        "timeout_seconds": 60,
        "samples": samples,
        **extra,
    }


# ------------------------------------------------------------------------------ check()
def test_samples_that_answer_as_expected_pass_and_carry_the_test_header(server, capsys):
    samples = [sample(), sample("/ok", method="GET", body="", content_type=None)]
    samples[1].pop("content_type")

    assert sample_check.check(**details(server, samples)) == []

    assert server.seen == [
        {
            "method": "POST",
            "path": "/invocations",
            "header": VALUE,
            "content_type": "application/json",
            "body": '{"instances": [[1.0, 2.0]]}',
        },
        {"method": "GET", "path": "/ok", "header": VALUE, "content_type": None, "body": ""},
    ]
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "sample 1/2 POST /invocations",
        "sample 2/2 GET /ok",
    ]
    assert all(line.startswith("sample ") and " 200 in " in line for line in lines)
    assert all(line.endswith(" ms, ok") for line in lines)


def test_a_status_other_than_expected_fails(server, capsys):
    problems = sample_check.check(**details(server, [sample("/error"), sample()]))

    assert problems == ["sample 1/2 POST /error: status 500, expected 200"]
    assert "sample 1/2 POST /error: 500 in " in capsys.readouterr().out


def test_an_expected_error_status_passes(server):
    assert sample_check.check(**details(server, [sample("/error", expect_status=500)])) == []


def test_an_answer_slower_than_the_budget_fails(server):
    budget = int(SLOW_SECONDS * 1000) // 3
    problems = sample_check.check(**details(server, [sample("/slow")], latency_budget_ms=budget))

    assert len(problems) == 1
    assert problems[0].startswith("sample 1/1 POST /slow: ")
    assert problems[0].endswith(f" ms, over the {budget} ms budget")


def test_no_answer_within_the_timeout_fails(server):
    problems = sample_check.check(**details(server, [sample("/hang")], timeout_seconds=1))

    assert len(problems) == 1
    assert problems[0].startswith("sample 1/1 POST /hang: no response (")
    assert "timed out" in problems[0]


def test_a_closed_port_fails(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = {
        "base_url": f"http://127.0.0.1:{port}",
        "header": HEADER,
        "header_value": VALUE,
        "latency_budget_ms": GENEROUS_MS,
        "timeout_seconds": 5,
        "samples": [sample()],
    }

    problems = sample_check.check(**closed)

    assert len(problems) == 1
    assert "no response (" in problems[0]
    assert "refused" in problems[0].lower()
    assert ": - in " in capsys.readouterr().out


def test_a_redirect_is_not_followed(server):
    """Following it could leave the test listener for the production one."""
    problems = sample_check.check(**details(server, [sample("/redirect")]))

    assert problems == ["sample 1/1 POST /redirect: status 302, expected 200"]
    assert [seen["path"] for seen in server.seen] == ["/redirect"]


def test_no_proxy_stands_between_the_hook_and_the_listener(server, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")

    assert sample_check.check(**details(server, [sample()])) == []


def test_every_sample_is_tried_even_after_one_failed(server):
    problems = sample_check.check(**details(server, [sample("/error"), sample("/error"), sample()]))
    assert len(problems) == 2
    assert len(server.seen) == 3


# ------------------------------------------------------------------------------ malformed
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"base_url": "ftp://host"}, r"base_url: 'ftp://host' is not an http\(s\) URL"),
        ({"base_url": "https://"}, r"base_url: 'https://' is not an http\(s\) URL"),
        ({"base_url": "https://h/x?q=1"}, r"no query"),
        ({"base_url": 80}, r"base_url: 80 is not"),
        ({"header": "X Test"}, r"header: 'X Test' is not a header name"),
        ({"header": "Host"}, r"not Host"),
        ({"header": "X" * 41}, r"at most 40"),
        ({"header_value": ""}, r"header_value: '' is not 1 to 128"),
        ({"header_value": "a\r\nInjected: 1"}, r"header_value: .* is not 1 to 128"),
        ({"latency_budget_ms": 0}, r"latency_budget_ms: 0 is not a whole number from 1"),
        ({"latency_budget_ms": 1.5}, r"latency_budget_ms: 1.5 is not a whole number"),
        ({"latency_budget_ms": True}, r"latency_budget_ms: True is not a whole number"),
        ({"timeout_seconds": 301}, r"timeout_seconds: 301 is not a whole number from 1 to 300"),
        ({"samples": []}, r"samples: give a list of 1 to 100"),
        ({"samples": {"method": "GET"}}, r"samples: give a list"),
        ({"samples": ["GET /"]}, r"samples\[0\] must be a JSON object, not str"),
        ({"samples": [sample(method="post")]}, r"samples\[0\].method: 'post' is not one of"),
        ({"samples": [sample(path="invocations")]}, r"samples\[0\].path: 'invocations'"),
        ({"samples": [sample(path="/a b")]}, r"samples\[0\].path: '/a b'"),
        ({"samples": [sample(body={"a": 1})]}, r"samples\[0\].body must be text, not dict"),
        ({"samples": [sample(expect_status="200")]}, r"samples\[0\].expect_status: '200'"),
        ({"samples": [sample(expect_status=700)]}, r"samples\[0\].expect_status: 700"),
        ({"samples": [sample(expected_status=200)]}, r"samples\[0\]: unknown keys"),
        (
            {"samples": [sample(), {"method": "POST", "path": "/x", "body": "{}"}]},
            r"samples\[1\].content_type is missing",
        ),
    ],
)
def test_malformed_arguments_are_refused_before_any_request(server, change, message):
    with pytest.raises(ValueError, match=message):
        sample_check.check(**{**details(server, [sample()]), **change})
    assert server.seen == []


# ------------------------------------------------------------------------------ the hook
def ecs_event(hook_details, stage="POST_TEST_TRAFFIC_SHIFT") -> dict:
    """The payload ECS sends a Lambda hook, as the Developer Guide's "Lambda hooks for Amazon
    ECS service deployments" shows it (`POST_TEST_TRAFFIC_SHIFT`, with `hookDetails`)."""
    event = {
        "executionId": "3a0345ba-b029-404b-890d-7da2a4b266aa",
        "lifecycleStage": stage,
        "resourceArn": "arn:aws:ecs:us-west-2:123456789012:service-deployment/my-cluster/"
        "my-service/EZe5RNVLH6PPzHXINuP28",
        "executionDetails": {
            "serviceArn": "arn:aws:ecs:us-west-2:123456789012:service/my-cluster/my-service",
            "targetServiceRevisionArn": "arn:aws:ecs:us-west-2:123456789012:service-revision/"
            "my-cluster/my-service/9313423515462893900",
            "testTrafficWeights": {},
            "productionTrafficWeights": {},
        },
    }
    if hook_details is not None:
        event["hookDetails"] = hook_details
    return event


class _Context:
    """What the Lambda runtime passes as `context`, as far as the hook reads it."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_the_hook_answers_succeeded_when_every_sample_passes(server, capsys):
    answer = sample_check.handler(
        ecs_event(details(server, [sample(), sample()])), _Context(900_000)
    )

    assert answer == {"hookStatus": "SUCCEEDED"}
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "lifecycle hook POST_TEST_TRAFFIC_SHIFT for arn:aws:ecs:us-west-2:123456789012:"
        "service-revision/my-cluster/my-service/9313423515462893900 (deployment "
        "arn:aws:ecs:us-west-2:123456789012:service-deployment/my-cluster/my-service/"
        "EZe5RNVLH6PPzHXINuP28, execution 3a0345ba-b029-404b-890d-7da2a4b266aa, test traffic {})"
    )
    assert out[-1] == "hook SUCCEEDED: all 2 samples passed"
    assert all(seen["header"] == VALUE for seen in server.seen)


def test_the_hook_answers_failed_when_a_sample_fails(server, capsys):
    answer = sample_check.handler(ecs_event(details(server, [sample("/error")])), None)

    assert answer == {"hookStatus": "FAILED"}
    assert capsys.readouterr().out.splitlines()[-1] == "hook FAILED: 1 problem(s) in 1 samples"


@pytest.mark.parametrize(
    ("hook_details", "logged"),
    [
        (None, "hook FAILED: hookDetails: not set: give it in the service's lifecycle hook"),
        (["x"], "hook FAILED: hookDetails: not a JSON object but list"),
        (
            {"base_url": "https://x"},
            "hook FAILED: hookDetails: missing header, header_value, latency_budget_ms",
        ),
        ({"baseUrl": "https://x"}, "hook FAILED: hookDetails: unknown keys ['baseUrl']"),
        (
            {
                "base_url": "https://x",
                "header": HEADER,
                "header_value": VALUE,
                "latency_budget_ms": "fast",
                "timeout_seconds": 5,
                "samples": [sample()],
            },
            "hook FAILED: hookDetails: latency_budget_ms: 'fast' is not a whole number",
        ),
    ],
)
def test_malformed_hook_details_fail_the_deployment_saying_why(hook_details, logged, capsys):
    assert sample_check.handler(ecs_event(hook_details), None) == {"hookStatus": "FAILED"}
    assert capsys.readouterr().out.splitlines()[-1].startswith(logged)


def test_the_hook_refuses_to_run_at_another_stage(server, capsys):
    answer = sample_check.handler(
        ecs_event(details(server, [sample()]), stage="PRE_SCALE_UP"), None
    )

    assert answer == {"hookStatus": "FAILED"}
    assert server.seen == []
    assert "invoked at PRE_SCALE_UP; this hook belongs at POST_TEST_TRAFFIC_SHIFT" in (
        capsys.readouterr().out
    )


def test_the_hook_says_when_the_function_timeout_is_too_short(server, capsys):
    hook_details = details(server, [sample(), sample()], timeout_seconds=30)

    answer = sample_check.handler(ecs_event(hook_details), _Context(remaining_ms=20_000))

    assert answer == {"hookStatus": "FAILED"}
    assert server.seen == []
    assert "has 20 s left but 2 samples of up to 30 s each need 62 s" in capsys.readouterr().out


def test_a_non_object_event_fails():
    assert sample_check.handler("ping", None) == {"hookStatus": "FAILED"}


# ------------------------------------------------------------------------------ from a shell
def test_the_command_line_runs_the_same_check(server, tmp_path, capsys):
    path = tmp_path / "hook-details.json"
    path.write_text(json.dumps(details(server, [sample()], base_url="https://elsewhere")))

    assert sample_check.main([str(path), "--base-url", url(server)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "all samples passed"

    path.write_text(json.dumps(details(server, [sample("/error")])))
    assert sample_check.main([str(path)]) == 1

    path.write_text(json.dumps({**details(server, [sample()]), "samples": []}))
    assert sample_check.main([str(path)]) == 2
    assert "hookDetails: samples: give a list" in capsys.readouterr().err
