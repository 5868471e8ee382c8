"""gate: decide whether a run is promoted, under the store's gate lock, and record the decision in
models/<RUN_ID>/decision.json before models/CURRENT moves.

The gate refuses, it never crashes: whatever a training left in its objective file (a symlink, a
huge file, JSON nested 100000 deep, a 401-digit integer, NaN) is a reason not to promote, written
to decision.json like any other. Its exit code is the decision: 0 promoted, KEPT_EXIT (3) kept
the current model; 1 only when no decision could be made (damaged CURRENT, bad settings, I/O).

With MLOPS_ROLLOUT=1 a promoted run is the *candidate*: its decision says `rollout: pending` and
models/CURRENT keeps naming the last model whose rollout succeeded, until `finish-rollout`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_contract import DECISION_FILE, KEPT_EXIT, MODELS, REPORT_FILE, Env, write_current

from .artifacts import export_current
from .files import (
    RECORD_MAX_BYTES,
    read_bounded,
    read_current,
    read_record,
    still_current,
    store_gate_lock,
    write_json,
)
from .inputs import Outcome, Refused, one_line, parse_json, require_env, run_id, store_dir

PROMOTIONS = ("objective", "every-trained-run")
"""`workload.promotion`: compare the objective, or promote every run that trained (for images
that write no metrics: the user chose it; the policy pack reports it)."""
OBJECTIVE_MAX_BYTES = RECORD_MAX_BYTES
REASON_FAILURE_CHARS = 500
"""How much of a failed run's failure text its decision repeats (report.json has all of it)."""


@dataclass(frozen=True)
class GateSettings:
    promotion: str
    rollout: bool
    file: str = ""
    key: str = ""
    direction: str = ""
    margin: float = 0.0


def _settings() -> GateSettings:
    promotion = os.environ.get(Env.PROMOTION, "") or "objective"
    if promotion not in PROMOTIONS:
        raise Refused(f"{Env.PROMOTION}={promotion!r}: use {' or '.join(PROMOTIONS)}")
    rollout = os.environ.get(Env.ROLLOUT, "")
    if rollout not in ("", "0", "1"):
        raise Refused(
            f"{Env.ROLLOUT}={rollout!r}: use 1 (the service rolls out each promoted run) or 0"
        )
    if promotion == "every-trained-run":
        return GateSettings(promotion, rollout == "1")
    file = os.environ.get(Env.OBJECTIVE_FILE, "") or "metrics.json"
    parts = Path(file).parts
    if Path(file).is_absolute() or ".." in parts or not parts or not file.isprintable():
        raise Refused(f"{Env.OBJECTIVE_FILE}={file!r} must be a path inside the model directory")
    key = require_env(Env.OBJECTIVE_KEY)
    if not key.isprintable() or len(key) > 256:
        raise Refused(f"{Env.OBJECTIVE_KEY}={key[:64]!r} must be printable, at most 256 characters")
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
    return GateSettings(promotion, rollout == "1", file, key, direction, margin)


# ------------------------------------------------------------------------------ reading a run
def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _objective(run_dir: Path, file: str, key: str) -> tuple[float | None, str]:
    """The run's objective, or None and why not: the file is read and parsed within bounds, so
    nothing a training wrote there can do more than be refused."""
    what = f"{MODELS}/{run_dir.name}/{file}"
    try:
        data = parse_json(read_bounded(run_dir / file, what, OBJECTIVE_MAX_BYTES, run_dir), what)
    except FileNotFoundError:
        return None, f"{what} is missing"
    except Refused as exc:
        return None, str(exc)
    if not isinstance(data, dict) or key not in data:
        return None, f"{what} has no key {key!r}"
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None, f"{what}: {key} = {_shown(value)} is not a finite number"
    return float(value), ""


def _did_not_train(run_dir: Path) -> str | None:
    """Why the run may not be promoted whatever its objective (its report.json does not say it
    trained), None when it trained."""
    rid = run_dir.name
    try:
        report = read_record(run_dir / REPORT_FILE, f"{MODELS}/{rid}/{REPORT_FILE}")
    except Refused as exc:
        return f"run {rid} has no readable report ({exc})"
    if report is None:
        return f"run {rid} has no {REPORT_FILE}: collect-training did not record it"
    status = report.get("status")
    if status == "failed":
        failure = one_line(str(report.get("failure")), REASON_FAILURE_CHARS)
        return f"run {rid} failed training: {failure}"
    if status != "trained":
        return f"run {rid} did not train (its report says {_shown(status)})"
    return None


