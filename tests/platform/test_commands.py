"""The platform's staging commands, each run as the container runs it (`python -m mlops_platform
<command>`, inputs from the environment) against a temporary store and a temporary directory
standing in for /opt/ml (MLOPS_ML_ROOT). The SageMaker layout they must produce is AWS's:
https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo.html
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mlops_contract import GATE_LOCK, gate_lock
from tests.platform.conftest import Env


# ------------------------------------------------------------------------------ stage-training
def test_stage_training_fills_the_sagemaker_layout(env: Env) -> None:
    (env.store / "datasets" / "train" / "sub").mkdir(parents=True)
    (env.store / "datasets" / "train" / "a.csv").write_text("1,2\n")
    (env.store / "datasets" / "train" / "sub" / "b.csv").write_text("3,4\n")
    (env.store / "holdout").mkdir()
    (env.store / "holdout" / "c.csv").write_text("5,6\n")
    # leftovers of an earlier attempt on the same volume must not reach this run
    (env.ml / "model").mkdir()
    (env.ml / "model" / "stale.bin").write_bytes(b"old")
    result = env.run(
        "stage-training", RUN_ID="r1",
        MLOPS_CHANNELS=json.dumps({"train": "datasets/train", "validation": "holdout"}),
        MLOPS_HYPERPARAMETERS=json.dumps({"max_depth": 4, "eta": 0.1, "name": "x", "on": True}),
    )
    assert result.returncode == 0, result.stderr
    data = env.ml / "input" / "data"
    assert (data / "train" / "a.csv").read_text() == "1,2\n"
    assert (data / "train" / "sub" / "b.csv").read_text() == "3,4\n"
    assert (data / "validation" / "c.csv").read_text() == "5,6\n"
    config = env.ml / "input" / "config"
    # SageMaker: every hyperparameter value is a string
    assert json.loads((config / "hyperparameters.json").read_text()) == {
        "max_depth": "4", "eta": "0.1", "name": "x", "on": "true"}
    assert set(json.loads((config / "inputdataconfig.json").read_text())) == {"train", "validation"}
    resource = json.loads((config / "resourceconfig.json").read_text())
    assert resource["current_host"] in resource["hosts"]
    assert list((env.ml / "model").iterdir()) == []
    assert (env.ml / "output").is_dir()


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        ({"train": "../outside"}, "escapes the store"),
        ({"train": "/etc"}, "relative to the store"),
        ({"train": "missing"}, "no such directory"),
        ({"../x": "datasets"}, "channel name"),
        ({"train": "link"}, "escapes the store"),
    ],
)
def test_stage_training_refuses_a_channel_outside_the_store(
    env: Env, channels: dict, message: str
) -> None:
    (env.store.parent / "outside").mkdir()
    (env.store.parent / "outside" / "secret").write_text("no")
    (env.store / "datasets").mkdir()
    (env.store / "link").symlink_to(env.store.parent / "outside")
    result = env.run("stage-training", RUN_ID="r1", MLOPS_CHANNELS=json.dumps(channels))
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (env.ml / "input" / "data" / "train" / "secret").exists()


def test_stage_training_refuses_a_symlink_out_of_the_store_inside_a_channel(env: Env) -> None:
    (env.store / "datasets").mkdir()
    (env.store.parent / "secret").write_text("no")
    (env.store / "datasets" / "leak").symlink_to(env.store.parent / "secret")
    result = env.run("stage-training", RUN_ID="r1", MLOPS_CHANNELS='{"train": "datasets"}')
    assert result.returncode == 1
    assert "symlink" in result.stderr
    assert not (env.ml / "input" / "data" / "train" / "leak").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"RUN_ID": "../x"}, "RUN_ID"),
        ({"MLOPS_HYPERPARAMETERS": "[1]"}, "MLOPS_HYPERPARAMETERS must be a JSON object"),
        ({"MLOPS_CHANNELS": "{"}, "MLOPS_CHANNELS is not JSON"),
        ({"MLOPS_HYPERPARAMETERS": "[" * 100_000}, "MLOPS_HYPERPARAMETERS nests more than 32"),
        ({"MLOPS_WORKLOAD_UID": "nobody"}, "MLOPS_WORKLOAD_UID"),
        ({"STORE_DIR": "/nonexistent/store"}, "STORE_DIR"),
    ],
)
def test_bad_environment_is_one_clear_line(env: Env, extra: dict, message: str) -> None:
    settings = {"RUN_ID": "r1", **extra}
    result = env.run("stage-training", **settings)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------ collect-training
def test_collect_moves_the_model_into_the_store_with_a_report(env: Env) -> None:
    env.train("r1", {"model.json": b'{"c": [1]}', "sub/extra.bin": b"\x00\x01"})
    result = env.collect("r1", MLOPS_TRAINING_EXIT="0")
    assert result.returncode == 0, result.stderr
    run = env.models / "r1"
    assert (run / "model.json").read_bytes() == b'{"c": [1]}'
    assert (run / "sub" / "extra.bin").read_bytes() == b"\x00\x01"
    report = json.loads((run / "report.json").read_text())
    import hashlib

    assert report["status"] == "trained"
    assert report["files"] == {
        "model.json": hashlib.sha256(b'{"c": [1]}').hexdigest(),
        "sub/extra.bin": hashlib.sha256(b"\x00\x01").hexdigest(),
    }
    assert report["exit_code"] == 0
    assert [p.name for p in env.models.iterdir() if p.name.endswith(".tmp")] == []


def test_a_retried_task_replaces_an_ungated_attempt_never_a_gated_one(env: Env) -> None:
    env.train("r1", {"model.json": b"{}"}, failure="Spot interruption")
    assert env.collect("r1", MLOPS_TRAINING_EXIT="143").returncode == 1
    env.train("r1", {"model.json": b'{"w": 2}', "metrics.json": b'{"accuracy": 0.9}'})
    retried = env.collect("r1", MLOPS_TRAINING_EXIT="0")
    assert retried.returncode == 0, retried.stderr
    report = json.loads((env.models / "r1" / "report.json").read_text())
    assert (report["status"], report["failure"]) == ("trained", None)
    assert (env.models / "r1" / "model.json").read_bytes() == b'{"w": 2}'
    assert sorted(p.name for p in env.models.iterdir()) == ["r1"]
    assert env.gate("r1").stdout.startswith("promoted run r1")
    retried_gate = env.gate("r1")  # a retried gate step keeps the decision
    assert retried_gate.returncode == 0
    assert retried_gate.stdout.startswith("promoted run r1 (decided earlier): first model")
    assert env.decision("r1")["promoted"] is True
    again = env.collect("r1")
    assert again.returncode == 1
    assert "already trained and gated" in again.stderr
    assert (env.models / "r1" / "model.json").read_bytes() == b'{"w": 2}'


def test_failure_file_is_reported_and_exits_1(env: Env) -> None:
    text = "ValueError: column 'label' missing\n" + "x" * (70 * 1024) + "\xff"
    env.train("r1", {"model.json": b"{}"}, failure=text)
    result = env.collect("r1", MLOPS_TRAINING_EXIT="1")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "collect-training: ValueError: column 'label' missing")
    report = json.loads((env.models / "r1" / "report.json").read_text())
    assert report["status"] == "failed"
    assert report["exit_code"] == 1
    assert report["failure"].startswith("ValueError: column 'label' missing")
    assert len(report["failure"].encode()) <= 64 * 1024


@pytest.mark.parametrize(
    ("files", "code", "message"),
    [({}, "0", "wrote no files"), ({"model.json": b"{}"}, "137", "exited with code 137")],
)
def test_empty_model_or_nonzero_exit_is_a_failure(
    env: Env, files: dict, code: str, message: str
) -> None:
    env.train("r1", files)
    result = env.collect("r1", MLOPS_TRAINING_EXIT=code)
    assert result.returncode == 1
    assert message in result.stderr.strip().splitlines()[-1]
    assert json.loads((env.models / "r1" / "report.json").read_text())["status"] == "failed"
    refused = env.gate("r1")
    assert refused.returncode == 3
    assert env.current() is None
    assert env.decision("r1")["promoted"] is False


# ------------------------------------------------------------------------------ gate
def test_first_run_promotes_worse_refused_better_by_margin_promoted(env: Env) -> None:
    env.trained("r1", 0.90)
    first = env.gate("r1", MLOPS_OBJECTIVE_MARGIN="0.01")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("promoted run r1")
    assert env.current() == "r1"
    assert env.decision("r1")["current_run"] is None

    env.trained("r2", 0.85)
    worse = env.gate("r2", MLOPS_OBJECTIVE_MARGIN="0.01")
    assert worse.returncode == 3  # KEPT_EXIT: decided, not promoted
    assert worse.stdout.startswith("refused run r2")
    assert worse.stdout.rstrip().endswith("models/CURRENT still names r1")
    assert env.current() == "r1"
    decision = env.decision("r2")
    assert (decision["promoted"], decision["objective"], decision["current_objective"],
            decision["current_run"]) == (False, 0.85, 0.90, "r1")

    env.trained("r3", 0.905)  # better, but not by the margin
    assert env.gate("r3", MLOPS_OBJECTIVE_MARGIN="0.01").stdout.startswith("refused")
    assert env.current() == "r1"

    env.trained("r4", 0.95)
    better = env.gate("r4", MLOPS_OBJECTIVE_MARGIN="0.01")
    assert better.stdout.startswith("promoted run r4")
    assert env.current() == "r4"
    assert env.decision("r4")["reason"]


def test_minimize_promotes_the_lower(env: Env) -> None:
    for run, loss in (("r1", 0.5), ("r2", 0.7), ("r3", 0.2)):
        env.train(run, {"m.bin": b"x", "eval.json": json.dumps({"loss": loss}).encode()})
        assert env.collect(run).returncode == 0
        env.gate(run, MLOPS_OBJECTIVE_FILE="eval.json", MLOPS_OBJECTIVE_KEY="loss",
                 MLOPS_OBJECTIVE_DIRECTION="minimize")
    assert [env.decision(r)["promoted"] for r in ("r1", "r2", "r3")] == [True, False, True]
    assert env.current() == "r3"


@pytest.mark.parametrize(
    "metrics", [b"not json", b'{"loss": 1}', b'{"accuracy": "high"}', b'{"accuracy": NaN}'])
def test_damaged_objective_is_refused_with_reason(env: Env, metrics: bytes) -> None:
    env.train("r1", {"model.json": b"{}", "metrics.json": metrics})
    assert env.collect("r1").returncode == 0
    result = env.gate("r1")
    assert result.returncode == 3
    assert result.stdout.startswith("refused run r1: no objective")
    assert env.current() is None
    assert env.decision("r1")["promoted"] is False


@pytest.mark.parametrize(("content", "message"), [
    ("../../etc\n", "models/CURRENT is damaged"), ("ghost\n", "models/ghost/ does not exist")])
def test_damaged_current_is_named(env: Env, content: str, message: str) -> None:
    env.trained("r1", 0.9)
    (env.models / "CURRENT").write_text(content)
    gated = env.gate("r1")
    assert gated.returncode == 1
    assert message in gated.stderr
    assert (env.models / "CURRENT").read_text() == content
    served = env.run("stage-serving")
    assert served.returncode == 1
    assert message in served.stderr


@pytest.mark.parametrize(("extra", "message"), [
    ({"MLOPS_OBJECTIVE_DIRECTION": "up"}, "MLOPS_OBJECTIVE_DIRECTION"),
    ({"MLOPS_OBJECTIVE_MARGIN": "-1"}, "MLOPS_OBJECTIVE_MARGIN"),
    ({"MLOPS_OBJECTIVE_FILE": "../metrics.json"}, "MLOPS_OBJECTIVE_FILE"),
])
def test_bad_gate_settings_are_named(env: Env, extra: dict, message: str) -> None:
    env.trained("r1", 0.9)
    result = env.gate("r1", **extra)
    assert result.returncode == 1
    assert message in result.stderr
    assert env.current() is None


def _waiting_on(lock: Path, pid: int) -> bool:
    """Whether `pid` is blocked waiting for a lock on `lock` (the kernel's /proc/locks)."""
    inode = lock.stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields:
            fields = fields[fields.index("->") + 1:]
            if int(fields[3]) == pid and int(fields[4].split(":")[-1]) == inode:
                return True
    return False


@pytest.mark.slow
def test_concurrent_gates_serialise(env: Env) -> None:
    """Two better runs gated at once: each must compare with what the other promoted. The test
    holds the gate's lock until both gates are blocked on it (seen in /proc/locks), then lets go."""
    env.trained("r0", 0.80)
    assert env.gate("r0").returncode == 0
    env.trained("r1", 0.95)
    env.trained("r2", 0.90)
    lock = env.models / GATE_LOCK
    # Held as every gate holds it, the app's included (a POSIX record lock; an flock would not
    # exclude it on a local file system).
    with gate_lock(env.models):
        gates = [env.popen("gate", RUN_ID=run, MLOPS_OBJECTIVE_KEY="accuracy",
                           MLOPS_OBJECTIVE_DIRECTION="maximize") for run in ("r1", "r2")]
        deadline = time.monotonic() + 60
        while not all(_waiting_on(lock, gate.pid) for gate in gates):
            assert all(gate.poll() is None for gate in gates), "a gate ran without the lock"
            assert time.monotonic() < deadline, "the gates never waited for the lock"
            time.sleep(0.05)
        assert env.current() == "r0"
    for gate in gates:
        _, err = gate.communicate(timeout=60)
    decisions = {run: env.decision(run) for run in ("r1", "r2")}
    # Each exits by its decision: 0 promoted, 3 kept.
    assert [gate.returncode for gate in gates] == [
        0 if decisions[run]["promoted"] else 3 for run in ("r1", "r2")], err
    # Whichever went first compared with r0; the second compared with what the first left.
    assert sorted(d["current_run"] for d in decisions.values()) in (["r0", "r1"], ["r0", "r2"])
    assert env.current() == "r1"
    assert decisions["r1"]["promoted"] is True


# ------------------------------------------------------------------------------ stage-serving
def test_stage_serving_before_any_promotion(env: Env) -> None:
    result = env.run("stage-serving")
    assert result.returncode == 1
    assert "no promoted model yet: run the pipeline first" in result.stderr


def test_stage_serving_copies_the_current_model_without_records(env: Env) -> None:
    env.trained("r1", 0.9)
    env.gate("r1")
    (env.ml / "model").mkdir(exist_ok=True)
    (env.ml / "model" / "stale").write_text("old")
    result = env.run("stage-serving")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (env.ml / "model").iterdir()) == ["metrics.json", "model.json"]
    assert (env.ml / "model" / "model.json").read_bytes() == b'{"w": 1}'


