"""The container contract: what the platform, the images and the stack's task definitions agree on.

One home for every name and rule that crosses the boundary between the Pulumi program
(`components/`), the platform's staging image (`platform/`) and the reference workload's image
(`app/`): the environment the platform sets, SageMaker's `/opt/ml` layout, the shared store's
layout, the run-id rule, reading and replacing `models/CURRENT`, atomic writes and the gate lock.
Modelled on AWS's sagemaker-training toolkit, which keeps every environment name in one module
(`params.py`) and the `/opt/ml` layout in another (`environment.py`).

Standard library only: it runs in the platform image, which installs nothing. The program imports
it from the repository root; each image gets this file in its build context from
`components/image_repo.py` (`ship_contract`), the one step every build goes through (`pulumi up`,
run_local, the container tests, the image benchmark), since Docker sends nothing from outside a
context. The images' Dockerfiles copy it next to their code.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


class Env:
    """Environment variables the platform sets in a workload's or its own containers."""

    STORE_DIR = "STORE_DIR"
    """The shared store's mount (contract `platform`), `/mnt/store`."""
    STORE_WAIT_SECONDS = "STORE_WAIT_SECONDS"
    """How long a container waits at start for the store mount."""
    LOG_LEVEL = "LOG_LEVEL"
    RUN_ID = "RUN_ID"
    """The pipeline run (`<start>-<execution name>`), the same on every retry of the run."""
    RUN_DATE = "RUN_DATE"
    """The run's as-of date (YYYY-MM-DD)."""
    TRIGGER = "TRIGGER"
    """Why the run started: `image-push`, `schedule`, `drift`, `manual`."""
    TRIGGER_IMAGE_DIGEST = "TRIGGER_IMAGE_DIGEST"
    """The pushed digest an image-push run must run (`deployed` otherwise)."""
    IMAGE_DIGEST = "IMAGE_DIGEST"
    PROMOTE_MARGIN = "PROMOTE_MARGIN"
    """The workload's own gate: `training.promote_margin`."""
    EVENT_BUS_NAME = "EVENT_BUS_NAME"
    AWS_REGION = "AWS_REGION"
    # The platform's staging containers (platform/), and what they read about the workload.
    ML_ROOT = "MLOPS_ML_ROOT"
    CHANNELS = "MLOPS_CHANNELS"
    HYPERPARAMETERS = "MLOPS_HYPERPARAMETERS"
    WORKLOAD_UID = "MLOPS_WORKLOAD_UID"
    TRAINING_EXIT = "MLOPS_TRAINING_EXIT"
    TRAINING_CONTAINER = "MLOPS_TRAINING_CONTAINER"
    PROMOTION = "MLOPS_PROMOTION"
    OBJECTIVE_FILE = "MLOPS_OBJECTIVE_FILE"
    OBJECTIVE_KEY = "MLOPS_OBJECTIVE_KEY"
    OBJECTIVE_DIRECTION = "MLOPS_OBJECTIVE_DIRECTION"
    OBJECTIVE_MARGIN = "MLOPS_OBJECTIVE_MARGIN"
    MODEL_MAX_BYTES = "MLOPS_MODEL_MAX_BYTES"
    """collect-training: the most a model (or output/data) may hold, apparent size in bytes."""
    BASELINE_MAX_ROWS = "MLOPS_BASELINE_MAX_ROWS"
    """stage-training: the most rows of a channel its baseline reads (default 1,000,000)."""
    CHANNEL_MAX_BYTES = "MLOPS_CHANNEL_MAX_BYTES"
    """stage-training: the most the S3 channels of a run may hold together, in bytes (default
    10 GiB); measured from the listing, before anything is downloaded."""
    ARTIFACTS_BUCKET = "MLOPS_ARTIFACTS_BUCKET"
    """gate, finish-rollout, export-model: the stack's artifact bucket, where each model made
    current is exported as `models/<RUN_ID>/model.tar.gz`; unset: nothing is exported."""
    ARTIFACTS_KEEP = "MLOPS_ARTIFACTS_KEEP"
    """The newest runs kept under the bucket's models/ (default 10); older ones are deleted."""
    CAPTURE_PORT = "MLOPS_CAPTURE_PORT"
    """capture-proxy: where it listens in the serving task."""
    CAPTURE_UPSTREAM_PORT = "MLOPS_CAPTURE_UPSTREAM_PORT"
    """capture-proxy: the workload's server on 127.0.0.1."""
    CAPTURE_PERCENT = "MLOPS_CAPTURE_PERCENT"
    """capture-proxy: the share of POST /invocations recorded, 0-100."""
    CAPTURE_NAME = "MLOPS_CAPTURE_NAME"
    """capture-proxy: its directory under capture/ (the endpoint's name in SageMaker's layout)."""
    CAPTURE_MAX_BYTES = "MLOPS_CAPTURE_MAX_BYTES"
    """capture-proxy: the largest body recorded, per side."""
    # The platform's model monitor (`monitor`, docs/monitoring.md): what it compares and when it
    # reports drift. The objective it recomputes from ground truth is OBJECTIVE_KEY/DIRECTION.
    STACK = "MLOPS_STACK"
    """The stack's name: the `Stack` dimension of the monitor's CloudWatch metrics."""
    MONITOR_CHANNEL = "MLOPS_MONITOR_CHANNEL"
    """The training channel whose baseline requests are compared with (default: the first)."""
    MONITOR_THRESHOLD = "MLOPS_MONITOR_THRESHOLD"
    """A feature drifts past this distance from its baseline (default 0.1, as Model Monitor)."""
    MONITOR_THRESHOLDS = "MLOPS_MONITOR_THRESHOLDS"
    """JSON {feature: distance}: per-feature thresholds over MONITOR_THRESHOLD."""
    MONITOR_MIN_ROWS = "MLOPS_MONITOR_MIN_ROWS"
    """Fewer captured rows than this since the last check decide nothing (default 200)."""
    MONITOR_OUTPUT = "MLOPS_MONITOR_OUTPUT"
    """JSON {"field": ..., "baseline": ...}: the response field compared with a baseline feature
    (the model's predicted class with the training label); unset, outputs are only counted."""
    MONITOR_QUALITY_MARGIN = "MLOPS_MONITOR_QUALITY_MARGIN"
    """The live objective (from ground truth) may fall this far short of the model's own."""
    MONITOR_COOLDOWN_HOURS = "MLOPS_MONITOR_COOLDOWN_HOURS"
    """After a drift event, the same model sends no other for this long (default 24)."""
    CAPTURE_RETENTION_DAYS = "MLOPS_CAPTURE_RETENTION_DAYS"
    """monitor: capture/ hours older than this many days are deleted (0: kept forever)."""
    MONITOR_EVENTS = "MLOPS_MONITOR_EVENTS"
    """`eventbridge`: put the drift event on EVENT_BUS_NAME; unset: report only."""
    CHECKPOINT_SYNC_SECONDS = "MLOPS_CHECKPOINT_SYNC_SECONDS"
    """sync-checkpoints: how often /opt/ml/checkpoints is copied to the store (default 10)."""
    ROLLOUT = "MLOPS_ROLLOUT"
    """gate: `1` when the service rolls out each promoted model; the gate then makes the run the
    candidate and `finish-rollout` makes it current once its rollout succeeded."""
    SERVE_RUN = "MLOPS_SERVE_RUN"
    """stage-serving: the run this task definition revision serves (a rollout's pinned revision);
    unset, the run models/CURRENT names."""
    ROLLOUT_STATUS = "MLOPS_ROLLOUT_STATUS"
    """finish-rollout: `succeeded` or `failed`."""
    ROLLOUT_REASON = "MLOPS_ROLLOUT_REASON"
    SERVICE_DEPLOYMENT = "MLOPS_SERVICE_DEPLOYMENT"
    """finish-rollout: the ECS service deployment's ARN, for the record."""
    TASK_STOP = "MLOPS_TASK_STOP"
    """record-failure: how the failed task stopped, JSON {stop_code, stopped_reason, exit_codes}."""
    FAILED_STEP = "MLOPS_FAILED_STEP"
    SWEEP = "MLOPS_SWEEP"
    """pick-trial: the sweep's plan, JSON {trials: [{id, hyperparameters}], tolerated_failures}."""
    TASK_TOKEN = "MLOPS_TASK_TOKEN"
    """pick-trial: the Step Functions task token it returns the chosen trial with."""
    # SageMaker's own names, as its training toolkit reads them.
    SM_MODEL_DIR = "SM_MODEL_DIR"
    SM_CHANNEL_PREFIX = "SM_CHANNEL_"
    SM_OUTPUT_DATA_DIR = "SM_OUTPUT_DATA_DIR"
    TRAINING_JOB_NAME = "TRAINING_JOB_NAME"
    """SageMaker's name of the training job; here the run's id."""
    # ECS's own, in every container of a task (ECS Developer Guide, "Amazon ECS task metadata
    # endpoint version 4").
    ECS_METADATA = "ECS_CONTAINER_METADATA_URI_V4"


