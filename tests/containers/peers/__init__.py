"""An ML image as SageMaker users already have one, built from the two real peers, nothing of ours.

`write(folder)` puts into `folder` the build context of one image that carries both toolkits, as
AWS's framework containers do (https://github.com/aws/deep-learning-containers): the role is
chosen by the command the platform passes, so one `mlops:workload` image serves both steps.

- Training: AWS's `sagemaker-training` toolkit (PyPI `sagemaker-training`), installed as its own
  README and AWS's containers do (`pip install sagemaker-training`, here into a venv on PATH since
  Debian's python3 is externally managed; the script in `/opt/ml/code`,
  `ENV SAGEMAKER_PROGRAM train.py`). `train` is the toolkit's console script
  (`sagemaker_training.cli.train:main`); SageMaker runs `docker run <image> train`. The toolkit
  reads `/opt/ml/input/config/{hyperparameters,inputdataconfig,resourceconfig}.json`, resolves
  every host of `resourceconfig.json` (retrying for 15 minutes), then runs
  `python -- train.py --<hyperparameter> <value> ...` from `/opt/ml/code` with `SM_CHANNEL_<NAME>`,
  `SM_MODEL_DIR` and the rest set, and writes `/opt/ml/output/success` or `/opt/ml/output/failure`.
- Serving: MLflow's own SageMaker scoring server, started with exactly the entry point
  `mlflow sagemaker build-and-push-container` writes (`mlflow/sagemaker/cli.py`):
  `python -c "import sys; from mlflow.models import container as C; C._init(sys.argv[1], ENV)"
  serve`. That is `SERVE_COMMAND`. It reads `/opt/ml/model/MLmodel` (the MLflow model directory
  IS `/opt/ml/model`: MLflow's SageMaker deploy tars the directory's contents at the archive's
  root), starts nginx on 8080 (`mlflow/models/container/scoring_server/nginx.conf`, Debian's
  nginx here) in front of uvicorn on 127.0.0.1:8000 (`/ping`, `/invocations`).

Where this image differs from MLflow's generated one, and why: MLflow's generated image is
`ubuntu:24.04` with pyenv, env manager `virtualenv` and `MLFLOW_DISABLE_ENV_CREATION=False`, so at
every `serve` it builds a virtualenv for the model (`pyenv install` of the model's Python, pip
installs its requirements and `mlflow` from PyPI, `/opt/activate` is symlinked): network, root
and a writable root file system at start. Here the env manager is `local` and
`MLFLOW_DISABLE_ENV_CREATION=true` (what `mlflow models build-docker` sets,
`mlflow/pyfunc/backend.py`): the model is served by the image's own Python, whose packages are
the ones it was trained with, and nothing is installed at start.

Versions are pinned: every Python package (`REQUIREMENTS`, the whole resolved set, installed
with `--no-deps` and checked by `pip check`), pip and its build tools, and the Debian packages
(bookworm's; a Debian point release retires the old version, then the ARG needs the new one).
The tests build it on the debootstrap base (`--build-arg BASE_IMAGE=mlops-base:bookworm`,
preflight/base_image.py); a user's default is `python:3.11-slim-bookworm` (the same Debian release,
so the same pins; not built here, where no registry is reachable).

`build(base, folder)` builds it once per content: the tag is a hash of the context and of the
base image's id, so a re-run (or any other test that calls it) reuses the image.

What the platform needs to know about it (the `mlops:workload` a user would write): the
`TRAIN_COMMAND` and `SERVE_COMMAND`, CHANNEL, PORT, HEALTH_PATH, OBJECTIVE_FILE/KEY/DIRECTION,
`SAGEMAKER_PROGRAM` to pick the script, and that `resourceconfig.json` must name hosts that
resolve inside the task.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from tests.containers import byoc_sample

REPOSITORY = "mlops-peers"
CHANNEL = "train"
PORT = 8080
HEALTH_PATH = "/ping"
INVOCATIONS_PATH = "/invocations"
OBJECTIVE_FILE = "metrics.json"
OBJECTIVE_KEY = "accuracy"
OBJECTIVE_DIRECTION = "maximize"
PROGRAM = "train.py"
FAILING_PROGRAM = "fail.py"
MODEL_DIR = "/opt/ml/model"
ENV_MANAGER = "local"
TRAIN_COMMAND = ["train"]
# MLflow's SageMaker entry point (mlflow/sagemaker/cli.py, build_and_push_container), verbatim
# but for the env manager; `sys.argv[1]` is the command SageMaker passes.
SERVE_COMMAND = [
    "python",
    "-c",
    f"import sys; from mlflow.models import container as C; C._init(sys.argv[1], '{ENV_MANAGER}')",
    "serve",
]
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
LABEL = "species"

BUILD_TOOLS = "pip==26.3 setuptools==84.2.1 wheel==0.48.0"

# The three a user names (sagemaker-training, mlflow, scikit-learn) and everything they pull in,
# resolved by pip 26.3 for CPython 3.11 on linux/amd64. Two are sdists (sagemaker-training, with
# a C extension; inotify_simple): they build without isolation against BUILD_TOOLS.
REQUIREMENTS = """\
sagemaker-training==5.1.4
mlflow==3.18.0
scikit-learn==1.9.1
aiohappyeyeballs==2.7.1
aiohttp==3.14.5
aiosignal==1.4.0
alembic==1.20.1
annotated-doc==0.0.7
annotated-types==0.8.0
anyio==4.16.0
attrs==26.1.0
bcrypt==5.0.0
blinker==1.9.0
boto3==1.44.18
botocore==1.44.18
cachetools==7.3.3
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
click==8.5.1
cloudpickle==3.1.3
contourpy==1.3.3
cryptography==50.0.2
cycler==0.12.1
databricks-sdk==0.167.0
docker==7.2.0
fastapi==0.165.0
Flask==3.1.3
flask-cors==6.0.5
fonttools==4.69.1
frozenlist==1.8.0
gevent==26.9.0
gitdb==4.0.12
GitPython==3.2.1
google-auth==2.63.1
graphene==3.4.3
graphql-core==3.2.14
graphql-relay==3.2.0
greenlet==3.5.6
gunicorn==26.2.0
h11==0.16.0
huey==3.5.4
idna==3.21
importlib_metadata==10.2.0
inotify_simple==1.2.1
invoke==3.0.3
itsdangerous==2.2.0
Jinja2==3.1.6
jmespath==1.1.0
joblib==1.6.0
kiwisolver==1.5.1
lazy-importer==0.1.0
Mako==1.4.3
MarkupSafe==3.0.4
matplotlib==3.11.2
mlflow-skinny==3.18.0
mlflow-tracing==3.18.0
multidict==7.2.1
narwhals==2.29.0
numpy==2.4.6
opentelemetry-api==1.45.2
opentelemetry-proto==1.45.2
opentelemetry-sdk==1.45.2
opentelemetry-semantic-conventions==0.66b2
packaging==26.4
pandas==3.1.2
paramiko==5.1.0
pillow==13.0.0
prettytable==3.19.0
propcache==0.5.4
protobuf==7.36.2
psutil==7.2.2
pyarrow==26.0.1
pyasn1==0.6.5
pyasn1_modules==0.4.2
pycparser==3.12
pydantic==2.14.4
pydantic_core==2.50.5
PyNaCl==1.6.2
pyparsing==3.3.3
python-dateutil==2.9.0.post0
python-dotenv==1.2.4
python-multipart==0.0.34
PyYAML==6.0.4
requests==2.34.2
retrying==1.4.2
s3transfer==0.19.3
scipy==1.17.1
six==1.17.0
skops==0.16.0
smmap==5.0.3
SQLAlchemy==2.1.9
sqlparse==0.6.1
starlette==1.10.0
threadpoolctl==3.8.0
typing-inspection==0.4.5
typing_extensions==4.16.0
urllib3==2.8.0
uvicorn==0.55.0
wcwidth==0.9.5
Werkzeug==3.1.9
yarl==1.25.1
zipp==4.1.2
zope.event==6.2
zope.interface==8.7
"""

DOCKERFILE = f"""\
# A user's SageMaker image: AWS's training toolkit (`train`) and MLflow's scoring server, one
# image as AWS's framework containers are; the command picks the role. No ENTRYPOINT.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${{BASE_IMAGE}} AS build
ARG GCC_VERSION=4:12.2.0-3
ARG PYTHON3_DEV_VERSION=3.11.2-1+b1
# sagemaker-training is an sdist with a C extension: a compiler, and Python's headers where the
# base lacks them (Debian's python3 does, python:3.11-slim has them). Neither reaches the image.
RUN apt-get update \\
    && apt-get install -y --no-install-recommends gcc=${{GCC_VERSION}} libc6-dev \\
    && if ! python3 -c 'import os, sysconfig; \\
