"""A SageMaker "bring your own container" image as a user writes one, outside the repository.

`write(folder)` puts into `folder` an image in the style of AWS's own scikit-learn BYOC sample
(amazon-sagemaker-examples, advanced_functionality/scikit_bring_your_own): `train` and `serve`
executables on PATH in /opt/program, nginx in front of gunicorn, both running as root, a WSGI
predictor, and a model format of its own: a JSON nearest-centroid model. Nothing in it knows the
platform; it follows only the documented contract:
  https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo.html
  https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html
Packages come from Debian (nginx, gunicorn), so it builds on the debootstrap base the container
tests use (`--build-arg BASE_IMAGE=mlops-base:bookworm`, preflight/base_image.py) as well as on
`debian:bookworm-slim`.

`write_dataset(folder)` writes iris-like data (three classes, four features, one CSV, the label in
the first column as in AWS's sample) for the `training` channel.

What the platform needs to know about it (the `mlops:workload` a user would write):
CHANNEL, HEALTH_PATH, PORT, that it writes no metrics file (as AWS's sample: it prints its
accuracy, so the platform gate has nothing to compare: `promotion: every-trained-run`) and that it
runs as root.
"""

from __future__ import annotations

import random
from pathlib import Path

CHANNEL = "training"
PORT = 8080
HEALTH_PATH = "/ping"
INVOCATIONS_PATH = "/invocations"
PROMOTION = "every-trained-run"
USER = "0"  # root, as AWS's samples run
CLASSES = ("setosa", "versicolor", "virginica")
# Per class: the mean of each of the four features (iris's sepal/petal length/width, roughly).
MEANS = ((5.0, 3.4, 1.5, 0.2), (5.9, 2.8, 4.3, 1.3), (6.6, 3.0, 5.6, 2.0))
SPREAD = 0.25

DOCKERFILE = """\
# A user's SageMaker BYOC image: nginx + gunicorn as root, train/serve on PATH.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \\
    && apt-get install -y --no-install-recommends nginx gunicorn python3 \\
    && rm -rf /var/lib/apt/lists/*
ENV PYTHONUNBUFFERED=TRUE \\
    PYTHONDONTWRITEBYTECODE=TRUE \\
    PATH="/opt/program:${PATH}"
COPY program /opt/program
RUN chmod 0755 /opt/program/train /opt/program/serve
WORKDIR /opt/program
"""

TRAIN = """\
#!/usr/bin/env python3
# Nearest-centroid training: CSV rows "label,f1,f2,f3,f4" from the training channel; the model is
# a JSON file of its own: {"classes": [...], "centroids": [[...], ...], "features": 4}.
import json
import os
import random
import sys
import traceback

prefix = "/opt/ml/"
input_path = os.path.join(prefix, "input/data/training")
param_path = os.path.join(prefix, "input/config/hyperparameters.json")
model_path = os.path.join(prefix, "model")
output_path = os.path.join(prefix, "output")


def main():
    with open(param_path) as f:
        params = json.load(f)
    holdout = float(params.get("holdout", "0.3"))
    seed = int(params.get("seed", "0"))
    files = [os.path.join(input_path, n) for n in sorted(os.listdir(input_path))]
    rows = []
    for name in files:
        with open(name) as f:
            for line in f:
                if line.strip():
                    label, *values = line.strip().split(",")
                    rows.append((label, [float(v) for v in values]))
    if not rows:
        raise ValueError("There are no rows in {}.".format(input_path))
    random.Random(seed).shuffle(rows)
    cut = int(len(rows) * (1 - holdout))
    train, test = rows[:cut], rows[cut:]
    classes = sorted({label for label, _ in train})
    width = len(train[0][1])
    centroids = []
    for c in classes:
        members = [v for label, v in train if label == c]
        centroids.append([sum(col) / len(members) for col in zip(*members)])

    def predict(v):
        d = [sum((a - b) ** 2 for a, b in zip(v, m)) for m in centroids]
        return classes[d.index(min(d))]

    accuracy = sum(predict(v) == label for label, v in test) / max(len(test), 1)
    with open(os.path.join(model_path, "model.json"), "w") as f:
        json.dump({"classes": classes, "centroids": centroids, "features": width}, f)
    print("Training complete: accuracy {:.4f} on {} held-out rows.".format(accuracy, len(test)))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        trc = traceback.format_exc()
        with open(os.path.join(output_path, "failure"), "w") as s:
            s.write("Exception during training: " + str(e) + "\\n" + trc)
        print("Exception during training: " + str(e) + "\\n" + trc, file=sys.stderr)
        sys.exit(255)
    sys.exit(0)
"""

