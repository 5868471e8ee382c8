"""`mlops:workload`: each bad value refused with key, value and what is allowed; no section means
the reference workload (workloads/forecaster.yaml); the old keys still work, with a warning."""

from __future__ import annotations

import copy
from typing import Any
from unittest import mock

import pulumi
import pytest
import yaml

from components.settings.stack import parse
from components.settings.workload import Contract, Direction, parse_workload
from preflight.offline import ROOT

FORECASTER = yaml.safe_load((ROOT / "workloads" / "forecaster.yaml").read_text())
DIGEST = "sha256:" + "a" * 64
BYOC = {
    "contract": "sagemaker",
    "image": {"build": {"context": "examples/digits"}},
    "training": {"channels": {"train": "datasets/digits"}},
    "objective": {"key": "accuracy"},
}


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return raw


def test_no_section_is_the_reference_workload_and_matches_the_app():
    workload = parse({}).workload
    assert workload == parse_workload(FORECASTER)
    assert workload.contract is Contract.PLATFORM
    # The app's commands (app/__main__.py) and its ports/paths (app/serving/server.py,
    # app/dashboard/page.py).
    assert workload.training.command == ("train",)
    assert workload.serving.command == ("serve",) and workload.serving.port == 8080
    assert workload.serving.health_path == "/health"
    assert [(c.name, c.command) for c in workload.sidecars] == [
        ("dashboard", ("dashboard",)),
        ("forecaster", ("forecast",)),
    ]
    assert set(workload.steps) == {"validate", "gate", "await_image"}
    assert workload.job.emits_drift and workload.job.command == ("ingest", "--monitor")
    app_ingest = (ROOT / "app" / "loop" / "ingest.py").read_text()
    assert workload.job.environment["INGEST_SOURCE"] in app_ingest
    # The drift floor is in the series' units: the monitor reads it from the series descriptor
    # in the store (app/series.py), so a stack pointed at another series must not pin CO2's.
    assert not {"MONITOR_DRIFT_MIN_SHIFT", "MONITOR_DRIFT_MIN_SHIFT_PPM"} & set(
        workload.job.environment
    )
    assert workload.security.container_user == "10001:10001"
    assert not workload.security.run_as_root and workload.security.read_only_root


def test_a_byoc_workload_parses_with_the_schema_defaults():
    workload = parse_workload(BYOC)
    assert workload.contract is Contract.SAGEMAKER
    assert workload.serving.health_path == "/ping" and workload.serving.port == 8080
    assert workload.serving.health_command is None
    assert workload.steps == {} and workload.sidecars == () and workload.job is None
    assert workload.objective.direction is Direction.MAXIMIZE
    assert workload.training.timeout_minutes == 60


def test_serving_null_is_a_training_only_workload():
    assert parse_workload({**BYOC, "serving": None}).serving is None


def test_location_names_exactly_its_ecr_repository():
    location = f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/model@{DIGEST}"
    workload = parse_workload({**BYOC, "image": {"location": location}})
    assert workload.image.build is None
    assert (
        workload.image.ecr_repository_arn
        == "arn:aws:ecr:eu-west-1:123456789012:repository/team/model"
    )
    other = parse_workload({**BYOC, "image": {"location": f"ghcr.io/me/model@{DIGEST}"}})
    assert other.image.ecr_repository_arn == ""


def test_run_as_root_is_user_zero_with_a_writable_root():
    security = parse_workload({**BYOC, "security": {"run_as_root": True}}).security
    assert security.container_user == "0:0" and not security.read_only_root


