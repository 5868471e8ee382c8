"""What every command reads from the environment or from files a workload wrote, bounded, and the
one-line refusal it prints when an input is wrong."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_contract import Env, MlLayout, is_run_id

DEFAULT_UID = 10001
JSON_MAX_DEPTH = 32
"""How deeply JSON the platform reads may nest: no record or metrics file needs more, and Python's
parser recurses, so deeper input would end in a RecursionError instead of a refusal."""
JSON_MAX_INT_DIGITS = 30
"""The longest integer JSON the platform reads may hold: a 401-digit integer parses, but turns
into an OverflowError as soon as it is compared with a float or formatted."""


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
    value = parse_json(os.environ.get(name, "") or default, name)
    if not isinstance(value, dict):
        raise Refused(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


# ------------------------------------------------------------------------------ untrusted text
_CONTROL = {
    code: f"\\x{code:02x}"
    for code in (*range(0x20), *range(0x7F, 0xA0))
    if code not in (ord("\n"), ord("\t"))
}


def printable(text: str) -> str:
    """`text` with every control character but newline and tab shown escaped (`\\x1b`): text a
    workload wrote reaches a terminal or a log only as text, never as an escape sequence."""
    return text.translate(_CONTROL)


def one_line(text: str, limit: int | None = None) -> str:
    """`text` printable, its non-blank lines joined with ` / `, cut to `limit` characters."""
    line = " / ".join(part.strip() for part in printable(text).splitlines() if part.strip())
    line = line.replace("\t", " ")
    if limit is not None and len(line) > limit:
        line = line[: limit - 1] + "…"
    return line


def size_text(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit} ({size} bytes)"
    return f"{size} bytes"


class _Unbounded(ValueError):
    """Raised from inside the JSON parser's hooks: the input passes a limit."""


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > JSON_MAX_INT_DIGITS:
        raise _Unbounded(
            f"holds an integer of {digits} digits, more than the limit of {JSON_MAX_INT_DIGITS}"
        )
    return int(text)


def _no_constant(name: str) -> Any:
    raise _Unbounded(f"holds {name}, which JSON does not allow (only finite numbers)")


# A JSON string, escapes included (the "unrolled loop": linear on any input), and a bracket.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def _nesting_over(text: str, limit: int) -> bool:
    """Whether the brackets outside strings in `text` nest more than `limit` deep: checked before
    parsing, since the parser would recurse that deep."""
    depth = 0
    for bracket in _BRACKET.finditer(_STRING.sub("", text)):
        if bracket.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def parse_json(data: bytes | str, what: str) -> Any:
    """JSON from outside the platform's control, parsed within bounds: at most JSON_MAX_DEPTH
    deep, integers of at most JSON_MAX_INT_DIGITS digits, no NaN or Infinity. Anything else is
    Refused with one line naming `what`, the problem and the limit; nothing else escapes."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Refused(f"{what} is not UTF-8 text (byte {exc.start})") from None
    else:
        text = data
    too_deep = f"{what} nests more than {JSON_MAX_DEPTH} levels deep, the limit"
    if _nesting_over(text, JSON_MAX_DEPTH):
        raise Refused(too_deep)
    try:
        return json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except _Unbounded as exc:
        raise Refused(f"{what} {exc}") from None
    except json.JSONDecodeError as exc:
        raise Refused(f"{what} is not JSON ({exc.msg} at character {exc.pos})") from None
    except RecursionError:
        raise Refused(too_deep) from None