# ------------------------------------------------------------------------------ owners (as root)
@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root, as in the task")
def test_owners_follow_the_workload_and_the_store(env: Env) -> None:
    os.chown(env.store, 10001, 10001)  # the store as the forecaster's uid owns it on EFS
    (env.store / "datasets").mkdir()
    (env.store / "datasets" / "a.csv").write_text("1\n")
    staged = env.run("stage-training", RUN_ID="r1", MLOPS_CHANNELS='{"train": "datasets"}',
                     MLOPS_WORKLOAD_UID="10002")
    assert staged.returncode == 0, staged.stderr
    assert (env.ml / "model").stat().st_uid == 10002
    assert (env.ml / "output").stat().st_uid == 10002
    assert (env.ml / "input" / "data" / "train" / "a.csv").stat().st_mode & 0o004  # readable
    (env.ml / "model" / "m.bin").write_bytes(b"x")
    os.chmod(env.ml / "model" / "m.bin", 0o600)  # written by a root workload, private
    assert env.collect("r1").returncode == 0
    assert (env.models).stat().st_uid == 10001
    assert (env.models / "r1" / "m.bin").stat().st_uid == 10001


def test_a_non_root_stager_refuses_to_hand_files_to_another_uid(env: Env) -> None:
    if os.geteuid() == 0:
        pytest.skip("as root the owner change succeeds")
    result = env.run("stage-training", RUN_ID="r1", MLOPS_WORKLOAD_UID=str(os.getuid() + 1))
    assert result.returncode == 1
    assert "not root" in result.stderr


