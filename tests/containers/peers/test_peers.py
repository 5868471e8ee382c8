"""The peers' image standalone, as SageMaker runs it: `/opt/ml` laid out by hand, `<image> train`
through AWS's training toolkit, then MLflow's scoring server on the model it saved. Nothing of the
platform runs here: these are the facts the platform has to meet (tests/containers/peers)."""

from __future__ import annotations

import collections
import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.containers import byoc_sample, peers

pytestmark = pytest.mark.containers

# As a SageMaker CreateTrainingJob writes them: every value a string.
HYPERPARAMETERS = {"C": "0.5", "max-iter": "200"}
JOB = "peers-job-1"
TRAINING_CLIENT_ERROR_EXIT = 1  # trainer.DEFAULT_FAILURE_CODE, whatever the script exited with
UID = 10001  # the platform's default `workload.security.user`


def docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exit {result.returncode}:\n{result.stderr}")
    return result


def write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value))


def opt_ml(root: Path, hosts: list[str], owner: int | None = None) -> Path:
    """SageMaker's `/opt/ml` for one training job, in `root`: the `train` channel, the three config
    files, and empty `model/` and `output/` (owned by `owner` when given)."""
    peers.write_dataset(root / "input" / "data" / peers.CHANNEL)
    config = root / "input" / "config"
    config.mkdir(parents=True)
    write_json(config / "hyperparameters.json", HYPERPARAMETERS)
    write_json(
        config / "inputdataconfig.json",
        {
            peers.CHANNEL: {
                "ContentType": "text/csv",
                "TrainingInputMode": "File",
                "S3DistributionType": "FullyReplicated",
                "RecordWrapperType": "None",
            }
        },
    )
    write_json(
        config / "resourceconfig.json",
        {"current_host": hosts[0], "hosts": hosts, "network_interface_name": "eth0"},
    )
    for name in ("model", "output"):
        (root / name).mkdir()
        if owner is not None:
            os.chown(root / name, owner, -1)
    return root


def job_flags(ml: Path, program: str = peers.PROGRAM) -> list[str]:
    """Mounts and variables of a SageMaker training container; the image's /opt/ml/code stays."""
    return [
        "-v", f"{ml / 'input'}:/opt/ml/input:ro",
        "-v", f"{ml / 'model'}:/opt/ml/model",
        "-v", f"{ml / 'output'}:/opt/ml/output",
        "-e", f"SAGEMAKER_PROGRAM={program}",
        "-e", f"TRAINING_JOB_NAME={JOB}",
    ]  # fmt: skip


def train(
    image: str, ml: Path, *flags: str, program: str = peers.PROGRAM
) -> subprocess.CompletedProcess:
    return docker(
        "run", "--rm", *flags, *job_flags(ml, program), image, *peers.TRAIN_COMMAND, check=False
    )


def logs(name: str) -> str:
    result = docker("logs", name, check=False)
    return result.stdout + result.stderr


