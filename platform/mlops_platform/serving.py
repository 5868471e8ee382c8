"""stage-serving: the served run's model into /opt/ml/model before the workload's server starts.

The served run is the one models/CURRENT names, or, in a rollout's pinned task definition
revision, the one MLOPS_SERVE_RUN names: a revision serves exactly the run it was made for, and
only while that run may be served (promoted, trained, its rollout not failed).

AWS: https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html
"""

from __future__ import annotations

import os
from pathlib import Path

from mlops_contract import CURRENT, DECISION_FILE, MODELS, RECORDS, REPORT_FILE, Env, is_run_id

from .files import chown_tree, clear, copy_tree, read_current, read_record
from .inputs import Refused, ml_root, one_line, store_dir, workload_uid


def _pinned_run(models: Path, rid: str) -> None:
    """Refused unless the run MLOPS_SERVE_RUN names may be served."""
    name = f"{Env.SERVE_RUN}={rid}"
    may_not = "this revision may not serve it"
    if not (models / rid).is_dir():
        raise Refused(f"{name}: {MODELS}/{rid}/ does not exist: {may_not}")
    decision = read_record(models / rid / DECISION_FILE, f"{MODELS}/{rid}/{DECISION_FILE}")
    if decision is None:
        raise Refused(f"{name}: the gate has not decided on it (no {DECISION_FILE}): {may_not}")
    rollout = decision.get("rollout")
    if isinstance(rollout, dict) and rollout.get("status") == "failed":
        why = one_line(str(rollout.get("reason")), 300)
        raise Refused(f"{name}: its rollout failed ({why}): {may_not}")
    if decision.get("promoted") is not True:
        why = one_line(str(decision.get("reason")), 300)
        raise Refused(f"{name}: the gate did not promote it ({why}): {may_not}")
    report = read_record(models / rid / REPORT_FILE, f"{MODELS}/{rid}/{REPORT_FILE}")
    status = report.get("status") if report is not None else None
    if status != "trained":
        raise Refused(f"{name}: its {REPORT_FILE} does not say trained ({status!r}): {may_not}")


def stage_serving() -> str:
    store = store_dir()
    uid = workload_uid()
    models = store / MODELS
    pinned = os.environ.get(Env.SERVE_RUN, "")
    if pinned:
        if not is_run_id(pinned):
            raise Refused(f"{Env.SERVE_RUN}={pinned[:140]!r} is not a run id")
        _pinned_run(models, pinned)
        served, source = pinned, Env.SERVE_RUN
    else:
        current = read_current(models) if models.is_dir() else None
        if current is None:
            raise Refused(
                "no promoted model yet: run the pipeline first (models/CURRENT is absent)"
            )
        served, source = current, f"{MODELS}/{CURRENT}"
    target = ml_root() / "model"
    clear(target)
    files = copy_tree(
        models / served,
        target,
        f"models/{served}",
        allowed=store.resolve(),
        skip=lambda rel: rel.parts[0] in RECORDS,
    )
    if not files:
        raise Refused(f"models/{served}/ ({source}) holds no model files")
    os.chmod(target, 0o755)
    chown_tree(target, uid, uid)
    pin = f" ({Env.SERVE_RUN})" if pinned else ""
    return f"staged model of run {served}{pin}: {len(files)} file(s) into {target} for uid {uid}"