raise SystemExit(not os.path.exists(sysconfig.get_path("include") + "/Python.h"))'; then \\
        apt-get install -y --no-install-recommends python3-dev=${{PYTHON3_DEV_VERSION}}; fi \\
    && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \\
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check {BUILD_TOOLS} \\
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \\
        --no-deps --no-build-isolation -r /tmp/requirements.txt \\
    && /opt/venv/bin/pip check

FROM ${{BASE_IMAGE}}
ARG NGINX_VERSION=1.22.1-9+deb12u9
RUN apt-get update \\
    && apt-get install -y --no-install-recommends nginx=${{NGINX_VERSION}} \\
    && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:${{PATH}}" \\
    PYTHONUNBUFFERED=1 \\
    PYTHONDONTWRITEBYTECODE=1 \\
    LANG=C.UTF-8 \\
    MLFLOW_DISABLE_ENV_CREATION=true
# The user's code, where the toolkit looks for it, and the script it runs by default.
COPY code /opt/ml/code
ENV SAGEMAKER_PROGRAM={PROGRAM}
"""

TRAIN = '''\
"""Script mode, as SageMaker's scikit-learn examples write it: hyperparameters arrive as
command-line arguments (the toolkit turns `C` into `-C 0.5`, `max-iter` into `--max-iter 200`),
the channel and model paths as SM_* variables; the model is saved with MLflow (its default skops
format, no pickle) straight into SM_MODEL_DIR, with an accuracy beside it."""

import argparse
import glob
import json
import os

import mlflow.sklearn
import pandas as pd
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

LABEL = "species"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-C", type=float, default=1.0)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--test-size", type=float, default=0.3)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--model-dir", default=os.environ["SM_MODEL_DIR"])
    parser.add_argument("--train", default=os.environ["SM_CHANNEL_TRAIN"])
    args = parser.parse_args()

    files = sorted(glob.glob(os.path.join(args.train, "*.csv")))
    if not files:
        raise ValueError(f"no CSV files in {args.train}")
    data = pd.concat([pd.read_csv(name) for name in files], ignore_index=True)
    features, labels = data.drop(columns=[LABEL]), data[LABEL]
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=args.test_size, random_state=args.random_state,
        stratify=labels,
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, max_iter=args.max_iter))
    model.fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))

    signature = infer_signature(x_train, model.predict(x_train))
    mlflow.sklearn.save_model(model, args.model_dir, signature=signature)
    with open(os.path.join(args.model_dir, "metrics.json"), "w") as f:
        json.dump({"accuracy": accuracy, "train_rows": len(x_train), "test_rows": len(x_test),
                   "C": args.C, "max_iter": args.max_iter}, f)
    print(f"accuracy {accuracy:.4f} on {len(x_test)} held-out rows")


if __name__ == "__main__":
    main()
'''

FAIL = '''\
"""A training script that fails, as one does on bad input: the toolkit reports it."""

raise RuntimeError("this training fails on purpose")
'''


def write(folder: Path) -> Path:
    """Write the image's build context into `folder`; returns `folder`."""
    code = folder / "code"
    code.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(DOCKERFILE)
    (folder / "requirements.txt").write_text(REQUIREMENTS)
    (code / PROGRAM).write_text(TRAIN)
    (code / FAILING_PROGRAM).write_text(FAIL)
    return folder


def write_dataset(folder: Path, rows_per_class: int = 50, seed: int = 0) -> Path:
    """Write `iris.csv` (a header row, four features, the label last) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "iris.csv"
    lines = [",".join((*FEATURES, LABEL))]
    lines += [
        ",".join([*map(str, values), label])
        for label, values in byoc_sample.dataset_rows(rows_per_class, seed)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _image_id(image: str) -> str:
    result = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", image],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def tag(folder: Path, base: str) -> str:
    """The image's tag: a hash of every file of the context and of the base image's id."""
    digest = hashlib.sha256(_image_id(base).encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{REPOSITORY}:{digest.hexdigest()[:16]}"


def build(base: str, folder: Path) -> str:
    """Build the image from `write(folder)` on `base` unless that exact content exists; its tag."""
    write(folder)
    image = tag(folder, base)
    if _image_id(image):
        return image
    result = subprocess.run(
        ["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", image, str(folder)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        raise RuntimeError(f"docker build of {image} failed (exit {result.returncode}):\n{tail}")
    return image