RESERVED_ENV = (
    Env.RUN_ID,
    Env.RUN_DATE,
    Env.TRIGGER,
    Env.IMAGE_DIGEST,
    Env.TRIGGER_IMAGE_DIGEST,
    Env.STORE_DIR,
)
RESERVED_ENV_PREFIXES = ("SM_", "MLOPS_")
"""Set by the platform in the workload's containers; a workload may not set them itself."""


# ------------------------------------------------------------------------------ /opt/ml
ML_MOUNT = "/opt/ml"
"""Where SageMaker's layout is (SageMaker Developer Guide, "your-algorithms-training-algo" and
"your-algorithms-inference-code")."""


@dataclass(frozen=True)
class MlLayout:
    """SageMaker's `/opt/ml` under `root`: what training reads and writes, what serving loads."""

    root: Path = Path(ML_MOUNT)

    @property
    def input_data(self) -> Path:
        """`input/data/<channel>/`: each channel's files (File mode)."""
        return self.root / "input" / "data"

    def channel(self, name: str) -> Path:
        return self.input_data / name

    @property
    def config(self) -> Path:
        return self.root / "input" / "config"

    @property
    def hyperparameters(self) -> Path:
        """Every value a string."""
        return self.config / "hyperparameters.json"

    @property
    def input_data_config(self) -> Path:
        return self.config / "inputdataconfig.json"

    @property
    def resource_config(self) -> Path:
        """`current_host`, `hosts`."""
        return self.config / "resourceconfig.json"

    @property
    def model(self) -> Path:
        """What training leaves here is the model; what serving loads."""
        return self.root / "model"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def failure(self) -> Path:
        """Why training failed (a non-zero exit is a failure either way)."""
        return self.output / "failure"

    @property
    def output_data(self) -> Path:
        """What training leaves beside its model (`SM_OUTPUT_DATA_DIR`): kept with the run."""
        return self.output / "data"

    @property
    def checkpoints(self) -> Path:
        """Where training checkpoints (SageMaker syncs it and restores it on a Spot restart)."""
        return self.root / "checkpoints"

    @property
    def code(self) -> Path:
        """The image's own code (SageMaker's training toolkit runs the user script from here):
        never a platform volume, so what the image ships stays visible."""
        return self.root / "code"

    @property
    def platform_paths(self) -> tuple[Path, ...]:
        """What the platform provides in a training task, each its own task volume; everything
        else under /opt/ml is the image's."""
        return (self.root / "input", self.model, self.output, self.checkpoints)