# ------------------------------------------------------------------------------ SageMaker's layout
def test_staging_leaves_the_images_own_code_and_gives_the_workload_its_directories(
    env: Env,
) -> None:
    """SageMaker provides input, model, output (with output/data) and checkpoints and leaves the
    rest of the image's /opt/ml (its code/) in place (SageMaker Developer Guide, "How Amazon
    SageMaker AI Runs Your Training Image")."""
    (env.ml / "code").mkdir()
    (env.ml / "code" / "train.py").write_text("print('user code')\n")
    result = env.run("stage-training", RUN_ID="r1")
    assert result.returncode == 0, result.stderr
    assert (env.ml / "code" / "train.py").read_text() == "print('user code')\n"
    for path in ("model", "output", "output/data", "checkpoints"):
        assert (env.ml / path).is_dir(), path
        assert (env.ml / path).stat().st_uid == os.getuid(), path  # the workload's uid


def test_resourceconfig_names_a_host_that_resolves_here(env: Env) -> None:
    """SageMaker's training toolkit resolves every host in resourceconfig.json before it runs
    the user script (retrying for 15 minutes): the name must resolve inside the task."""
    import socket

    assert env.run("stage-training", RUN_ID="r1").returncode == 0
    config = json.loads((env.ml / "input" / "config" / "resourceconfig.json").read_text())
    assert config["hosts"] == [config["current_host"]]
    socket.gethostbyname(config["current_host"])  # raises if it does not resolve
    assert config["current_host"] in (socket.gethostname(), "localhost")