# ------------------------------------------------------------------------------ deciding
def _decide_every_trained_run(models: Path, rid: str) -> dict[str, Any]:
    decision: dict[str, Any] = {"run_id": rid, "promoted": False, "promotion": "every-trained-run"}
    decision["current_run"] = read_current(models)
    why = _did_not_train(models / rid)
    if why is not None:
        decision["reason"] = why
        return decision
    decision.update(
        promoted=True,
        reason=f"run {rid} trained; promotion is every-trained-run: no objective compared",
    )
    return decision


def _decide(models: Path, rid: str, settings: GateSettings) -> dict[str, Any]:
    if settings.promotion == "every-trained-run":
        return _decide_every_trained_run(models, rid)
    key, direction, margin = settings.key, settings.direction, settings.margin
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
    why = _did_not_train(models / rid)
    if why is not None:
        decision["reason"] = why
        return decision
    value, why = _objective(models / rid, settings.file, key)
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
    if current == rid:
        decision.update(promoted=True, reason=f"run {rid} is already the promoted model")
        return decision
    current_value, why = _objective(models / current, settings.file, key)
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


def _earlier_decision(models: Path, rid: str) -> dict[str, Any] | None:
    what = f"{MODELS}/{rid}/{DECISION_FILE}"
    decision = read_record(models / rid / DECISION_FILE, what)
    if decision is not None and not isinstance(decision.get("promoted"), bool):
        raise Refused(
            f"{what} holds no decision (no promoted: true or false); remove it to gate again"
        )
    return decision


def _finish_swap(models: Path, rid: str, decision: dict[str, Any]) -> bool:
    """A gate that promoted (without a rollout) and stopped before it replaced CURRENT: replace it
    now, but only if CURRENT still names the run the decision compared with."""
    if not decision["promoted"] or "rollout" in decision:
        return False
    current = read_current(models)
    if current == rid or current != decision.get("current_run"):
        return False
    write_current(models, rid)
    return True


def _line(models: Path, rid: str, decision: dict[str, Any], note: str) -> str:
    reason = one_line(str(decision.get("reason")))
    rollout = decision.get("rollout")
    status = rollout.get("status") if isinstance(rollout, dict) else None
    if not decision["promoted"]:
        return f"refused run {rid}{note}: {reason}; {still_current(models)}"
    if status == "pending":
        return (
            f"promoted run {rid} as the candidate{note}: {reason}; "
            "models/CURRENT names it once its rollout succeeds"
        )
    if status == "succeeded":
        return f"promoted run {rid}{note}: {reason}; its rollout succeeded"
    return f"promoted run {rid}{note}: {reason}"


def gate() -> Outcome:
    store = store_dir()
    rid = run_id()
    settings = _settings()
    models = store / MODELS
    if not (models / rid).is_dir():
        raise Refused(f"models/{rid}/ does not exist: collect-training has not stored this run")
    with store_gate_lock(store, models):
        note = ""
        decision = _earlier_decision(models, rid)
        if decision is not None:  # a retried gate: the earlier decision stands
            note = " (decided earlier)"
            if _finish_swap(models, rid, decision):
                note = " (decided earlier; models/CURRENT now names it)"
        else:
            decision = _decide(models, rid, settings)
            if decision["promoted"] and settings.rollout:
                decision["rollout"] = {"status": "pending"}
            # The decision is on disk before CURRENT moves: a crash in between leaves a record
            # saying "promoted" for a model that is not served (a retried gate finishes the
            # swap), never a served model with no record.
            write_json(models / rid / DECISION_FILE, decision)
            if decision["promoted"] and not settings.rollout:
                write_current(models, rid)
        line = _line(models, rid, decision, note)
    if read_current(models) == rid:
        # Outside the lock: the export records itself under it, and a large upload must not
        # hold up another gate.
        line += export_current(store, rid, "gate")
    return Outcome(line, 0 if decision["promoted"] else KEPT_EXIT)
