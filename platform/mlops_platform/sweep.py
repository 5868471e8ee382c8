"""pick-trial: after a sweep's trials, choose the best one by the workload's objective, record
every trial in models/<RUN_ID>/sweep.json, and hand the chosen run back to the state machine.

RUN_ID is the execution's run; trial `t03` trained as the run `<RUN_ID>-t03`. MLOPS_SWEEP is the
plan the stack deployed, `{"trials": [{"id", "hyperparameters"}], "tolerated_failures"}`. Each
trial's outcome is read as the gate reads a run (gate.py): its report.json must say `trained`,
and its objective is read from MLOPS_OBJECTIVE_FILE, within the same bounds, at
MLOPS_OBJECTIVE_KEY, the best by MLOPS_OBJECTIVE_DIRECTION; a tie goes to the earlier trial. The
gate then compares the chosen run with the current model as it compares any run.

With MLOPS_TASK_TOKEN (the PickTrial state's `$$.Task.Token`) the outcome goes back through Step
Functions' SendTaskSuccess, output `{run_id, trial, objective, hyperparameters}`, or
SendTaskFailure (`Sweep.NoTrialToPick`, `Sweep.TooManyFailures`, `Sweep.Refused`) with the same
line as stderr; botocore signs with the task role, in AWS_REGION. Exit 0 picked, 1 not.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_contract import MODELS, SWEEP_FILE, Env, is_run_id

from .files import write_json
from .gate import _did_not_train, _objective, _settings
from .inputs import Outcome, Refused, json_object, one_line, run_id, store_dir

TRIAL_ID = re.compile(r"t\d{1,6}")
CAUSE_CHARS = 32768
"""SendTaskFailure's `cause` holds at most 32,768 characters, its `error` 256 (botocore's
Step Functions model, SendTaskFailureInput)."""


class SweepFailed(Exception):
    def __init__(self, error: str, line: str) -> None:
        super().__init__(line)
        self.error = error


def _plan() -> tuple[list[dict[str, Any]], int]:
    plan = json_object(Env.SWEEP)
    trials, tolerated = plan.get("trials"), plan.get("tolerated_failures", 0)
    if not isinstance(trials, list) or not trials:
        raise Refused(f"{Env.SWEEP}: 'trials' must be a non-empty list")
    if isinstance(tolerated, bool) or not isinstance(tolerated, int) or tolerated < 0:
        raise Refused(f"{Env.SWEEP}: 'tolerated_failures' must be a whole number >= 0")
    seen: set[str] = set()
    for trial in trials:
        ident = trial.get("id") if isinstance(trial, dict) else None
        if not isinstance(ident, str) or not TRIAL_ID.fullmatch(ident) or ident in seen:
            raise Refused(f"{Env.SWEEP}: trial {str(trial)[:80]} needs a unique id like t01")
        if not isinstance(trial.get("hyperparameters"), dict):
            raise Refused(f"{Env.SWEEP}: trial {ident} needs its hyperparameters (an object)")
        seen.add(ident)
    return trials, tolerated


def _outcome(models: Path, run: str, file: str, key: str) -> tuple[str, float | None, str]:
    """(status, objective, why not) of one trial's run, as the gate would see it."""
    run_dir = models / run
    if not run_dir.is_dir():
        return "failed", None, f"run {run} was never collected (no {MODELS}/{run}/)"
    why = _did_not_train(run_dir)
    if why is not None:
        return "failed", None, why
    value, why = _objective(run_dir, file, key)
    return "trained", value, (f"no objective: {why}" if value is None else "")


def _decide(store: Path, rid: str) -> tuple[dict[str, Any], dict[str, Any] | None, str, str]:
    """The sweep's record, the chosen trial's record (None: nothing to pick), the line saying
    so, and the error name when nothing was picked."""
    settings = _settings()
    if settings.promotion != "objective":
        raise Refused("pick-trial picks by an objective: promotion every-trained-run has none")
    trials, tolerated = _plan()
    models = store / MODELS
    records: list[dict[str, Any]] = []
    for trial in trials:
        run = f"{rid}-{trial['id']}"
        if not is_run_id(run):
            raise Refused(f"{Env.RUN_ID}={rid!r}: with trial {trial['id']} it is no run id")
        status, value, why = _outcome(models, run, settings.file, settings.key)
        records.append(
            {
                "id": trial["id"],
                "run_id": run,
                "hyperparameters": trial["hyperparameters"],
                "status": status,
                "objective": value,
                "reason": why or None,
            }
        )
    scored = [r for r in records if r["objective"] is not None]
    sign = 1.0 if settings.direction == "maximize" else -1.0
    # max() keeps the first of equal values: a tie goes to the earlier trial.
    best = max(scored, key=lambda r: sign * r["objective"]) if scored else None
    failed = sum(r["status"] == "failed" for r in records)
    sweep = {
        "run_id": rid,
        "objective": {
            "file": settings.file,
            "key": settings.key,
            "direction": settings.direction,
        },
        "tolerated_failures": tolerated,
        "failed": failed,
        "best": None if best is None else {k: best[k] for k in ("id", "run_id", "objective")},
        "picked_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "trials": records,
    }
    count = f"{len(records)} trials, {failed} failed"
    if failed > tolerated:
        line = f"sweep {rid}: {count}, more than the {tolerated} tolerated"
        return sweep, None, line, "Sweep.TooManyFailures"
    if best is None:
        reasons = "; ".join(f"{r['id']}: {r['reason']}" for r in records)
        line = f"sweep {rid}: no trial has an objective to pick by ({reasons})"
        return sweep, None, line, "Sweep.NoTrialToPick"
    line = (
        f"picked trial {best['id']} (run {best['run_id']}): {settings.key} "
        f"{best['objective']:g}, the best of {count}; {MODELS}/{rid}/{SWEEP_FILE}"
    )
    return sweep, best, line, ""


def _callback(token: str, output: dict[str, Any] | None, error: str, line: str) -> None:
    """SendTaskSuccess with `output`, or SendTaskFailure with `error` and `line`."""
    import botocore.session

    client = botocore.session.get_session().create_client(
        "stepfunctions", region_name=os.environ.get(Env.AWS_REGION) or None
    )
    if output is not None:
        client.send_task_success(taskToken=token, output=json.dumps(output))
    else:
        client.send_task_failure(taskToken=token, error=error[:256], cause=line[:CAUSE_CHARS])


def pick_trial() -> Outcome:
    token = os.environ.get(Env.TASK_TOKEN, "")
    try:
        store, rid = store_dir(), run_id()
        sweep, best, line, error = _decide(store, rid)
    except Refused as exc:
        if token:
            _callback(token, None, "Sweep.Refused", f"pick-trial: {one_line(str(exc))}")
        raise
    directory = store / MODELS / rid
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / SWEEP_FILE, sweep)
    if best is None:
        if token:
            _callback(token, None, error, one_line(line))
        return Outcome(line, 1)
    trial = next(t for t in sweep["trials"] if t["id"] == best["id"])
    output = {
        "run_id": best["run_id"],
        "trial": best["id"],
        "objective": best["objective"],
        "hyperparameters": trial["hyperparameters"],
    }
    if token:
        _callback(token, output, "", line)
    return Outcome(line)
