"""gate: promote a run when its objective beats the current model's, under the store's gate lock,
recording the decision in models/<RUN_ID>/decision.json before models/CURRENT moves."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from mlops_contract import DECISION_FILE, MODELS, REPORT_FILE, Env, gate_lock, write_current

from .files import read_current, write_json
from .inputs import Refused, require_env, run_id, store_dir


# ------------------------------------------------------------------------------ gate
def _objective(run_dir: Path, file: str, key: str) -> tuple[float | None, str]:
    """The run's objective, or None and why not."""
    path = run_dir / file
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, f"{path.name} is missing from models/{run_dir.name}"
    except (OSError, ValueError) as exc:
        return None, f"models/{run_dir.name}/{file} is not readable JSON ({exc})"
    if not isinstance(data, dict) or key not in data:
        return None, f"models/{run_dir.name}/{file} has no key {key!r}"
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None, f"models/{run_dir.name}/{file}: {key} = {value!r} is not a finite number"
    return float(value), ""


PROMOTIONS = ("objective", "every-trained-run")
"""`workload.promotion`: compare the objective, or promote every run that trained (for images
that write no metrics: the user chose it; the policy pack reports it)."""


def _promotion() -> str:
    value = os.environ.get(Env.PROMOTION, "") or "objective"
    if value not in PROMOTIONS:
        raise Refused(f"{Env.PROMOTION}={value!r}: use {' or '.join(PROMOTIONS)}")
    return value


def _gate_settings() -> tuple[str, str, str, float]:
    file = os.environ.get(Env.OBJECTIVE_FILE, "") or "metrics.json"
    parts = Path(file).parts
    if Path(file).is_absolute() or ".." in parts or not parts:
        raise Refused(f"{Env.OBJECTIVE_FILE}={file!r} must be a path inside the model directory")
    key = require_env(Env.OBJECTIVE_KEY)
    direction = os.environ.get(Env.OBJECTIVE_DIRECTION, "")
    if direction not in ("maximize", "minimize"):
        raise Refused(f"{Env.OBJECTIVE_DIRECTION}={direction!r}: use 'maximize' or 'minimize'")
    raw = os.environ.get(Env.OBJECTIVE_MARGIN, "") or "0"
    try:
        margin = float(raw)
    except ValueError:
        margin = -1.0
    if not math.isfinite(margin) or margin < 0:
        raise Refused(f"{Env.OBJECTIVE_MARGIN}={raw!r} must be a number >= 0")
    return file, key, direction, margin


def _decide_every_trained_run(models: Path, rid: str, report: Any) -> dict[str, Any]:
    decision: dict[str, Any] = {"run_id": rid, "promoted": False, "promotion": "every-trained-run"}
    decision["current_run"] = read_current(models)
    if not isinstance(report, dict) or report.get("status") != "trained":
        status = report.get("status") if isinstance(report, dict) else None
        decision["reason"] = f"run {rid} did not train (its report says {status!r})"
        return decision
    decision.update(
        promoted=True,
        reason=f"run {rid} trained (exit code {report.get('exit_code')}); promotion is "
        "every-trained-run: no objective compared",
    )
    return decision


def _decide(models: Path, rid: str) -> dict[str, Any]:
    run_dir = models / rid
    if _promotion() == "every-trained-run":
        try:
            report = json.loads((run_dir / REPORT_FILE).read_bytes())
        except (OSError, ValueError):
            report = None
        return _decide_every_trained_run(models, rid, report)
    file, key, direction, margin = _gate_settings()
    decision: dict[str, Any] = {
        "run_id": rid,
        "promoted": False,
        "objective": None,
        "current_objective": None,
        "current_run": None,
        "key": key,
        "direction": direction,
        "margin": margin,
    }
    try:
        report = json.loads((run_dir / REPORT_FILE).read_bytes())
    except (OSError, ValueError):
        report = None
    if isinstance(report, dict) and report.get("status") == "failed":
        decision["reason"] = f"run {rid} failed training: {report.get('failure')}"
        return decision
    value, why = _objective(run_dir, file, key)
    decision["objective"] = value
    if value is None:
        decision["reason"] = f"no objective: {why}"
        return decision
    current = read_current(models)
    decision["current_run"] = current
    if current is None:
        decision.update(
            promoted=True, reason=f"first model: {key} = {value:g}, nothing promoted yet"
        )
        return decision
    if current == rid:  # a retried gate: the earlier decision stands
        decision.update(promoted=True, reason=f"run {rid} is already the promoted model")
        return decision
    current_value, why = _objective(models / current, file, key)
    decision["current_objective"] = current_value
    if current_value is None:
        decision.update(
            promoted=True, reason=f"current run {current} has no comparable objective ({why})"
        )
        return decision
    gain = value - current_value if direction == "maximize" else current_value - value
    better = "higher" if direction == "maximize" else "lower"
    if gain > margin:
        decision.update(
            promoted=True,
            reason=f"{key} {value:g} vs {current_value:g} of run {current}: {better} by {gain:g} "
            f"> margin {margin:g}",
        )
    else:
        decision["reason"] = (
            f"{key} {value:g} vs {current_value:g} of run {current}: not {better} by more than "
            f"margin {margin:g}"
        )
    return decision


def gate() -> str:
    store = store_dir()
    rid = run_id()
    models = store / MODELS
    if not (models / rid).is_dir():
        raise Refused(f"models/{rid}/ does not exist: collect-training has not stored this run")
    with gate_lock(models):
        decision = _decide(models, rid)
        # The decision is on disk before CURRENT moves: a crash in between leaves a record
        # saying "promoted" for a model that is not served, never a served model with no record.
        write_json(models / rid / DECISION_FILE, decision)
        if decision["promoted"]:
            write_current(models, rid)
    verdict = "promoted" if decision["promoted"] else "refused"
    return f"{verdict} run {rid}: {decision['reason']}"
