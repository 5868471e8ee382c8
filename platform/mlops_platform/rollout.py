"""finish-rollout: the end of a promoted candidate's rollout, recorded in its decision.json; a
run becomes what models/CURRENT names only once its rollout succeeded.

The pipeline runs it after the service's deployment finished (MLOPS_ROLLOUT_STATUS `succeeded`
or `failed`). A failed rollout is recorded, not refused (exit 0): the decision says the run was
not promoted and why, CURRENT still names the last model whose rollout succeeded, and the
pipeline fails afterwards on its own.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_contract import CURRENT, DECISION_FILE, MODELS, Env, write_current

from .artifacts import export_current
from .files import (
    give_to_store_owner,
    read_current,
    read_record,
    still_current,
    store_gate_lock,
    write_json,
)
from .inputs import Refused, one_line, printable, run_id, store_dir

STATUSES = ("succeeded", "failed")
REASON_MAX_BYTES = 4 * 1024
# An ARN's characters (IAM User Guide, "IAM identifiers"), e.g.
# arn:aws:ecs:eu-west-1:123456789012:service-deployment/cluster/service/abc
DEPLOYMENT_ARN = re.compile(r"^arn:[A-Za-z0-9+=,.@:/_-]{1,2000}$")


def _inputs() -> tuple[str, str, str | None]:
    status = os.environ.get(Env.ROLLOUT_STATUS, "")
    if status not in STATUSES:
        raise Refused(f"{Env.ROLLOUT_STATUS}={status[:40]!r}: use {' or '.join(STATUSES)}")
    raw = os.environ.get(Env.ROLLOUT_REASON, "").encode(errors="replace")
    reason = printable(raw[:REASON_MAX_BYTES].decode(errors="ignore")).strip()
    deployment = os.environ.get(Env.SERVICE_DEPLOYMENT, "") or None
    if deployment is not None and not DEPLOYMENT_ARN.match(deployment):
        raise Refused(
            f"{Env.SERVICE_DEPLOYMENT}={deployment[:80]!r} is not an ARN "
            "(the ECS service deployment's, arn:aws:ecs:...)"
        )
    return status, reason or "no reason given", deployment


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retried(models: Path, rid: str, rollout: dict[str, Any]) -> str:
    """A retried finish-rollout that finds its own status recorded: nothing changes, except a
    success that stopped before CURRENT moved, when CURRENT still names the run it replaced."""
    status = rollout["status"]
    if status == "succeeded":
        current = read_current(models)
        if current != rid and current == rollout.get("previous_run"):
            write_current(models, rid)
            return (
                f"run {rid} is current: its rollout succeeded (recorded earlier; "
                f"{MODELS}/{CURRENT} replaced now)"
            )
    return f"run {rid}: its rollout already {status} (recorded {rollout.get('finished_at')})"


def finish_rollout() -> str:
    store = store_dir()
    rid = run_id()
    line = _finish(store, rid)
    if read_current(store / MODELS) == rid:
        # A run that became current is exported, outside the gate lock (export_current records
        # itself under it).
        line += export_current(store, rid, "finish-rollout")
    return line


def _finish(store: Path, rid: str) -> str:
    status, reason, deployment = _inputs()
    models = store / MODELS
    what = f"{MODELS}/{rid}/{DECISION_FILE}"
    if not (models / rid).is_dir():
        raise Refused(f"{MODELS}/{rid}/ does not exist: there is no run {rid} to finish")
    with store_gate_lock(store, models):
        decision = read_record(models / rid / DECISION_FILE, what)
        if decision is None:
            raise Refused(f"{what} does not exist: the gate has not decided on run {rid}")
        rollout = decision.get("rollout")
        found = rollout.get("status") if isinstance(rollout, dict) else None
        if found == status:
            return _retried(models, rid, rollout)
        if decision.get("promoted") is not True or found != "pending":
            raise Refused(
                f"run {rid} is not a candidate waiting for its rollout: its decision says "
                f"promoted {decision.get('promoted')!r}, rollout {found or 'none'}"
            )
        finished: dict[str, Any] = {"status": status, "deployment": deployment}
        finished["finished_at"] = _now()
        if status == "succeeded":
            # The decision first, CURRENT second: a retry finds `succeeded` and finishes the swap
            # if CURRENT still names the run it replaces.
            # A damaged CURRENT is refused here (exit 1), as the gate refuses it: left as it is.
            finished["previous_run"] = read_current(models)
            decision["rollout"] = finished
            write_json(models / rid / DECISION_FILE, decision)
            give_to_store_owner(models / rid / DECISION_FILE, store)
            write_current(models, rid)
            give_to_store_owner(models / CURRENT, store)
            return f"run {rid} is current: its rollout succeeded" + (
                f" ({deployment})" if deployment else ""
            )
        decision.update(
            promoted=False,
            gate_reason=decision.get("reason"),
            reason=f"rollout failed: {reason}",
            rollout={**finished, "reason": reason},
        )
        write_json(models / rid / DECISION_FILE, decision)
        give_to_store_owner(models / rid / DECISION_FILE, store)
        return (
            f"run {rid} was not made current: rollout failed: {one_line(reason)}; "
            f"{still_current(models)}"
        )
