"""The platform's model monitor (`python -m mlops_platform monitor`), against a store laid out as
the pipeline and the capture proxy leave it: a promoted run with the baseline stage-training
computed from the digits example's own data (64 pixels and the label), captured /invocations in
SageMaker's format. The distance is checked against scipy's two-sample Kolmogorov-Smirnov test,
the metrics against CloudWatch's Embedded Metric Format specification, the event against the
stack's own drift rule in moto's EventBridge."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from tests.platform.conftest import PLATFORM, Env

sys.path.insert(0, str(PLATFORM))
from mlops_platform import drift
from mlops_platform.baseline import write_baseline

DIGITS = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets/data/digits.csv.gz"
OUTPUT = json.dumps({"field": "class", "baseline": "_c64"})
HOUR = "2026/12/08/02"


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The digits split at random (seeded): 1,200 rows to train on, the rest held out."""
    with gzip.open(DIGITS) as handle:
        table = np.loadtxt(handle, delimiter=",").astype(int)
    order = np.random.default_rng(7).permutation(len(table))
    return table[order[:1200]], table[order[1200:]][:, :64], table[order[1200:]][:, 64]


def _promoted(env: Env, train: np.ndarray, objective: float = 0.95) -> Path:
    channel = env.store / "datasets" / "digits"
    channel.mkdir(parents=True)
    np.savetxt(channel / "train.csv", train, fmt="%d", delimiter=",")
    run = env.models / "r1"
    write_baseline({"train": channel}, run / "baseline", 1_000_000)
    (run / "decision.json").write_text(json.dumps({"promoted": True, "objective": objective}))
    (env.models / "CURRENT").write_text("r1\n")
    return run


def _capture(
    env: Env,
    rows: np.ndarray,
    classes: Any,
    name: str = "a.jsonl",
    hour: str = HOUR,
    per_request: int = 10,
) -> list[str]:
    """Requests of `per_request` CSV rows each, as capture.py writes them; their event ids."""
    directory = env.store / "capture" / "inference" / "AllTraffic" / hour
    directory.mkdir(parents=True, exist_ok=True)
    ids = []
    with (directory / name).open("a") as handle:
        for i in range(0, len(rows), per_request):
            chunk, answer = rows[i : i + per_request], classes[i : i + per_request]
            event = str(uuid.uuid4())
            ids.append(event)
            record = {
                "captureData": {
                    "endpointInput": {
                        "observedContentType": "text/csv",
                        "mode": "INPUT",
                        "data": "\n".join(",".join(map(str, r)) for r in chunk),
                        "encoding": "CSV",
                    },
                    "endpointOutput": {
                        "observedContentType": "application/json",
                        "mode": "OUTPUT",
                        "data": json.dumps({"predictions": [{"class": int(c)} for c in answer]}),
                        "encoding": "JSON",
                    },
                },
                "eventMetadata": {
                    "eventId": event,
                    "inferenceTime": f"{hour[:10].replace('/', '-')}T{hour[-2:]}:00:00Z",
                    "responseStatus": 200,
                },
                "eventVersion": "0",
            }
            handle.write(json.dumps(record) + "\n")
    return ids


def _history(env: Env) -> list[dict[str, Any]]:
    path = env.store / "monitoring" / "model" / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _monitor(env: Env, **extra: str) -> Any:
    return env.run("monitor", MLOPS_MONITOR_OUTPUT=OUTPUT, MLOPS_STACK="digits", **extra)


# --- the distance ------------------------------------------------------------------------------


def _reference(values: np.ndarray, tmp_path: Path) -> drift.Reference:
    channel = tmp_path / "channel"
    channel.mkdir(exist_ok=True)
    np.savetxt(channel / "x.csv", values.reshape(-1, 1), delimiter=",", fmt="%.17g")
    write_baseline({"c": channel}, tmp_path / "baseline", 10_000_000)
    return drift.load_baseline(tmp_path / "baseline" / "c").features[0]