def wait_for_log(name: str, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while text not in (seen := logs(name)):
        assert time.monotonic() < deadline, f"no {text!r} in {name}'s log:\n{seen}"
        time.sleep(0.25)
    return seen


@pytest.fixture(scope="module")
def trained(
    peer_image: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess]:
    """One training job as SageMaker runs it: root, host `algo-1` (Docker puts the name in
    /etc/hosts, as SageMaker's local mode does)."""
    ml = opt_ml(tmp_path_factory.mktemp("trained"), hosts=["algo-1"])
    started = time.monotonic()
    result = train(peer_image, ml, "--hostname", "algo-1")
    print(f"train: exit {result.returncode} in {time.monotonic() - started:.1f} s")
    return ml, result


def test_train_runs_the_script_with_hyperparameters_as_arguments(
    trained: tuple[Path, subprocess.CompletedProcess],
) -> None:
    ml, result = trained
    log = result.stdout + result.stderr  # the toolkit logs to stderr, the script to stdout
    assert result.returncode == 0, log
    assert (
        "Invoking script with the following command:\n\n"
        "/opt/venv/bin/python3 -- train.py -C 0.5 --max-iter 200\n"
    ) in log
    for variable in (
        f"SM_CHANNEL_TRAIN=/opt/ml/input/data/{peers.CHANNEL}",
        "SM_MODEL_DIR=/opt/ml/model",
        "SM_CURRENT_HOST=algo-1",
        'SM_HPS={"C":0.5,"max-iter":200}',
    ):
        assert variable in log
    assert f'"job_name": "{JOB}"' in log
    metrics = json.loads((ml / "model" / peers.OBJECTIVE_FILE).read_text())
    assert (metrics["C"], metrics["max_iter"]) == (0.5, 200)
    assert metrics[peers.OBJECTIVE_KEY] >= 0.9


def test_train_saves_an_mlflow_model_as_the_model_dir_itself(
    trained: tuple[Path, subprocess.CompletedProcess],
) -> None:
    ml, _ = trained
    model = ml / "model"
    assert sorted(p.name for p in model.iterdir()) == [
        "MLmodel", "conda.yaml", "metrics.json", "model.skops", "python_env.yaml",
        "requirements.txt",
    ]  # fmt: skip
    mlmodel = yaml.safe_load((model / "MLmodel").read_text())
    assert mlmodel["mlflow_version"] == "3.18.0"
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "mlflow.sklearn"
    assert mlmodel["flavors"]["sklearn"]["sklearn_version"] == "1.9.1"
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    requirements = (model / "requirements.txt").read_text().split()
    assert {"mlflow==3.18.0", "scikit-learn==1.9.1", "pandas==3.1.2"} <= set(requirements)
    # All the toolkit itself writes: the success marker (no output/data, no intermediate/).
    assert [p.name for p in (ml / "output").iterdir()] == ["success"]


def test_a_failing_script_exits_1_and_the_failure_file_has_no_traceback(
    peer_image: str, tmp_path: Path
) -> None:
    ml = opt_ml(tmp_path / "ml", hosts=["algo-1"])
    result = train(peer_image, ml, "--hostname", "algo-1", program=peers.FAILING_PROGRAM)
    assert result.returncode == TRAINING_CLIENT_ERROR_EXIT
    # The toolkit runs the script without capturing stderr, so the failure text (the first
    # 1024 characters become SageMaker's FailureReason) names only the command and its exit code.
    assert (ml / "output" / "failure").read_text() == (
        "ExecuteUserScriptError:\n"
        "ExitCode 1\n"
        'ErrorMessage ""\n'
        'Command "/opt/venv/bin/python3 -- fail.py -C 0.5 --max-iter 200"'
    )
    assert "RuntimeError: this training fails on purpose" in result.stderr
    assert "sagemaker-training-toolkit ERROR    Reporting training FAILURE" in result.stderr
    assert [p.name for p in (ml / "output").iterdir()] == ["failure"]
    assert not any((ml / "model").iterdir())


def test_the_exit_code_says_only_who_failed_the_failure_file_says_how(
    peer_image: str, tmp_path: Path
) -> None:
    # A script's own exit code reaches the failure text, not the container's exit code. The
    # script here is submitted source over the image's /opt/ml/code, as SageMaker mounts it.
    code = tmp_path / "code"
    code.mkdir()
    (code / "exit3.py").write_text("import sys\nsys.exit(3)\n")
    ml = opt_ml(tmp_path / "ml", hosts=["algo-1"])
    result = train(peer_image, ml, "--hostname", "algo-1", "-v", f"{code}:/opt/ml/code:ro",
                   program="exit3.py")  # fmt: skip
    assert result.returncode == TRAINING_CLIENT_ERROR_EXIT
    assert (
        (ml / "output" / "failure").read_text().startswith("ExecuteUserScriptError:\nExitCode 3\n")
    )
    # An error of the toolkit's own (here: no resourceconfig.json) exits with the error's errno.
    broken = opt_ml(tmp_path / "broken", hosts=["algo-1"])
    (broken / "input" / "config" / "resourceconfig.json").unlink()
    result = train(peer_image, broken, "--hostname", "algo-1")
    failure = (broken / "output" / "failure").read_text()
    assert result.returncode == 2
    assert failure.startswith("Framework Error: \nTraceback (most recent call last):")
    assert failure.endswith(
        "[Errno 2] No such file or directory: '/opt/ml/input/config/resourceconfig.json'"
    )


def test_train_as_uid_10001_on_a_read_only_root_writes_only_model_output_and_tmp(
    peer_image: str, tmp_path: Path
) -> None:
    without_tmp = opt_ml(tmp_path / "no-tmp", hosts=["algo-1"], owner=UID)
    result = train(
        peer_image, without_tmp, "--user", str(UID), "--read-only", "--hostname", "algo-1"
    )
    # The toolkit needs no /tmp; MLflow's requirement inference does, and falls back quietly.
    assert result.returncode == 0, result.stderr
    assert "Encountered an unexpected error while inferring pip requirements" in result.stderr
    assert "numpy==" not in (without_tmp / "model" / "requirements.txt").read_text()

    ml = opt_ml(tmp_path / "ml", hosts=["algo-1"], owner=UID)
    result = train(
        peer_image, ml, "--user", str(UID), "--read-only", "--tmpfs", "/tmp", "--hostname", "algo-1"
    )
    assert result.returncode == 0, result.stderr
    assert "inferring pip requirements" not in result.stderr
    assert "numpy==2.4.6" in (ml / "model" / "requirements.txt").read_text().split()
    assert {p.stat().st_uid for p in (ml / "model").iterdir()} == {UID}
    assert [p.name for p in (ml / "output").iterdir()] == ["success"]


def start_server(image: str, model: Path, *flags: str) -> tuple[str, float]:
    """Run MLflow's serve command on `model` (read-only, as SageMaker mounts it); the
    container's name and the monotonic time just before `docker run`."""
    name = f"peers-serve-{secrets.token_hex(4)}"
    started = time.monotonic()
    docker(
        "run",
        "-d",
        "--name",
        name,
        "-p",
        f"127.0.0.1::{peers.PORT}",
        "-v",
        f"{model}:{peers.MODEL_DIR}:ro",
        *flags,
        image,
        *peers.SERVE_COMMAND,
    )
    return name, started


def wait_for_ping(name: str, started: float, timeout: float = 180) -> tuple[str, float, dict]:
    """Poll `/ping` until 200: the base URL, the seconds since `started`, and what came before
    (HTTP statuses, or the transport error while nothing listens behind Docker's port)."""
    host_port = docker("port", name, str(peers.PORT)).stdout.split()[0].rsplit(":", 1)[1]
    url = f"http://127.0.0.1:{host_port}"
    answers: collections.Counter[str] = collections.Counter()
    while True:
        try:
            status = httpx.get(url + peers.HEALTH_PATH, timeout=5).status_code
        except httpx.TransportError as error:
            status = type(error).__name__
        if status == 200:
            return url, time.monotonic() - started, dict(answers)
        answers[str(status)] += 1
        state = docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip()
        assert state == "running", f"{name} is {state}:\n{logs(name)}"
        assert time.monotonic() - started < timeout, logs(name)
        time.sleep(0.25)


def stop_server(name: str) -> tuple[int, str]:
    """`docker stop` (SIGTERM, then 20 s), then the exit code and the log; the container goes."""
    try:
        docker("stop", "-t", "20", name, check=False)
        code = docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        return int(code), logs(name)
    finally:
        docker("rm", "-f", name, check=False)


def predictions(url: str, body: str | dict) -> list[str]:
    if isinstance(body, str):
        answer = httpx.post(
            url + peers.INVOCATIONS_PATH,
            content=body,
            headers={"Content-Type": "text/csv"},
            timeout=30,
        )
    else:
        answer = httpx.post(url + peers.INVOCATIONS_PATH, json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


def test_mlflow_serves_the_trained_model_on_ping_and_invocations(
    peer_image: str, trained: tuple[Path, subprocess.CompletedProcess]
) -> None:
    ml, result = trained
    assert result.returncode == 0
    name, started = start_server(peer_image, ml / "model")
    try:
        url, seconds, before = wait_for_ping(name, started)
        print(f"serve: /ping 200 after {seconds:.1f} s; before it: {before}")
        rows = byoc_sample.dataset_rows(rows_per_class=10, seed=99)  # unseen rows
        header = ",".join(peers.FEATURES)
        csv = "\n".join([header, *(",".join(map(str, values)) for _, values in rows)]) + "\n"
        by_csv = predictions(url, csv)
        split = {
            "dataframe_split": {
                "columns": list(peers.FEATURES),
                "data": [values for _, values in rows],
            }
        }
        records = {
            "dataframe_records": [
                dict(zip(peers.FEATURES, values, strict=True)) for _, values in rows
            ]
        }
        assert predictions(url, split) == predictions(url, records) == by_csv
        assert sum(p == label for p, (label, _) in zip(by_csv, rows, strict=True)) >= 27
        # Without a header row the CSV's first row becomes the column names: the schema refuses.
        headerless = httpx.post(
            url + peers.INVOCATIONS_PATH,
            content=csv.split("\n", 1)[1],
            headers={"Content-Type": "text/csv"},
            timeout=30,
        )
        assert headerless.status_code == 400
        # nginx passes only /ping and /invocations; the scoring server's /health stays inside.
        assert httpx.get(url + "/health", timeout=5).status_code == 404
    finally:
        code, log = stop_server(name)
    assert code == 0, log  # MLflow's SIGTERM handler stops nginx and uvicorn, then exits 0
    assert "Got sigterm signal, exiting." in log


def test_serve_as_uid_10001_on_a_read_only_root_needs_nginx_dirs_writable(
    peer_image: str, trained: tuple[Path, subprocess.CompletedProcess], tmp_path: Path
) -> None:
    model = trained[0] / "model"
    name, _ = start_server(peer_image, model, "--user", str(UID), "--read-only", "--tmpfs", "/tmp")
    try:
        code = docker("wait", name, timeout=60).stdout.strip()
    finally:
        _, log = stop_server(name)
    assert code == "1", log
    # MLflow links nginx's logs to the container's streams after starting it (container/
    # __init__.py): the first write that fails, and it ends the server.
    assert (
        "CalledProcessError: Command '['ln', '-sf', '/dev/stdout', '/var/log/nginx/access.log']'"
        " returned non-zero exit status 1."
    ) in log

    writable = {"/var/log/nginx": tmp_path / "log", "/var/lib/nginx": tmp_path / "lib"}
    mounts = []
    for target, source in writable.items():
        source.mkdir()
        os.chown(source, UID, -1)
        mounts += ["-v", f"{source}:{target}"]
    name, started = start_server(
        peer_image, model, "--user", str(UID), "--read-only", "--tmpfs", "/tmp", *mounts
    )
    try:
        url, seconds, _ = wait_for_ping(name, started)
        print(f"serve as {UID}: /ping 200 after {seconds:.1f} s")
        assert predictions(
            url,
            {"dataframe_split": {"columns": list(peers.FEATURES), "data": [[5.0, 3.4, 1.5, 0.2]]}},
        ) == ["setosa"]
    finally:
        code, log = stop_server(name)
    assert code == 0, log
    # nginx's temp dirs (Debian's build puts them under /var/lib/nginx), made at every start.
    assert sorted(p.name for p in writable["/var/lib/nginx"].iterdir()) == [
        "body",
        "fastcgi",
        "proxy",
        "scgi",
        "uwsgi",
    ]
    assert {p.name: os.readlink(p) for p in writable["/var/log/nginx"].iterdir()} == {
        "access.log": "/dev/stdout",
        "error.log": "/dev/stderr",
    }


def test_an_unresolved_host_holds_the_toolkit_before_the_script(
    peer_image: str, tmp_path: Path
) -> None:
    """`algo-1` with nothing to resolve it: the toolkit retries the lookup for 15 minutes, and
    logs nothing while it does; a stack dump (faulthandler, on SIGABRT) shows where it waits."""
    ml = opt_ml(tmp_path / "ml", hosts=["algo-1"])
    name = f"peers-dns-{secrets.token_hex(4)}"
    docker(
        "run",
        "-d",
        "--name",
        name,
        "-e",
        "PYTHONFAULTHANDLER=1",
        *job_flags(ml),
        peer_image,
        *peers.TRAIN_COMMAND,
    )
    try:
        wait_for_log(name, "abandoning unzipping sourcedir.tar.gz")  # just before the lookups
        lookup = docker(
            "exec",
            name,
            "python",
            "-c",
            "import socket; socket.gethostbyname('algo-1')",
            check=False,
        )
        assert "socket.gaierror" in lookup.stderr
        own = docker(
            "exec",
            name,
            "python",
            "-c",
            "import socket; print(socket.gethostbyname(socket.gethostname()))",
        )
        assert own.stdout.strip()  # the container's own name resolves (Docker's /etc/hosts)
        time.sleep(3)
        docker("kill", "--signal", "ABRT", name)
        log = wait_for_log(name, "Current thread")
        print(lookup.stderr.strip().splitlines()[-1])
    finally:
        docker("rm", "-f", name, check=False)
    assert "sagemaker_training/entry_point.py" in log
    assert "in _wait_hostname_resolution" in log
    assert "retrying.py" in log
    assert "Invoking user script" not in log
    assert not any((ml / "model").iterdir())
    assert not any((ml / "output").iterdir())


def test_the_own_hostname_resolves_and_a_joined_container_shares_it(
    peer_image: str, tmp_path: Path
) -> None:
    """ECS's awsvpc mode has no `hostname` or `extraHosts`; Docker's nearest is a container
    joined to another's network (`--network container:X`, as preflight/run_local.py runs a
    task): it gets X's hostname and /etc/hosts, so a `resourceconfig.json` naming that host
    resolves."""
    holder = f"peers-holder-{secrets.token_hex(4)}"
    docker("run", "-d", "--name", holder, peer_image, "sleep", "600")
    try:
        hostname = docker("inspect", "-f", "{{.Config.Hostname}}", holder).stdout.strip()
        hosts_file = docker("exec", holder, "cat", "/etc/hosts").stdout
        joined = docker(
            "run",
            "--rm",
            "--network",
            f"container:{holder}",
            peer_image,
            "python",
            "-c",
            "import socket; print(socket.gethostname()); print(open('/etc/hosts').read(), end='')",
        )
        assert joined.stdout == f"{hostname}\n{hosts_file}"
        assert f"\t{hostname}\n" in hosts_file
        refused = docker(
            "run",
            "--rm",
            "--network",
            f"container:{holder}",
            "--hostname",
            "algo-1",
            peer_image,
            "true",
            check=False,
        )
        assert "conflicting options: hostname and the network mode" in refused.stderr

        ml = opt_ml(tmp_path / "ml", hosts=[hostname])
        result = train(peer_image, ml, "--network", f"container:{holder}")
    finally:
        docker("rm", "-f", holder, check=False)
    assert result.returncode == 0, result.stderr
    assert f"SM_CURRENT_HOST={hostname}" in result.stderr
    assert (ml / "model" / "MLmodel").is_file()