def sagemaker_environment(channels: Mapping[str, object] | None = None) -> dict[str, str]:
    """SageMaker's variables pointing into `/opt/ml`: SM_MODEL_DIR for a server; for a training
    container (`channels` given) also SM_OUTPUT_DATA_DIR and SM_CHANNEL_<NAME> per channel
    (upper-cased), as SageMaker's training toolkit sets them."""
    layout = MlLayout()
    if channels is None:
        return {Env.SM_MODEL_DIR: str(layout.model)}
    return {
        Env.SM_MODEL_DIR: str(layout.model),
        Env.SM_OUTPUT_DATA_DIR: str(layout.output_data),
        **{
            f"{Env.SM_CHANNEL_PREFIX}{name.upper()}": str(layout.channel(name)) for name in channels
        },
    }


# ------------------------------------------------------------------------------ the store
STORE_MOUNT = "/mnt/store"
"""Where the shared store (EFS through its access point) is mounted in a container."""
MODELS = "models"
"""`models/<run_id>/`: one run's model files and the platform's records."""
CURRENT = "CURRENT"
"""`models/CURRENT`: the promoted run id, the only truth about which model serves."""
REPORT_FILE = "report.json"
"""The platform's record of a collected training run (`models/<run_id>/report.json`)."""
DECISION_FILE = "decision.json"
"""The gate's decision on a run (`models/<run_id>/decision.json`)."""
SWEEP_FILE = "sweep.json"
"""A sweep's record (`models/<the execution's run id>/sweep.json`, pick-trial): every trial with
its hyperparameters and objective or failure, and the one chosen; the trials' own runs are
`models/<the execution's run id>-<trial id>/`."""
BASELINE_DIR = "baseline"
"""`models/<run_id>/baseline/<channel>/`: statistics.json and constraints.json of the training
data (collect-training, from what stage-training staged)."""