@pytest.mark.parametrize("kind", ["continuous", "integers"])
def test_the_distance_is_scipys_two_sample_ks_statistic(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    if kind == "continuous":
        base, window = rng.normal(0, 1, 1500), rng.normal(0.2, 1.1, 300)
    else:  # many ties, as pixels 0-16
        base, window = rng.integers(0, 17, 1500), rng.integers(0, 15, 300)
    reference = _reference(base, tmp_path)
    expected = stats.ks_2samp(base, window).statistic
    assert drift.ks_distance(reference, [float(x) for x in window]) == pytest.approx(expected)


def test_above_the_sketchs_size_the_distance_is_within_its_rank_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    base, window = rng.lognormal(0, 1, 200_000), rng.lognormal(0.05, 1, 2000)
    reference = _reference(base, tmp_path)
    summary = json.loads((tmp_path / "baseline" / "c" / "statistics.json").read_text())
    assert summary["dataset"]["item_count"] == 200_000
    expected = stats.ks_2samp(base, window).statistic
    assert abs(drift.ks_distance(reference, list(window)) - expected) < 0.005


def test_the_critical_distance_is_scipys_asymptotic_bound_at_its_level() -> None:
    """At the critical distance, scipy's asymptotic two-sample p-value is at most the level
    (the bound is conservative) and not far below it."""
    for n, m, alpha in ((300, 1200, 0.01 / 64), (50, 100_000, 0.01), (5000, 5000, 0.001)):
        distance = drift.critical(n, m, alpha)
        p = stats.kstwobign.sf(distance * np.sqrt(n * m / (n + m)))
        assert alpha / 2 <= p <= alpha, (n, m, alpha, p)


def test_a_categorical_distance_is_the_largest_frequency_gap() -> None:
    reference = drift.Reference("colour", "String", 100, counts={"red": 50, "blue": 50})
    window = drift.Counter({"red": 20, "blue": 60, "green": 20})
    assert drift.linf_distance(reference, window) == pytest.approx(0.3)


# --- the command -------------------------------------------------------------------------------


def test_held_out_traffic_does_not_drift_and_inverted_pixels_do(digits, tmp_path: Path) -> None:
    train, held_images, held_labels = digits
    env = Env(tmp_path)
    _promoted(env, train)
    _capture(env, held_images[:400], held_labels[:400])
    calm = _monitor(env)
    assert calm.returncode == 0, calm.stderr
    assert "0 of 64 features drifted" in calm.stdout, calm.stdout

    _capture(env, 16 - held_images[:400], held_labels[:400], name="b.jsonl")
    shifted = _monitor(env)
    assert shifted.returncode == 0, shifted.stderr
    first, second = _history(env)
    assert first["decided"] and first["rows"] == 400 and first["drifted"] == []
    assert second["rows"] == 400, "the second check read only what came after the first"
    assert len(second["drifted"]) > 30, second["drifted"]
    assert second["event"]["id"] is None and "reported only" in second["event"]["note"]
    # The label the baseline carries is no request feature: reported as absent, never compared.
    assert second["absent"] == ["_c64"] and "_c64" not in second["features"]
    top = second["features"][second["drifted"][0]]
    assert top["distance"] > max(top["threshold"], top["critical"])
    report = env.store / "monitoring" / "model" / second["report"]
    assert json.loads(report.read_text())["drifted"] == second["drifted"]


def test_the_answers_are_compared_with_the_training_label(digits, tmp_path: Path) -> None:
    train, held_images, held_labels = digits
    env = Env(tmp_path)
    _promoted(env, train)
    _capture(env, held_images[:400], held_labels[:400])
    _capture(env, held_images[:400], np.full(400, 7), name="b.jsonl")  # a model stuck on 7
    assert _monitor(env).returncode == 0
    history = _history(env)[0]
    output = history["output"]
    assert output["field"] == "class" and output["baseline"] == "_c64"
    assert output["drift"] is True and output["distance"] > 0.3
    assert history["drifted"] == [], "the inputs are the held-out set's"


def test_too_few_rows_decide_nothing_and_wait_for_more(digits, tmp_path: Path) -> None:
    train, held_images, held_labels = digits
    env = Env(tmp_path)
    _promoted(env, train)
    _capture(env, held_images[:100], held_labels[:100])
    waiting = _monitor(env)
    assert "100 rows since the last decision, fewer than 200" in waiting.stdout
    _capture(env, held_images[100:250], held_labels[100:250])
    decided = _monitor(env)
    assert "250 rows of 25 records: 0 of 64 features drifted" in decided.stdout, decided.stdout


def test_a_half_written_line_is_read_once_it_is_complete(digits, tmp_path: Path) -> None:
    train, held_images, held_labels = digits
    env = Env(tmp_path)
    _promoted(env, train)
    _capture(env, held_images[:300], held_labels[:300])
    path = next((env.store / "capture").rglob("a.jsonl"))
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])
    assert "290 rows of 29 records" in _monitor(env, MLOPS_MONITOR_MIN_ROWS="20").stdout
    with path.open("ab") as handle:
        handle.write(lines[-1][40:])
    assert "10 rows of 1 records" in _monitor(env, MLOPS_MONITOR_MIN_ROWS="10").stdout


