"""The rollout's ECS deployment lifecycle hook: sample requests to the candidate through the load
balancer's test listener rule (handler `sample_check.handler`).

ECS invokes this Lambda function at the inference service's `POST_TEST_TRAFFIC_SHIFT` stage,
when the new (green) service revision takes all of the test traffic and none of production's.
The function sends each of the workload's sample requests to `base_url` with the header that
the test listener rule matches, so the load balancer routes them to the candidate's tasks, and
fails the deployment (ECS then rolls back to the previous revision) when a sample gets no
response, a status other than the one expected, or a response slower than the latency budget.

What ECS sends and expects (ECS Developer Guide, "Lambda hooks for Amazon ECS service
deployments", https://docs.aws.amazon.com/AmazonECS/latest/developerguide/lambda-lifecycle-hooks.html):
- the event: `executionId`, `lifecycleStage`, `resourceArn` (the service deployment),
  `executionDetails` {`serviceArn`, `targetServiceRevisionArn`, `testTrafficWeights`,
  `productionTrafficWeights`} (maps of service revision ARN to percent; both empty at
  POST_TEST_TRAFFIC_SHIFT in the guide's example) and `hookDetails`, the object set in the
  service's lifecycle hook configuration (`deploymentConfiguration.lifecycleHooks[].hookDetails`),
  passed on every invocation;
- the answer: `{"hookStatus": "SUCCEEDED" | "FAILED" | "IN_PROGRESS"}`, optionally with
  `callBackDelay` (seconds before ECS invokes again after IN_PROGRESS; 30 by default) and
  `hookDetails` (merged into the next invocation's). A missing or invalid `hookStatus`, or a
  function error, rolls the deployment back. This hook answers SUCCEEDED or FAILED in one
  invocation: the samples take seconds, and ECS waits for the function's answer (hooks are
  "synchronous AWS Lambda functions": AWS Containers Blog, "Extending deployment pipelines with
  Amazon ECS blue green deployments and lifecycle hooks", 2025-09-11).
`hookDetails` has no size limit in the ECS API Reference (DeploymentLifecycleHook: "JSON value")
or the guide; the bound that does apply is Lambda's 6 MB synchronous invocation payload (Lambda
API Reference, Invoke). Keep samples small: they are requests, not data sets.

This hook's `hookDetails`:
    {"base_url": "https://<the load balancer's name or the service's domain>",
     "header": "X-Mlops-Test-Traffic", "header_value": "candidate",
     "latency_budget_ms": 500, "timeout_seconds": 10,
     "samples": [{"method": "POST", "path": "/invocations", "content_type": "application/json",
                  "body": "<text>", "expect_status": 200}]}
`body` and `content_type` may be left out together (a GET); `expect_status` defaults to 200.

Standard library only: this file is the function's whole archive. `check()` is the same test
for a container on this machine (`python sample_check.py hook-details.json --base-url ...`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STAGE = "POST_TEST_TRAFFIC_SHIFT"
"""Where the hook belongs: the candidate has all the test traffic and none of production's."""
DETAILS = ("base_url", "header", "header_value", "latency_budget_ms", "timeout_seconds", "samples")
SAMPLE_FIELDS = ("method", "path", "content_type", "body", "expect_status")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_SAMPLES = 100
MAX_TIMEOUT_SECONDS = 300
MAX_LATENCY_BUDGET_MS = 600_000
TIME_MARGIN_MS = 2_000
"""Kept back from the function's remaining time for the answer itself."""
# The load balancer's HTTP header condition: a name of at most 40 characters of RFC 7230's token
# set, not `Host`; values of at most 128 characters (Elastic Load Balancing API Reference,
# HttpHeaderConditionConfig).
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,40}$")
_HEADER_VALUE = re.compile(r"^[\x21-\x7e]([\x20-\x7e]{0,126}[\x21-\x7e])?$")
_PATH = re.compile(r"^/[\x21-\x7e]*$")
_CONTENT_TYPE = re.compile(r"^[\x20-\x7e]{1,256}$")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a detour: following it could leave the test listener."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# No proxies: the samples go straight to the load balancer (or to the local container).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