@pytest.mark.parametrize(
    ("path", "value", "key", "allowed"),
    [
        ("contract", "lambda", "workload.contract", "allowed: platform, sagemaker"),
        ("colour", 1, "workload.colour", "unknown key"),
        ("image", {}, "workload.image", "exactly one of build or location"),
        ("image", {"location": "repo:latest"}, "workload.image.location", "by digest"),
        ("image.build", {"context": "nowhere"}, "workload.image.build.context", "a directory"),
        ("image.build", {"context": "../x"}, "workload.image.build.context", "without '..'"),
        (
            "image.build",
            {"context": "app", "dockerfile": "Nope"},
            "workload.image.build.dockerfile",
            "a file inside app/",
        ),
        ("training.command", [], "workload.training.command", "non-empty list of strings"),
        ("training.command", "train", "workload.training.command", "non-empty list"),
        ("training.environment", {"lower": "x"}, "training.environment.lower", "[A-Z_]"),
        ("training.environment", {"RUN_ID": "x"}, "training.environment.RUN_ID", "the platform"),
        ("training.environment", {"SM_X": "x"}, "training.environment.SM_X", "the platform"),
        ("training.environment", {"FLAG": True}, "training.environment.FLAG", "string or a num"),
        ("training.channels", {"train": "../etc"}, "training.channels.train", "relative to the"),
        ("training.channels", {"train": "/abs"}, "training.channels.train", "relative to the"),
        ("training.hyperparameters", {"a": [1]}, "training.hyperparameters.a", "string, number"),
        ("training.timeout_minutes", 0, "workload.training.timeout_minutes", "from 1"),
        ("serving.port", 70000, "workload.serving.port", "1..65535"),
        ("serving.health_path", "ping", "workload.serving.health_path", "starting with /"),
        ("serving.health_command", ["curl", "x"], "serving.health_command", "CMD"),
        ("serving.start_period_seconds", 301, "serving.start_period_seconds", "to 300"),
        ("steps.deploy", {"command": ["x"]}, "workload.steps.deploy", "allowed steps"),
        ("steps.validate", {}, "workload.steps.validate.command", "needs its command"),
        ("objective", {"key": ""}, "workload.objective.key", "accuracy"),
        ("objective", {"key": "a", "direction": "up"}, "objective.direction", "maximize"),
        ("objective", {"key": "a", "margin": -1}, "workload.objective.margin", "from 0"),
        ("objective", {"key": "a", "file": "../m.json"}, "workload.objective.file", "inside"),
        ("sidecars", [{"name": "api", "command": ["x"]}], "sidecars[0].name", "platform's own"),
        ("sidecars", [{"name": "UI", "command": ["x"]}], "sidecars[0].name", "lowercase"),
        ("sidecars", [{"name": "ui", "command": ["x"], "path": "/ui/"}], "path", "needs its port"),
        ("sidecars", [{"name": "ui", "command": ["x"], "port": 8080}], "ui.port", "not yet used"),
        ("job", {"environment": {}}, "workload.job.command", "needs its command"),
        ("job", {"command": ["m"], "emits_drift": "yes"}, "job.emits_drift", "true or false"),
        ("security.user", "root", "workload.security.user", "numeric"),
        ("security.user", "0", "workload.security.user", "run_as_root: true"),
        ("security", {"run_as_root": True, "user": "5"}, "security.run_as_root", "user"),
        ("security.read_only_root", "no", "security.read_only_root", "true or false"),
    ],
)
def test_bad_values_are_refused_naming_key_value_and_allowed(path, value, key, allowed):
    with pytest.raises(pulumi.RunError) as err:
        parse({"workload": _with(BYOC, path, value)})
    message = str(err.value)
    assert message.startswith("mlops:workload") and key in message and allowed in message
    if not isinstance(value, dict | list) and allowed != "unknown key":
        assert repr(value) in message or str(value) in message


def test_no_gate_step_needs_an_objective():
    raw = {k: v for k, v in BYOC.items() if k != "objective"}
    with pytest.raises(pulumi.RunError, match=r"mlops:workload.objective: .*platform gate"):
        parse({"workload": raw})


def test_the_platform_contract_refuses_channels_it_would_ignore():
    raw = {**BYOC, "contract": "platform"}
    with pytest.raises(pulumi.RunError, match=r"workload.training.channels.*only the sagemaker"):
        parse({"workload": raw})


def test_location_and_image_pin_are_refused_together():
    raw = {**BYOC, "image": {"location": f"ghcr.io/me/model@{DIGEST}"}}
    with pytest.raises(pulumi.RunError, match=r"mlops:image.pin: .*workload.image.location"):
        parse({"workload": raw, "image": {"pin": DIGEST}})


def test_old_keys_become_job_and_sidecar_environment_with_a_warning():
    with mock.patch.object(pulumi.log, "warn") as warn:
        settings = parse(
            {
                "monitoring": {"source": "https://example.org/w.txt", "drift_min_shift_ppm": 3},
                "inference": {"forecast_interval_seconds": 30},
            }
        )
    assert settings.workload.job.environment["INGEST_SOURCE"] == "https://example.org/w.txt"
    assert settings.workload.job.environment["MONITOR_DRIFT_MIN_SHIFT_PPM"] == "3.0"
    assert settings.workload.sidecars[1].environment["FORECAST_INTERVAL_SECONDS"] == "30"
    warned = " ".join(str(c.args[0]) for c in warn.call_args_list)
    assert "mlops:monitoring.source is deprecated" in warned
    assert "mlops:inference.forecast_interval_seconds is deprecated" in warned


@pytest.mark.parametrize(
    ("section", "key", "value", "allowed"),
    [
        ("monitoring", "source", "http://example.org/w.txt", "https:// URL"),
        ("monitoring", "drift_min_shift_ppm", 51, "from 0 to 50"),
        ("inference", "forecast_interval_seconds", 0, "from 1 to 3600"),
    ],
)
def test_old_keys_keep_their_validation(section, key, value, allowed):
    with pytest.raises(pulumi.RunError, match=f"mlops:{section}.{key}: .*{allowed}"):
        parse({section: {key: value}})


def test_old_job_keys_need_a_job():
    with pytest.raises(pulumi.RunError, match=r"mlops:workload.job: .*INGEST_SOURCE need a job"):
        parse({"workload": BYOC, "monitoring": {"source": "https://example.org/w.txt"}})


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_stack_files_declare_the_reference_workload(stack):
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("mlops:")}
    assert "workload" in raw
    declared = parse(raw, stack=stack)
    without = parse({k: v for k, v in raw.items() if k != "workload"}, stack=stack)
    assert declared == without