def test_bad_records_are_counted_not_fatal(digits, tmp_path: Path) -> None:
    train, held_images, held_labels = digits
    env = Env(tmp_path)
    _promoted(env, train)
    _capture(env, held_images[:300], held_labels[:300])
    path = next((env.store / "capture").rglob("a.jsonl"))
    binary = {
        "captureData": {"endpointInput": {"data": "AAEC", "encoding": "BASE64"}},
        "eventMetadata": {"eventId": "x", "responseStatus": 200},
    }
    failed = {
        "captureData": {"endpointInput": {"data": "1,2", "encoding": "CSV"}},
        "eventMetadata": {"eventId": "y", "responseStatus": 500},
    }
    with path.open("a") as handle:
        handle.write("not json\n" + json.dumps(binary) + "\n" + json.dumps(failed) + "\n")
    result = _monitor(env)
    assert result.returncode == 0, result.stderr
    line = _history(env)[0]
    assert line["malformed"] == 1 and line["not_ok"] == 1
    assert line["unreadable"] == {"encoding 'BASE64' is not read": 1}
    assert line["rows"] == 300


def test_no_model_or_no_baseline_is_said_not_failed(digits, tmp_path: Path) -> None:
    env = Env(tmp_path)
    result = _monitor(env)
    assert result.returncode == 0 and "no model is current" in result.stdout
    run = _promoted(env, digits[0])
    for path in (run / "baseline").rglob("*"):
        if path.is_file():
            path.unlink()
    (run / "baseline" / "train").rmdir()
    result = _monitor(env)
    assert "run r1 has no baseline of channel '(any)'" in result.stdout, result.stdout


def test_a_damaged_baseline_or_setting_is_refused_by_name(digits, tmp_path: Path) -> None:
    env = Env(tmp_path)
    run = _promoted(env, digits[0])
    bad = _monitor(env, MLOPS_MONITOR_THRESHOLD="2")
    assert bad.returncode == 1
    assert "MLOPS_MONITOR_THRESHOLD='2' must be a number from 1e-06 to 1" in bad.stderr
    (run / "baseline" / "train" / "statistics.json").write_text('{"features": 3}')
    damaged = _monitor(env)
    assert damaged.returncode == 1
    assert "train/statistics.json is not a baseline statistics file" in damaged.stderr


def test_the_metrics_are_embedded_metric_format(digits, tmp_path: Path) -> None:
    """Each stdout line is an EMF document as CloudWatch's specification requires: _aws with a
    millisecond Timestamp and CloudWatchMetrics directives, each with a Namespace, Dimensions
    (arrays of at most 30 names, each a top-level string member) and at most 100 Metrics whose
    names are top-level numeric members.
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html"""
    train, held_images, held_labels = digits
    env = Env(tmp_path)
    _promoted(env, train)
    _capture(env, 16 - held_images[:300], held_labels[:300])
    result = _monitor(env)
    documents = [json.loads(line) for line in result.stdout.splitlines()[:-1]]
    assert len(documents) == 64 + 1
    units = {"Seconds", "Microseconds", "Milliseconds", "Bytes", "Count", "Percent", "None"}
    for document in documents:
        meta = document["_aws"]
        assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1.7e12
        for directive in meta["CloudWatchMetrics"]:
            assert directive["Namespace"] == "mlops/ModelMonitor"
            for dimensions in directive["Dimensions"]:
                assert 1 <= len(dimensions) <= 30
                assert all(isinstance(document[name], str) for name in dimensions)
            assert 1 <= len(directive["Metrics"]) <= 100
            for metric in directive["Metrics"]:
                assert isinstance(document[metric["Name"]], int | float)
                assert metric.get("Unit", "None") in units
    features = {d["Feature"]: d["BaselineDrift"] for d in documents if "Feature" in d}
    assert features == {k: v["distance"] for k, v in _history(env)[0]["features"].items()}
    summary = documents[-1]
    assert summary["Stack"] == "digits" and summary["RowsChecked"] == 300
    assert summary["DriftedFeatures"] == len(_history(env)[0]["drifted"]) > 0


def test_ground_truth_gives_the_live_objective(digits, tmp_path: Path) -> None:
    """Labels in SageMaker's ground-truth format, joined by event id: a model whose answers are
    right 60 % of the time against a gate objective of 0.95 is more than the margin worse."""
    train, held_images, held_labels = digits
    env = Env(tmp_path)
    _promoted(env, train, objective=0.95)
    answers = held_labels[:300].copy()
    answers[::5] = (answers[::5] + 1) % 10
    answers[1::5] = (answers[1::5] + 1) % 10
    ids = _capture(env, held_images[:300], answers, per_request=1)
    truth = env.store / "ground-truth" / "2026" / "12" / "08" / "03" / "labels.jsonl"
    truth.parent.mkdir(parents=True)
    truth.write_text(
        "".join(
            json.dumps(
                {
                    "groundTruthData": {"data": str(label), "encoding": "CSV"},
                    "eventMetadata": {"eventId": event},
                    "eventVersion": "0",
                }
            )
            + "\n"
            for event, label in zip(ids, held_labels[:300], strict=True)
        )
    )
    result = _monitor(env, MLOPS_OBJECTIVE_KEY="accuracy", MLOPS_CAPTURE_RETENTION_DAYS="0")
    assert result.returncode == 0, result.stderr
    quality = _history(env)[0]["quality"]
    assert quality["joined"] == 300 and quality["live"] == pytest.approx(0.6)
    assert quality["drift"] is True and quality["drop"] == pytest.approx(0.35)
    assert any("live accuracy 0.6000" in r for r in _history(env)[0]["event"]["reasons"])