def handler(event: Any, context: Any) -> dict[str, str]:
    """The Lambda entry point: ECS's lifecycle hook event in, `{"hookStatus": ...}` out."""
    if not isinstance(event, Mapping):
        return _failed(f"the event is not a JSON object but {type(event).__name__}")
    details = event.get("executionDetails") or {}
    stage = event.get("lifecycleStage")
    print(
        f"lifecycle hook {stage} for {details.get('targetServiceRevisionArn')} "
        f"(deployment {event.get('resourceArn')}, execution {event.get('executionId')}, "
        f"test traffic {json.dumps(details.get('testTrafficWeights'))})"
    )
    if stage != STAGE:
        return _failed(f"invoked at {stage}; this hook belongs at {STAGE}")
    try:
        checked = validated(**hook_config(event.get("hookDetails")))
    except ValueError as error:
        return _failed(f"hookDetails: {error}")
    short = _short_of_time(checked, context)
    if short:
        return _failed(short)
    problems = run(checked)
    if problems:
        return _failed(f"{len(problems)} problem(s) in {len(checked.samples)} samples")
    print(f"hook SUCCEEDED: all {len(checked.samples)} samples passed")
    return {"hookStatus": "SUCCEEDED"}


def _failed(reason: str) -> dict[str, str]:
    print(f"hook FAILED: {reason}")
    return {"hookStatus": "FAILED"}


def hook_config(details: Any) -> dict[str, Any]:
    """`hookDetails` as `check()`'s arguments: exactly its six keys, or ValueError."""
    if details is None:
        raise ValueError("not set: give it in the service's lifecycle hook configuration")
    if not isinstance(details, Mapping):
        raise ValueError(f"not a JSON object but {type(details).__name__}")
    unknown = sorted(set(details) - set(DETAILS))
    if unknown:
        raise ValueError(f"unknown keys {unknown}; it takes {', '.join(DETAILS)}")
    missing = [key for key in DETAILS if key not in details]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    return {key: details[key] for key in DETAILS}


@dataclass(frozen=True)
class Checked:
    """`check()`'s arguments once validated."""

    base_url: str
    headers: dict[str, str]
    samples: list[dict[str, Any]]
    latency_budget_ms: int
    timeout_seconds: int


def _short_of_time(checked: Checked, context: Any) -> str | None:
    """Why the function would time out before its slowest possible run, if it would: ECS rolls
    back either way, but this says why."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    worst = len(checked.samples) * checked.timeout_seconds * 1000 + TIME_MARGIN_MS
    left = remaining()
    if left >= worst:
        return None
    return (
        f"the function has {left / 1000:.0f} s left but {len(checked.samples)} samples of up to "
        f"{checked.timeout_seconds} s each need {worst / 1000:.0f} s: raise the function's "
        "timeout or lower timeout_seconds"
    )


def check(
    base_url: str,
    header: str,
    header_value: str,
    samples: Sequence[Mapping[str, Any]],
    latency_budget_ms: int,
    timeout_seconds: int,
) -> list[str]:
    """Send every sample to `base_url` with `header: header_value`; the problems found (empty:
    all passed). One log line per sample. ValueError for malformed arguments, before any
    request is sent."""
    return run(
        validated(base_url, header, header_value, samples, latency_budget_ms, timeout_seconds)
    )


def validated(
    base_url: Any,
    header: Any,
    header_value: Any,
    samples: Any,
    latency_budget_ms: Any,
    timeout_seconds: Any,
) -> Checked:
    """`check()`'s arguments checked; ValueError naming the first bad one."""
    base = _base_url(base_url)
    if not isinstance(header, str) or not _TOKEN.match(header) or header.lower() == "host":
        raise ValueError(
            f"header: {header!r} is not a header name a listener rule can match "
            "(at most 40 token characters, not Host)"
        )
    if not isinstance(header_value, str) or not _HEADER_VALUE.match(header_value):
        raise ValueError(
            f"header_value: {header_value!r} is not 1 to 128 printable ASCII characters"
        )
    budget = _bounded("latency_budget_ms", latency_budget_ms, MAX_LATENCY_BUDGET_MS)
    timeout = _bounded("timeout_seconds", timeout_seconds, MAX_TIMEOUT_SECONDS)
    if not isinstance(samples, list) or not 1 <= len(samples) <= MAX_SAMPLES:
        raise ValueError(f"samples: give a list of 1 to {MAX_SAMPLES} samples")
    return Checked(
        base_url=base,
        headers={header: header_value},
        samples=[_sample(index, sample) for index, sample in enumerate(samples)],
        latency_budget_ms=budget,
        timeout_seconds=timeout,
    )


