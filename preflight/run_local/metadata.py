"""The ECS task metadata endpoint (version 4), served to the local tasks as ECS serves it.

ECS injects `ECS_CONTAINER_METADATA_URI_V4` into every container of a task (Fargate platform
1.4.0 and later; EC2 agent 1.39.0 and later): `${ECS_CONTAINER_METADATA_URI_V4}` describes the
container, `.../task` the task with every container in it (ECS Developer Guide, "Amazon ECS task
metadata endpoint version 4"). The container fields used here are the agent's own
(amazon-ecs-agent `ecs-agent/tmds/handlers/v4/state`, v2 `ContainerResponse`): `DockerId`,
`Name`, `DockerName`, `Image`, `ImageID`, `Labels`, `DesiredStatus`, `KnownStatus`, `ExitCode`
(present once the container stopped), `CreatedAt`, `StartedAt`, `FinishedAt`, `Type`.

The platform's collect-training reads the train container's `ExitCode` there, on AWS and here.
run_local serves it on Docker's bridge gateway, which a task's containers reach from their own
network namespace, under a path per task and container.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from preflight.run_local.docker import bridge_gateway

Describe = Callable[[], dict[str, Any]]
"""A task's `/task` document, made when asked (the containers' states change)."""


class MetadataEndpoint:
    """One HTTP server for a session's tasks: `/v4/<task id>/<container>[/task]`."""

    def __init__(self) -> None:
        self._tasks: dict[str, Describe] = {}
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = endpoint.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((bridge_gateway(), 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def uri(self, task_id: str, container: str) -> str:
        """`ECS_CONTAINER_METADATA_URI_V4` for one container of a task."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v4/{task_id}/{container}"

    def register(self, task_id: str, describe: Describe) -> None:
        self._tasks[task_id] = describe

    def forget(self, task_id: str) -> None:
        self._tasks.pop(task_id, None)

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        parts = [p for p in path.split("?", 1)[0].split("/") if p]
        if len(parts) < 3 or parts[0] != "v4" or parts[1] not in self._tasks:
            return 404, {"error": f"no such metadata path {path}"}
        task = self._tasks[parts[1]]()
        if parts[3:] == ["task"]:
            return 200, task
        container = next((c for c in task["Containers"] if c["Name"] == parts[2]), None)
        if len(parts) != 3 or container is None:
            return 404, {"error": f"no such metadata path {path}"}
        return 200, container

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