def test_capture_past_its_retention_is_deleted(digits, tmp_path: Path) -> None:
    train, held_images, held_labels = digits
    env = Env(tmp_path)
    _promoted(env, train)
    _capture(env, held_images[:10], held_labels[:10], hour="2020/01/01/00")
    _capture(env, held_images[:300], held_labels[:300])
    assert _monitor(env, MLOPS_CAPTURE_RETENTION_DAYS="30").returncode == 0
    base = env.store / "capture" / "inference" / "AllTraffic"
    assert not (base / "2020").exists()
    assert (base / HOUR).is_dir()
    assert _history(env)[0]["expired_hours"] == 1


def test_the_event_reaches_the_stacks_drift_rule_in_eventbridge(digits, tmp_path: Path) -> None:
    """moto's EventBridge as a server: the rule with the pattern the stack declares, an SQS queue
    as its target; the monitor (a child process, botocore) puts the event through the endpoint;
    a second drift within the cooldown sends none."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    from components.documents.triggers import drift_pattern
    from preflight.offline import run_stack

    rule = run_stack("dev").one("aws:cloudwatch/eventRule:EventRule", "training-on-drift")
    pattern = rule.inputs["eventPattern"]
    pattern = pattern if isinstance(pattern, str) else json.dumps(pattern)
    assert json.loads(pattern) == drift_pattern()

    train, held_images, held_labels = digits
    env = Env(tmp_path)
    _promoted(env, train)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{server._server.server_port}"
        aws = dict(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        sqs = boto3.client("sqs", endpoint_url=endpoint, **_lower(aws))
        events = boto3.client("events", endpoint_url=endpoint, **_lower(aws))
        queue = sqs.create_queue(QueueName="retrain")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        events.put_rule(Name="training-on-drift", EventPattern=pattern)
        events.put_targets(
            Rule="training-on-drift", Targets=[{"Id": "p", "Arn": arn["Attributes"]["QueueArn"]}]
        )
        env_events = dict(
            MLOPS_MONITOR_EVENTS="eventbridge",
            AWS_ENDPOINT_URL_EVENTBRIDGE=endpoint,
            AWS_REGION="us-east-1",
            **aws,
        )
        _capture(env, 16 - held_images[:300], held_labels[:300])
        sent = _monitor(env, **env_events)
        assert sent.returncode == 0, sent.stderr
        _capture(env, 16 - held_images[:300], held_labels[:300], name="b.jsonl")
        again = _monitor(env, **env_events)
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    finally:
        server.stop()
    (message,) = messages
    event = json.loads(message["Body"])
    assert event["source"] == "mlops.monitoring" and event["detail-type"] == "DataDriftDetected"
    assert event["detail"]["model_run_id"] == "r1" and event["detail"]["monitor"] == "platform"
    first, second = _history(env)
    assert first["event"]["id"] == event["id"] and event["id"] in sent.stdout
    assert second["event"]["id"] is None and "cooling down" in second["event"]["note"]
    assert "cooling down" in again.stdout


def _lower(aws: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": aws["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": aws["AWS_SECRET_ACCESS_KEY"],
        "region_name": aws["AWS_DEFAULT_REGION"],
    }


def test_a_failed_put_is_recorded_and_fails_the_task(digits, tmp_path: Path) -> None:
    train, held_images, held_labels = digits
    env = Env(tmp_path)
    _promoted(env, train)
    _capture(env, 16 - held_images[:300], held_labels[:300])
    result = _monitor(
        env,
        MLOPS_MONITOR_EVENTS="eventbridge",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL_EVENTBRIDGE="http://127.0.0.1:9",
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="y",
        AWS_MAX_ATTEMPTS="1",
    )
    assert result.returncode == 1
    assert "the drift event was not sent: EndpointConnectionError" in result.stdout
    line = _history(env)[0]
    assert line["drifted"] and "EndpointConnectionError" in line["event"]["error"]


def test_one_check_at_a_time(digits, tmp_path: Path) -> None:
    import fcntl

    env = Env(tmp_path)
    _promoted(env, digits[0])
    lock = env.store / "monitoring" / "model" / ".lock"
    lock.parent.mkdir(parents=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        result = _monitor(env)
    assert result.returncode == 0 and "another check is running" in result.stdout
    assert not (env.store / "monitoring" / "model" / "history.jsonl").exists()
    assert os.path.exists(lock)
