"""A user's SageMaker image whose every run does what the test's plan file says, so one image
shows each way a run or a rollout can go wrong (tests/containers/test_promotion.py).

It follows the documented contract only
(https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo.html,
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html): `train`
reads its `plan` channel's `plan.json`, `{"accuracy": float, "serve": "ok" | "no-ping" | "500",
"exit": int, "metrics": "<raw text>"}`, writes `model.json` and `metrics.json` (the raw text
when given, else `{"accuracy": ...}`) into /opt/ml/model and exits with `exit`; `serve` serves
that model on 8080: `GET /ping` and `POST /invocations` answering `{"accuracy", "run"}`, or with
`serve: no-ping` listens nowhere, or with `serve: 500` answers /ping and fails every invocation.
Standard library only, so it builds on the debootstrap base (python3) in seconds.
"""

from __future__ import annotations

from pathlib import Path

CHANNEL = "plan"
PORT = 8080
HEALTH_PATH = "/ping"

DOCKERFILE = """\
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ENV PYTHONUNBUFFERED=TRUE PATH="/opt/program:${PATH}"
COPY program /opt/program
RUN chmod 0755 /opt/program/train /opt/program/serve
"""

TRAIN = """\
#!/usr/bin/env python3
import json, os, sys
plan = json.load(open("/opt/ml/input/data/plan/plan.json"))
model = {"accuracy": plan["accuracy"], "serve": plan.get("serve", "ok"),
         "run": os.environ.get("TRAINING_JOB_NAME", "")}
with open("/opt/ml/model/model.json", "w") as f:
    json.dump(model, f)
with open("/opt/ml/model/metrics.json", "w") as f:
    f.write(plan["metrics"] if "metrics" in plan else json.dumps({"accuracy": plan["accuracy"]}))
print(json.dumps({"trained": model, "exit": plan.get("exit", 0)}))
sys.exit(plan.get("exit", 0))
"""

SERVE = """\
#!/usr/bin/env python3
import json, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
model = json.load(open("/opt/ml/model/model.json"))
if model["serve"] == "no-ping":
    print("serving nothing: this model never answers /ping")
    while True:
        time.sleep(60)

class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/ping":
            self._send(200, {"status": "ok"})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/invocations":
            self._send(404, {"error": "not found"})
        elif model["serve"] == "500":
            self._send(500, {"error": "this model fails every prediction"})
        else:
            self._send(200, {"accuracy": model["accuracy"], "run": model["run"]})

print(f"serving run {model['run']} (accuracy {model['accuracy']}) on 8080")
ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""


def write(folder: Path) -> Path:
    """The image's build context in `folder`; returns `folder`."""
    program = folder / "program"
    program.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(DOCKERFILE)
    for name, text in (("train", TRAIN), ("serve", SERVE)):
        (program / name).write_text(text)
        (program / name).chmod(0o755)
    return folder