def test_output_data_is_kept_with_the_run(env: Env) -> None:
    env.train("r1", {"model.json": b"{}"})
    (env.ml / "output" / "data").mkdir(parents=True, exist_ok=True)
    (env.ml / "output" / "data" / "eval.csv").write_text("y,yhat\n1,1\n")
    result = env.collect("r1", MLOPS_TRAINING_EXIT="0")
    assert result.returncode == 0, result.stderr
    assert (env.store / "outputs" / "r1" / "data" / "eval.csv").read_text() == "y,yhat\n1,1\n"
    report = json.loads((env.models / "r1" / "report.json").read_text())
    assert list(report["output_data"]) == ["outputs/r1/data/eval.csv"]
    assert not (env.models / "r1" / "eval.csv").exists()  # never part of the model


class _Metadata:
    """A task metadata endpoint v4 stand-in: `/task` as ECS documents it (containers with Name,
    KnownStatus and, once stopped, ExitCode)."""

    def __init__(self, containers: list[dict]) -> None:
        import http.server
        import threading

        body = json.dumps({"Family": "t", "Containers": containers}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = self.path.endswith("/task")
                self.send_response(200 if ok else 404)
                self.end_headers()
                self.wfile.write(body if ok else b"{}")

            def log_message(self, *_args) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/v4/abc/collect-training"

    def close(self) -> None:
        self.server.shutdown()


def test_collect_reads_the_training_exit_code_from_the_task_metadata(env: Env) -> None:
    """A training that crashed after writing its metrics is a failed run: the exit code comes
    from the task metadata endpoint ECS gives every container."""
    env.train("r1", {"model.json": b"{}", "metrics.json": b'{"accuracy": 0.99}'})
    metadata = _Metadata(
        [
            {"Name": "stage-training", "KnownStatus": "STOPPED", "ExitCode": 0},
            {"Name": "train", "KnownStatus": "STOPPED", "ExitCode": 137},
            {"Name": "collect-training", "KnownStatus": "RUNNING"},
        ]
    )
    try:
        result = env.collect("r1", ECS_CONTAINER_METADATA_URI_V4=metadata.uri)
    finally:
        metadata.close()
    assert result.returncode == 1
    assert "training exited with code 137" in result.stderr
    report = json.loads((env.models / "r1" / "report.json").read_text())
    assert (report["status"], report["exit_code"]) == ("failed", 137)
    assert report["exit_code_from"] == "the task metadata endpoint"


def test_every_trained_run_is_promoted_without_an_objective(env: Env) -> None:
    env.train("r1", {"model.json": b"{}"})  # no metrics file at all
    assert env.collect("r1", MLOPS_TRAINING_EXIT="0").returncode == 0
    gated = env.run("gate", RUN_ID="r1", MLOPS_PROMOTION="every-trained-run")
    assert gated.returncode == 0, gated.stderr
    assert gated.stdout.startswith("promoted run r1")
    assert env.current() == "r1"
    env.train("r2", {"model.json": b"{}"}, failure="boom")
    env.collect("r2")
    gated = env.run("gate", RUN_ID="r2", MLOPS_PROMOTION="every-trained-run")
    assert gated.stdout.startswith("refused run r2") and env.current() == "r1"