MODEL_ARCHIVE = "model.tar.gz"
"""A run's model files as SageMaker keeps a model artifact (gzip tar, the files at its root), in
the stack's artifact bucket at `models/<run_id>/model.tar.gz`, `report.json` and
`decision.json` beside it."""
RECORDS = frozenset({REPORT_FILE, DECISION_FILE, BASELINE_DIR})
"""The platform's records at the top of a run directory: never part of the model (a copy of
the model skips a path whose first part is one of them)."""
CAPTURE = "capture"
"""`capture/<name>/AllTraffic/yyyy/mm/dd/hh/*.jsonl`: the serving task's recorded requests and
responses (capture-proxy), in SageMaker's data-capture format."""
CHECKPOINTS = "checkpoints"
"""`checkpoints/<run_id>/`: a training's /opt/ml/checkpoints, kept while the run trains so that a
retried task of the same run resumes from it (sync-checkpoints, stage-training)."""
MONITORING = "monitoring"
"""`monitoring/`: the monitors' records. The platform's model monitor keeps `monitoring/model/`:
state.json (how far it read), history.jsonl (one line a check), reports/<time>.json."""
MODEL_MONITOR = f"{MONITORING}/model"
GROUND_TRUTH = "ground-truth"
"""`ground-truth/**/*.jsonl`: labels for captured requests, in SageMaker Model Monitor's ground
truth format ({"groundTruthData": {"data", "encoding"}, "eventMetadata": {"eventId"},
"eventVersion": "0"}), joined with capture/ by event id."""
OUTPUTS = "outputs"
"""`outputs/<run_id>/data/`: what the training left in /opt/ml/output/data, kept with the run."""
GATE_LOCK = ".gate.lock"
"""`models/.gate.lock`: held while a gate compares and swaps CURRENT."""
MAX_CURRENT_BYTES = 256
KEPT_EXIT = 3
"""The platform gate's exit code when it decided and kept the current model (0: promoted; any
other: no decision). Step Functions fails an ECS task on any non-zero exit, so the pipeline tells
the two apart by this code in the failure's cause."""
"""models/CURRENT holds one run id (at most 128 characters) and a newline."""


# ------------------------------------------------------------------------------ run ids
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""Run ids name directories in the store: no `/`, not starting with `.`, at most 128."""
_RUN_ID = re.compile(RUN_ID_PATTERN)


def is_run_id(value: str) -> bool:
    return bool(_RUN_ID.match(value))


def check_run_id(value: str) -> str:
    """`value` when it is safe to use as a run directory's name, else ValueError saying why."""
    if not _RUN_ID.match(value):
        raise ValueError(
            f"invalid run id {value!r}: use letters, digits, '.', '_' and '-' "
            "(at most 128 characters, not starting with '.')"
        )
    return value


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, timestamp-based run id such as `20261122T010203Z`."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


# ------------------------------------------------------------------------------ atomic writes
def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable; not every file system lets a directory be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` so that a reader sees the old or the new content, never a
    mix: a temp file `.<name>.<random>.tmp` in the same directory, fsynced, then renamed over
    it. The temp file is removed on any error, which propagates as it was raised."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


# ------------------------------------------------------------------------------ CURRENT
class DamagedCurrent(ValueError):
    """models/CURRENT exists but does not hold one run id: damage from outside the platform."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path} is damaged: {problem}")
        self.path = path
        self.problem = problem


def read_current(models: Path) -> str | None:
    """The run id models/CURRENT names, None when nothing is promoted yet; DamagedCurrent when
    it is not a regular file, is empty, oversized or undecodable, or is not a run id."""
    path = models / CURRENT
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DamagedCurrent(path, "not a regular file")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_CURRENT_BYTES + 1)
    if len(data) > MAX_CURRENT_BYTES:
        raise DamagedCurrent(path, f"larger than {MAX_CURRENT_BYTES} bytes")
    if not data.strip():
        raise DamagedCurrent(path, "empty (it should hold a run id)")
    try:
        run_id = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise DamagedCurrent(path, f"not a run id (undecodable bytes {data[:16]!r})") from None
    if not _RUN_ID.match(run_id):
        raise DamagedCurrent(path, f"not a run id ({run_id[:40]!r})")
    return run_id


def write_current(models: Path, run_id: str) -> None:
    """Point models/CURRENT at `run_id`, atomically (servers and staging read it next)."""
    atomic_write(models / CURRENT, (check_run_id(run_id) + "\n").encode())


# ------------------------------------------------------------------------------ the gate lock
_IN_PROCESS = threading.Lock()
"""POSIX record locks belong to the process: threads of one process queue here first."""


@contextlib.contextmanager
def gate_lock(models: Path) -> Iterator[None]:
    """Hold the store's exclusive gate lock while inside: a POSIX record lock (`lockf`) on
    models/.gate.lock, which EFS honours across hosts (NFSv4.1 byte-range locks) and the kernel
    drops when the holder dies. Every gate, the platform's and a workload's, takes this one."""
    models.mkdir(parents=True, exist_ok=True)
    with _IN_PROCESS:
        fd = os.open(models / GATE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
