"""Step Functions' task-token callbacks, answered on this machine.

A state with `.waitForTaskToken` (a sweep's PickTrial) gives its container `$$.Task.Token` and
waits until the container calls SendTaskSuccess or SendTaskFailure with it. run_local serves those
two actions (and SendTaskHeartbeat) as Step Functions' JSON 1.0 protocol defines them (botocore's
model: `AWSStepFunctions.<Action>` in `X-Amz-Target`, a JSON body, errors as `__type`), on
Docker's bridge gateway where a task's containers reach the host, and the container is pointed at
it with `AWS_ENDPOINT_URL_SFN` (botocore's endpoint variable for the service id `SFN`) and
throwaway credentials; nothing checks the signature.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from preflight.run_local.docker import bridge_gateway

TARGET = "AWSStepFunctions."


@dataclass
class Callback:
    """What a task's token came back with."""

    output: Any = None
    error: str = ""
    cause: str = ""

    @property
    def succeeded(self) -> bool:
        return not self.error


class CallbackEndpoint:
    """One HTTP server for a session's task tokens (on `host`: Docker's bridge gateway by
    default; a test that runs no container may use 127.0.0.1)."""

    def __init__(self, host: str | None = None) -> None:
        self._waiting: set[str] = set()
        self._answers: dict[str, Callback] = {}
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                action = self.headers.get("X-Amz-Target", "").removeprefix(TARGET)
                status, body = endpoint.answer(action, self.rfile.read(length))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host or bridge_gateway(), 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def environment(self) -> dict[str, str]:
        """What a container calling back needs: this endpoint, throwaway credentials, and a
        Region for a client that has none of its own (AWS_REGION, as a task definition sets it,
        wins over AWS_DEFAULT_REGION in botocore)."""
        return {
            "AWS_ENDPOINT_URL_SFN": self.url,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "run-local",
            "AWS_SECRET_ACCESS_KEY": "run-local",
        }

    def new_token(self) -> str:
        token = f"run-local-{uuid.uuid4().hex}"
        with self._lock:
            self._waiting.add(token)
        return token

    def result(self, token: str) -> Callback | None:
        """The callback `token` got, or None when none came; the token is spent either way."""
        with self._lock:
            self._waiting.discard(token)
            return self._answers.pop(token, None)

    def answer(self, action: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return 400, {"__type": "SerializationException", "message": "the body is not JSON"}
        token = body.get("taskToken") if isinstance(body, dict) else None
        with self._lock:
            if action not in ("SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"):
                return 400, {"__type": "UnknownOperationException", "message": action}
            if token not in self._waiting or token in self._answers:
                # Step Functions' answer to a token that is unknown or already used.
                return 400, {"__type": "TaskTimedOut", "message": "the task is not waiting"}
            if action == "SendTaskSuccess":
                try:
                    output = json.loads(body.get("output", ""))
                except ValueError:
                    return 400, {"__type": "InvalidOutput", "message": "output is not JSON"}
                self._answers[token] = Callback(output=output)
            elif action == "SendTaskFailure":
                self._answers[token] = Callback(
                    error=str(body.get("error") or "States.TaskFailed"),
                    cause=str(body.get("cause") or ""),
                )
            return 200, {}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
