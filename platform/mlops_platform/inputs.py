"""What every command reads from the environment, and the one-line refusal it prints when an
input is wrong."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_contract import Env, MlLayout, is_run_id

DEFAULT_UID = 10001


class Refused(Exception):
    """A problem with the inputs or the store: its message is the one line the user sees."""


@dataclass(frozen=True)
class Outcome:
    """What a command did, when that is not simply success: the line for stdout and the exit
    code (the gate's `KEPT_EXIT` when it decided not to promote)."""

    line: str
    exit_code: int = 0


def ml_root() -> Path:
    return Path(os.environ.get(Env.ML_ROOT) or MlLayout().root)


def require_env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise Refused(f"{name} is not set")
    return value


def store_dir() -> Path:
    path = Path(require_env(Env.STORE_DIR))
    if not path.is_dir():
        raise Refused(f"{Env.STORE_DIR}={path} is not a directory (is the store mounted?)")
    return path


def run_id() -> str:
    value = require_env(Env.RUN_ID)
    if not is_run_id(value):
        raise Refused(
            f"{Env.RUN_ID}={value!r} is not a run id: use letters, digits, '.', '_' and '-' "
            "(at most 128 characters, not starting with '.')"
        )
    return value


def workload_uid() -> int:
    raw = os.environ.get(Env.WORKLOAD_UID, "") or str(DEFAULT_UID)
    try:
        uid = int(raw)
    except ValueError:
        uid = -1
    if uid < 0 or uid > 2**31 - 1:
        raise Refused(
            f"{Env.WORKLOAD_UID}={raw!r} is not a numeric uid (0 for root, default 10001)"
        )
    return uid


def json_object(name: str, default: str = "{}") -> dict[str, Any]:
    raw = os.environ.get(name, "") or default
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise Refused(f"{name} is not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise Refused(f"{name} must be a JSON object, got {type(value).__name__}")
    return value
