"""record-failure: how a failed pipeline task stopped, in the run's record.

A training task can fail where collect-training cannot say why: killed before collect-training
ran (a Spot interruption, a timeout, out of memory), or stopped after collect-training recorded a
failed run. The pipeline's Catch passes what ECS said about the stop (MLOPS_TASK_STOP, from
`ecs:runTask.sync`'s task description: StopCode, StoppedReason, each container's ExitCode), and
this command adds it to models/<RUN_ID>/report.json, or records the failed run when there is none.
A run that trained and was gated is never touched.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

from mlops_contract import CURRENT, DECISION_FILE, MODELS, REPORT_FILE, Env

from .files import (
    give_to_store_owner,
    install_run_directory,
    new_run_directory,
    read_current_quietly,
    read_record,
    store_directory,
    store_gate_lock,
    write_json,
)
from .inputs import Refused, one_line, parse_json, printable, require_env, run_id, store_dir

TASK_STOP_MAX_BYTES = 8 * 1024
TASK_STOP_KEYS = ("stop_code", "stopped_reason", "exit_codes")
CONTAINERS_KEYS = ("stop_code", "stopped_reason", "containers")
STEP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
STOP_CODE = re.compile(r"^[A-Za-z0-9_.-]{0,64}$")
# ECS container names: up to 255 letters, numbers, underscores and hyphens.
CONTAINER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")


def _step() -> str:
    step = require_env(Env.FAILED_STEP)
    if not STEP.match(step):
        raise Refused(f"{Env.FAILED_STEP}={step[:40]!r} is not a step name (e.g. train)")
    return step


def _exit_codes(containers: Any, shape: str) -> dict[str, Any]:
    """ECS's stopped containers ({"Name", "ExitCode"?, ...}, as Step Functions passes a stopped
    task on: PascalCase DescribeTasks fields) as {name: exit code or None}."""
    if not isinstance(containers, list):
        raise Refused(shape)
    exits: dict[str, Any] = {}
    for entry in containers:
        if not isinstance(entry, dict) or not isinstance(entry.get("Name"), str):
            raise Refused(f"{shape}: each container needs its Name")
        exits[entry["Name"]] = entry.get("ExitCode")
    return exits


def _task_stop() -> dict[str, Any]:
    """MLOPS_TASK_STOP: {stop_code: str, stopped_reason: str} and either `exit_codes`
    ({container: int or null}) or `containers` (ECS's stopped containers, as the pipeline passes
    them: documents/task_outcome.py); anything else is refused."""
    raw = require_env(Env.TASK_STOP)
    if len(raw.encode(errors="replace")) > TASK_STOP_MAX_BYTES:
        raise Refused(f"{Env.TASK_STOP} is longer than {TASK_STOP_MAX_BYTES} bytes, the limit")
    stop = parse_json(raw, Env.TASK_STOP)
    shape = (
        f"{Env.TASK_STOP} must be a JSON object "
        '{"stop_code": str, "stopped_reason": str, "exit_codes": {container: int or null}} '
        'or with "containers": [{"Name": str, "ExitCode": int}, ...] for exit_codes'
    )
    if isinstance(stop, dict) and sorted(stop) == sorted(CONTAINERS_KEYS):
        containers = stop.pop("containers")
        stop["exit_codes"] = _exit_codes(containers, shape)
    if not isinstance(stop, dict) or sorted(stop) != sorted(TASK_STOP_KEYS):
        raise Refused(shape)
    code, reason, exits = (stop[key] for key in TASK_STOP_KEYS)
    if not isinstance(code, str) or not STOP_CODE.match(code):
        raise Refused(f"{shape}: stop_code {str(code)[:40]!r} is not an ECS stop code")
    if not isinstance(reason, str) or not isinstance(exits, dict):
        raise Refused(shape)
    for name, exit_code in exits.items():
        if not CONTAINER.match(name):
            raise Refused(f"{shape}: {name[:40]!r} is not a container name")
        if exit_code is not None and (
            isinstance(exit_code, bool) or not isinstance(exit_code, int)
        ):
            raise Refused(f"{shape}: the exit code of {name} is {str(exit_code)[:40]!r}")
    return {"stop_code": code, "stopped_reason": printable(reason), "exit_codes": exits}


def _stopped(step: str, task: dict[str, Any]) -> str:
    codes = ", ".join(
        f"{name} {'none' if code is None else code}" for name, code in task["exit_codes"].items()
    )
    reason = one_line(task["stopped_reason"]) or "no reason given"
    return f"the {step} task stopped: {reason} ({task['stop_code'] or 'no stop code'}); exit " + (
        f"codes {codes}" if codes else "codes unknown"
    )


def record_failure() -> str:
    store = store_dir()
    rid = run_id()
    step = _step()
    task = {"step": step, **_task_stop()}
    stopped = _stopped(step, task)
    models = store_directory(store, MODELS)
    run_dir = models / rid
    report_path = run_dir / REPORT_FILE
    with store_gate_lock(store, models):
        if read_current_quietly(models) == rid or os.path.lexists(run_dir / DECISION_FILE):
            raise Refused(
                f"{MODELS}/{rid} trained and was gated (it has {DECISION_FILE} or is {CURRENT}): "
                "record-failure never changes a gated run"
            )
        if run_dir.is_dir() and not run_dir.is_symlink():
            report = read_record(report_path, f"{MODELS}/{rid}/{REPORT_FILE}")
            if report is None:
                raise Refused(
                    f"{MODELS}/{rid}/ has no {REPORT_FILE}: not a run collect-training recorded, "
                    "so it is left as it is"
                )
            report["task"] = task
            write_json(report_path, report)
            give_to_store_owner(report_path, store)
            return f"recorded in {MODELS}/{rid}/{REPORT_FILE}: {stopped}"
        if os.path.lexists(run_dir):
            raise Refused(f"{MODELS}/{rid} is not a directory; left as it is")
        container = os.environ.get(Env.TRAINING_CONTAINER, "") or "train"
        report = {
            "run_id": rid,
            "status": "failed",
            "failure": stopped,
            "files": {},
            "exit_code": task["exit_codes"].get(container),
            "exit_code_from": "the task's stop",
            "output_data": {},
            "task": task,
        }
        tmp = new_run_directory(models, rid)
        try:
            write_json(tmp / REPORT_FILE, report)
            give_to_store_owner(tmp, store)
            install_run_directory(models, rid, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return f"recorded failed run {rid} (nothing was collected): {stopped}"