SERVE = """\
#!/usr/bin/env python3
# nginx on 8080 in front of gunicorn on a unix socket, as in AWS's sample; SIGTERM stops both.
import multiprocessing
import os
import signal
import subprocess
import sys

cpu_count = multiprocessing.cpu_count()
model_server_timeout = os.environ.get("MODEL_SERVER_TIMEOUT", 60)
model_server_workers = int(os.environ.get("MODEL_SERVER_WORKERS", min(cpu_count, 2)))


def sigterm_handler(nginx_pid, gunicorn_pid):
    for pid in (nginx_pid, gunicorn_pid):
        try:
            os.kill(pid, signal.SIGQUIT if pid == nginx_pid else signal.SIGTERM)
        except OSError:
            pass
    sys.exit(0)


def start_server():
    print("Starting the inference server with {} workers.".format(model_server_workers))
    subprocess.check_call(["ln", "-sf", "/dev/stdout", "/var/log/nginx/access.log"])
    subprocess.check_call(["ln", "-sf", "/dev/stderr", "/var/log/nginx/error.log"])
    nginx = subprocess.Popen(["nginx", "-c", "/opt/program/nginx.conf"])
    gunicorn = subprocess.Popen(["gunicorn", "--chdir", "/opt/program",
                                 "--timeout", str(model_server_timeout),
                                 "-k", "sync", "-b", "unix:/tmp/gunicorn.sock",
                                 "-w", str(model_server_workers), "wsgi:app"])
    signal.signal(signal.SIGTERM, lambda a, b: sigterm_handler(nginx.pid, gunicorn.pid))
    pids = {nginx.pid, gunicorn.pid}
    while True:
        pid, _ = os.wait()
        if pid in pids:
            break
    sigterm_handler(nginx.pid, gunicorn.pid)
    print("Inference server exiting")


if __name__ == "__main__":
    start_server()
"""

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid /tmp/nginx.pid;
error_log /var/log/nginx/error.log;

events {
  # defaults
}

http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log /var/log/nginx/access.log combined;

  upstream gunicorn {
    server unix:/tmp/gunicorn.sock;
  }

  server {
    listen 8080 deferred;
    client_max_body_size 5m;

    keepalive_timeout 5;
    proxy_read_timeout 1200s;

    location ~ ^/(ping|invocations) {
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header Host $http_host;
      proxy_redirect off;
      proxy_pass http://gunicorn;
    }

    location / {
      return 404 "{}";
    }
  }
}
"""

WSGI = """\
# The predictor: GET /ping, POST /invocations with text/csv rows of features; answers CSV labels.
import json
import os

model_path = os.path.join("/opt/ml/", "model")
_model = None


def get_model():
    global _model
    if _model is None:
        with open(os.path.join(model_path, "model.json")) as f:
            _model = json.load(f)
    return _model


def predict(model, row):
    d = [sum((a - b) ** 2 for a, b in zip(row, m)) for m in model["centroids"]]
    return model["classes"][d.index(min(d))]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/ping":
        try:
            get_model()
            status = "200 OK"
        except Exception:
            status = "404 Not Found"
        start_response(status, [("Content-Type", "application/json")])
        return [b"\\n"]
    if path == "/invocations" and environ["REQUEST_METHOD"] == "POST":
        if environ.get("CONTENT_TYPE", "").split(";")[0] != "text/csv":
            start_response("415 Unsupported Media Type", [("Content-Type", "text/plain")])
            return [b"This predictor only supports CSV data"]
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size).decode("utf-8")
        model = get_model()
        try:
            rows = [[float(v) for v in line.split(",")] for line in body.splitlines() if line]
            if any(len(r) != model["features"] for r in rows):
                raise ValueError("expected {} features per row".format(model["features"]))
        except ValueError as e:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [str(e).encode()]
        out = "".join(predict(model, r) + "\\n" for r in rows).encode()
        start_response("200 OK", [("Content-Type", "text/csv")])
        return [out]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]
"""


def write(folder: Path) -> Path:
    """Write the image's build context into `folder`; returns `folder`."""
    program = folder / "program"
    program.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(DOCKERFILE)
    for name, text, mode in (
        ("train", TRAIN, 0o755),
        ("serve", SERVE, 0o755),
        ("nginx.conf", NGINX_CONF, 0o644),
        ("wsgi.py", WSGI, 0o644),
    ):
        (program / name).write_text(text)
        (program / name).chmod(mode)
    return folder


def dataset_rows(rows_per_class: int = 50, seed: int = 0) -> list[tuple[str, list[float]]]:
    """Iris-like rows: (label, four features), Gaussian around each class's means."""
    rng = random.Random(seed)
    return [
        (label, [round(rng.gauss(mean, SPREAD), 2) for mean in means])
        for label, means in zip(CLASSES, MEANS, strict=True)
        for _ in range(rows_per_class)
    ]


def write_dataset(folder: Path, rows_per_class: int = 50, seed: int = 0) -> Path:
    """Write `iris.csv` (label first, no header) into `folder`; returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "iris.csv"
    lines = [
        ",".join([label, *map(str, values)]) for label, values in dataset_rows(rows_per_class, seed)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