def run(checked: Checked) -> list[str]:
    """Send the samples, one log line each; the problems found."""
    problems = []
    count = len(checked.samples)
    for index, sample in enumerate(checked.samples, 1):
        name = f"sample {index}/{count} {sample['method']} {sample['path']}"
        status, elapsed_ms, error = _send(
            checked.base_url + sample["path"], sample, checked.headers, checked.timeout_seconds
        )
        found = []
        if error:
            found.append(f"no response ({error})")
        elif status != sample["expect_status"]:
            found.append(f"status {status}, expected {sample['expect_status']}")
        if elapsed_ms > checked.latency_budget_ms:
            found.append(f"{elapsed_ms:.0f} ms, over the {checked.latency_budget_ms} ms budget")
        verdict = f"FAILED: {'; '.join(found)}" if found else "ok"
        print(f"{name}: {status or '-'} in {elapsed_ms:.0f} ms, {verdict}")
        problems += [f"{name}: {problem}" for problem in found]
    return problems


def _base_url(value: Any) -> str:
    parts = urllib.parse.urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise ValueError(
            f"base_url: {value!r} is not an http(s) URL of a host (no query, fragment or user)"
        )
    return value.rstrip("/")


def _bounded(name: str, value: Any, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ValueError(f"{name}: {value!r} is not a whole number from 1 to {most}")
    return value


def _sample(index: int, sample: Any) -> dict[str, Any]:
    where = f"samples[{index}]"
    if not isinstance(sample, Mapping):
        raise ValueError(f"{where} must be a JSON object, not {type(sample).__name__}")
    unknown = sorted(set(sample) - set(SAMPLE_FIELDS))
    if unknown:
        raise ValueError(
            f"{where}: unknown keys {unknown}; a sample takes {', '.join(SAMPLE_FIELDS)}"
        )
    method = sample.get("method")
    if method not in METHODS:
        raise ValueError(f"{where}.method: {method!r} is not one of {', '.join(METHODS)}")
    path = sample.get("path")
    if not isinstance(path, str) or not _PATH.match(path):
        raise ValueError(f"{where}.path: {path!r} is not a path starting with '/'")
    body = sample.get("body", "")
    if not isinstance(body, str):
        raise ValueError(f"{where}.body must be text, not {type(body).__name__}")
    content_type = sample.get("content_type")
    if content_type is None and body:
        raise ValueError(f"{where}.content_type is missing: a sample with a body needs one")
    if content_type is not None and (
        not isinstance(content_type, str) or not _CONTENT_TYPE.match(content_type)
    ):
        raise ValueError(f"{where}.content_type: {content_type!r} is not a media type")
    expect = sample.get("expect_status", 200)
    if isinstance(expect, bool) or not isinstance(expect, int) or not 100 <= expect <= 599:
        raise ValueError(f"{where}.expect_status: {expect!r} is not an HTTP status (100-599)")
    return {
        "method": method,
        "path": path,
        "body": body,
        "content_type": content_type,
        "expect_status": expect,
    }


def _send(
    url: str, sample: Mapping[str, Any], headers: dict[str, str], timeout: int
) -> tuple[int | None, float, str | None]:
    """(status or None, milliseconds to the whole response, why there was no response)."""
    if sample["content_type"]:
        headers = {**headers, "Content-Type": sample["content_type"]}
    data = sample["body"].encode() if sample["body"] else None
    request = urllib.request.Request(url, data=data, headers=headers, method=sample["method"])
    start = time.perf_counter()
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:  # a response all the same, with a status >= 300
        try:
            error.read()
        finally:
            error.close()
        status = error.code
    except urllib.error.URLError as error:
        return None, (time.perf_counter() - start) * 1000, str(error.reason)
    except (OSError, http.client.HTTPException) as error:  # a read timing out, a reset
        return None, (time.perf_counter() - start) * 1000, f"{type(error).__name__}: {error}"
    return status, (time.perf_counter() - start) * 1000, None


def main(argv: Sequence[str] | None = None) -> int:
    """`python sample_check.py HOOK_DETAILS.json [--base-url URL]`: the hook's check from a
    shell, against the load balancer or a container on this machine. Exit 0 when every sample
    passed, 1 when one failed, 2 for malformed hook details."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("hook_details", type=Path, help="a JSON file holding the hookDetails")
    parser.add_argument("--base-url", help="send the samples here instead of its base_url")
    args = parser.parse_args(argv)
    details = json.loads(args.hook_details.read_text())
    if args.base_url and isinstance(details, dict):
        details["base_url"] = args.base_url
    try:
        checked = validated(**hook_config(details))
    except ValueError as error:
        print(f"hookDetails: {error}", file=sys.stderr)
        return 2
    problems = run(checked)
    print(f"{len(problems)} problem(s)" if problems else "all samples passed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
