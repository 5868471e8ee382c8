"""Provenance: a push-triggered task fails unless it runs the pushed image.

The server below answers like the ECS task metadata endpoint v4 (ECS Developer Guide, "Amazon ECS
task metadata v4 examples": `${ECS_CONTAINER_METADATA_URI_V4}` returns this container's metadata
with `Image` and `ImageID`; `/task` the task's, with every container's).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app import provenance

REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops-dev"
PUSHED = "sha256:" + "a" * 64
DEPLOYED = "sha256:" + "b" * 64
CONFIG_DIGEST = "sha256:" + "c" * 64


def container_metadata(image: str, image_id: str = CONFIG_DIGEST) -> dict:
    """The documented shape of `GET ${ECS_CONTAINER_METADATA_URI_V4}` (fields we do not read
    kept, so the parser is tried on the real thing)."""
    return {
        "DockerId": "cd189a933e5849daa93386466019ab50-2495160603",
        "Name": "validate",
        "DockerName": "validate",
        "Image": image,
        "ImageID": image_id,
        "Labels": {
            "com.amazonaws.ecs.container-name": "validate",
            "com.amazonaws.ecs.task-definition-family": "mlops-dev-training-validate",
            "com.amazonaws.ecs.task-definition-version": "2",
        },
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": {"CPU": 2, "Memory": 0},
        "Type": "NORMAL",
        "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.2.106"]}],
    }


@pytest.fixture
def metadata_server() -> Iterator[dict]:
    """A real HTTP server on localhost; set `state["container"]` to what it answers."""
    state: dict = {"container": container_metadata(f"{REPO}@{DEPLOYED}"), "status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v4/abc-123":
                body = json.dumps(state["container"]).encode()
            elif self.path == "/v4/abc-123/task":
                body = json.dumps({"Containers": [state["container"]]}).encode()
            else:
                self.send_error(404)
                return
            self.send_response(state["status"])
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["uri"] = f"http://127.0.0.1:{server.server_port}/v4/abc-123"
    yield state
    server.shutdown()
    server.server_close()


def env(state: dict, digest: str = PUSHED) -> dict[str, str]:
    return {provenance.METADATA_ENV: state["uri"], provenance.TRIGGER_ENV: digest}


def test_task_running_the_pushed_image_passes(metadata_server):
    metadata_server["container"] = container_metadata(f"{REPO}@{PUSHED}")
    assert provenance.verify(env(metadata_server)) == PUSHED


def test_task_running_an_older_image_fails_naming_both_digests(metadata_server):
    with pytest.raises(provenance.ProvenanceError) as raised:
        provenance.verify(env(metadata_server))
    message = str(raised.value)
    assert DEPLOYED in message and PUSHED in message and "retries" in message


def test_image_id_is_used_when_the_image_is_named_by_tag(metadata_server):
    metadata_server["container"] = container_metadata(f"{REPO}:cpu-0123", image_id=PUSHED)
    assert provenance.verify(env(metadata_server)) == PUSHED


def test_no_digest_in_the_metadata_is_an_error(metadata_server):
    metadata_server["container"] = container_metadata(f"{REPO}:latest", image_id="")
    with pytest.raises(provenance.ProvenanceError, match="names no image digest"):
        provenance.verify(env(metadata_server))


def test_unreachable_endpoint_is_an_error():
    with pytest.raises(provenance.ProvenanceError, match="cannot read the task metadata"):
        provenance.verify(
            {provenance.METADATA_ENV: "http://127.0.0.1:9/v4/x", provenance.TRIGGER_ENV: PUSHED}
        )


@pytest.mark.parametrize(
    "environ",
    [
        {},  # a laptop: no metadata endpoint
        {provenance.TRIGGER_ENV: PUSHED},  # no metadata endpoint
        {provenance.METADATA_ENV: "http://127.0.0.1:9/v4/x"},  # not push-triggered
        {provenance.METADATA_ENV: "http://127.0.0.1:9/v4/x", provenance.TRIGGER_ENV: "deployed"},
    ],
)
def test_nothing_to_check_outside_a_push_triggered_ecs_task(environ):
    assert provenance.verify(environ) is None


def test_every_command_checks_at_start_up_and_exits_1(metadata_server, tmp_path):
    """`python -m app validate` in a task still running the old image stops before any work."""
    result = subprocess.run(
        [sys.executable, "-m", "app", "validate"],
        env={**env(metadata_server), "STORE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert f"error: provenance: this task runs image {DEPLOYED}" in result.stderr


def test_check_image_command_passes_once_the_image_is_deployed(metadata_server):
    metadata_server["container"] = container_metadata(f"{REPO}@{PUSHED}")
    result = subprocess.run(
        [sys.executable, "-m", "app", "check-image"],
        env={**env(metadata_server), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert PUSHED in result.stdout
