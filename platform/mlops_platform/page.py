"""page: one HTML page about any workload's model, read fresh from the store on every request.

    GET /        the page (text/html; charset=utf-8)
    GET /health  200 {"status": "ok"} while the process runs
    HEAD         as GET, without the body; any other path 404, any other method 405

What it shows, each part from the store's own records (docs/monitoring.md, "The page"):
  the current model   models/CURRENT, and that run's report.json (collect-training,
                      record-failure) and decision.json (gate, finish-rollout)
  runs                every models/<run>/ with either record, newest first, at most MAX_RUNS
  capture             records an hour over the last CAPTURE_HOURS hours, counted in
                      capture/<MLOPS_CAPTURE_NAME>/AllTraffic/yyyy/mm/dd/hh/*.jsonl
  drift, events       monitoring/model/history.jsonl (one JSON object a check, newest last)

Settings (environment):
  STORE_DIR            required   the store (its absence is shown on the page, not refused)
  PORT                 8090       where the page listens (all IPv4 interfaces)
  MLOPS_CAPTURE_NAME   inference  the capture's directory under capture/, as capture-proxy's

The store is read as hostile: every string reaches the page escaped, one printable line, cut to
a length; a file is read only up to a bound (a record RECORD_MAX_BYTES, a capture file
CAPTURE_FILE_BYTES, all capture files of one request CAPTURE_BUDGET_BYTES, the tail of the
history HISTORY_TAIL_BYTES), and a count that stopped at a bound says it is a lower bound; no
symlink in the store is followed; a damaged or missing file is a line on the page saying so.
The page sends no script and its Content-Security-Policy allows none.

stdout: one JSON line once listening (`page-listening`) and one at exit (`page-stopped`).
SIGTERM (or SIGINT): stop accepting, finish the pages being built, exit 0.
"""

from __future__ import annotations

import contextlib
import errno
import html
import json
import math
import os
import re
import signal
import stat
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mlops_contract import (
    CAPTURE,
    CURRENT,
    DECISION_FILE,
    MODEL_MONITOR,
    MODELS,
    REPORT_FILE,
    Env,
)

from .files import read_current, read_record
from .inputs import Refused, one_line, parse_json, require_env

PORT = "PORT"
DEFAULT_PORT = 8090
DEFAULT_CAPTURE_NAME = "inference"
VARIANT = "AllTraffic"
HISTORY = f"{MODEL_MONITOR}/history.jsonl"

MAX_RUNS = 50
MAX_RUN_ENTRIES = 10_000
"""models/ entries looked at for runs: a store with more shows the newest of these."""
CAPTURE_HOURS = 48
CAPTURE_FILE_BYTES = 4 << 20
"""The most read of one capture file: past it the file's count is a lower bound, and an estimate
from its size is shown besides."""
CAPTURE_BUDGET_BYTES = 64 << 20
"""The most read of all capture files for one page, newest hours first."""
CAPTURE_FILES_PER_HOUR = 1000
HISTORY_TAIL_BYTES = 1 << 20
"""The most read of history.jsonl: its end, so the newest checks."""
MAX_PLOTTED_CHECKS = 500
TOP_FEATURES = 20
MAX_EVENTS = 50
MAX_REASONS = 10
TEXT_CHARS = 300
"""The longest piece of text from the store shown (a reason, a failure, a name)."""
REFRESH_SECONDS = 60
REQUEST_TIMEOUT_SECONDS = 30
"""A client idle or stalled this long is disconnected: a slow client keeps no thread forever."""
_CAPTURE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""capture-proxy's rule for MLOPS_CAPTURE_NAME: one directory name."""

SECURITY_HEADERS = {
    # No script at all: even a string that escaped escaping could not run.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


# ------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Settings:
    store: Path
    port: int
    capture_name: str


def read_settings() -> Settings:
    """The page's settings from the environment; Refused with one line naming the bad one."""
    store = Path(require_env(Env.STORE_DIR))
    raw = os.environ.get(PORT, "") or str(DEFAULT_PORT)
    port = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 5 else 0
    if not 1 <= port <= 65535:
        raise Refused(f"{PORT}={raw[:100]!r} is not a port (an integer 1-65535)")
    name = os.environ.get(Env.CAPTURE_NAME, "") or DEFAULT_CAPTURE_NAME
    if not _CAPTURE_NAME.fullmatch(name):
        raise Refused(
            f"{Env.CAPTURE_NAME}={name[:100]!r} is not a directory name: letters, digits, '.', "
            "'_' and '-', at most 128, not starting with '.'"
        )
    return Settings(store, port, name)


# ------------------------------------------------------------------------------ reading, bounded
def _real_dir(root: Path, relative: str) -> tuple[Path | None, str | None]:
    """`root/relative` when each part of `relative` is a directory and none a symlink:
    (path, None); (None, None) when a part is missing; (None, why) for anything else."""
    path = root
    for part in Path(relative).parts:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"{path.relative_to(root)} cannot be read: {exc.strerror}"
        if stat.S_ISLNK(mode):
            return None, f"{path.relative_to(root)} is a symlink, which the page does not follow"
        if not stat.S_ISDIR(mode):
            return None, f"{path.relative_to(root)} is not a directory"
    return path, None


def _open_regular(path: Path, what: str) -> Any:
    """`path` opened for reading when it is a regular file; Refused for a symlink or anything
    else; FileNotFoundError when absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused(f"{what} is a symlink, which the page does not follow") from None
        raise
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        handle.close()
        raise Refused(f"{what} is not a regular file")
    return handle


def _problem(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return where + (exc.strerror or str(exc))
    return str(exc)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ------------------------------------------------------------------------------ runs
@dataclass(frozen=True)
class Run:
    run_id: str
    when: float | None
    """The newest mtime of its records."""
    report: dict[str, Any] | None
    decision: dict[str, Any] | None
    problems: tuple[str, ...] = ()


def _records_mtime(run_dir: Path) -> float | None:
    times = []
    for name in (REPORT_FILE, DECISION_FILE):
        with contextlib.suppress(OSError):
            times.append(os.lstat(run_dir / name).st_mtime)
    return max(times) if times else None


def read_run(models: Path, run_id: str) -> Run:
    """A run's records, each None when absent; what could not be read is in `problems`."""
    run_dir, why = _real_dir(models, run_id)
    if run_dir is None:
        return Run(run_id, None, None, None, (why or f"{MODELS}/{run_id}/ does not exist",))
    records: dict[str, dict[str, Any] | None] = {}
    problems = []
    for name in (REPORT_FILE, DECISION_FILE):
        try:
            records[name] = read_record(run_dir / name, f"{MODELS}/{run_id}/{name}")
        except (OSError, Refused) as exc:
            records[name] = None
            problems.append(_problem(exc))
    return Run(
        run_id,
        _records_mtime(run_dir),
        records[REPORT_FILE],
        records[DECISION_FILE],
        tuple(problems),
    )


@dataclass
class Runs:
    runs: list[Run] = field(default_factory=list)
    found: int = 0
    """Run directories with a record (at most MAX_RUN_ENTRIES entries looked at)."""
    entries_capped: bool = False
    symlinks: int = 0
    problem: str | None = None
    absent: bool = False
    """`problem` says what is not there yet, not what is damaged."""


def read_runs(store: Path) -> Runs:
    """The newest MAX_RUNS run directories that hold report.json or decision.json."""
    result = Runs()
    models, why = _real_dir(store, MODELS)
    if models is None:
        result.problem = why or f"no runs yet: there is no {MODELS}/ in the store"
        result.absent = why is None
        return result
    dated: list[tuple[float, str]] = []
    try:
        with os.scandir(models) as entries:
            for seen, entry in enumerate(entries):
                if seen >= MAX_RUN_ENTRIES:
                    result.entries_capped = True
                    break
                if entry.name.startswith("."):
                    continue  # the platform's temporary directories and the gate lock
                if entry.is_symlink():
                    result.symlinks += 1
                    continue
                if not entry.is_dir(follow_symlinks=False):
                    continue
                when = _records_mtime(Path(entry.path))
                if when is not None:
                    dated.append((when, entry.name))
    except OSError as exc:
        result.problem = f"{MODELS}/ cannot be listed: {_problem(exc)}"
        return result
    dated.sort(reverse=True)
    result.found = len(dated)
    result.runs = [read_run(models, name) for _, name in dated[:MAX_RUNS]]
    return result


@dataclass(frozen=True)
class Current:
    run_id: str | None
    run: Run | None
    problem: str | None


def read_current_model(store: Path) -> Current:
    models, why = _real_dir(store, MODELS)
    if models is None:
        return Current(None, None, why)
    try:
        run_id = read_current(models)
    except Refused as exc:
        return Current(None, None, str(exc))
    if run_id is None:
        return Current(None, None, None)
    return Current(run_id, read_run(models, run_id), None)


# ------------------------------------------------------------------------------ capture
@dataclass
class Hour:
    start: datetime
    counted: int = 0
    """Lines counted in what was read."""
    estimate: int = 0
    """`counted`, or more where a file was read only in part (from its size)."""
    lower_bound: bool = False
    files: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.start.strftime("%Y-%m-%dT%H")


@dataclass
class Capture:
    name: str
    hours: list[Hour]
    """Oldest first, CAPTURE_HOURS of them, the last the current hour."""
    problem: str | None = None
    absent: bool = False
    bytes_read: int = 0

    @property
    def counted(self) -> int:
        return sum(hour.counted for hour in self.hours)

    @property
    def estimate(self) -> int:
        return sum(hour.estimate for hour in self.hours)

    @property
    def lower_bound(self) -> bool:
        return any(hour.lower_bound for hour in self.hours)


def count_lines(path: Path, limit: int) -> tuple[int, int, int, bool]:
    """(lines, bytes read, size, whole) of the regular file `path`, reading at most `limit`
    bytes; a last line without its newline counts once the whole file was read."""
    with _open_regular(path, path.name) as handle:
        size = os.fstat(handle.fileno()).st_size
        lines = done = 0
        last = b""
        while done < limit:
            chunk = handle.read(min(1 << 20, limit - done))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            done += len(chunk)
            last = chunk[-1:]
        whole = done < limit or not handle.read(1)
    if whole and last not in (b"", b"\n"):
        lines += 1
    return lines, done, max(size, done), whole


def read_capture(store: Path, name: str, now: datetime) -> Capture:
    """Records an hour for the CAPTURE_HOURS hours up to `now` (UTC). The newest hours are read
    first, so when the budget runs out it is the oldest counts that are estimates."""
    top = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [Hour(top - timedelta(hours=back)) for back in range(CAPTURE_HOURS - 1, -1, -1)]
    capture = Capture(name, hours)
    base = f"{CAPTURE}/{name}/{VARIANT}"
    root, why = _real_dir(store, base)
    if root is None:
        capture.problem = why or f"no capture yet: there is no {base}/ in the store"
        capture.absent = why is None
        return capture
    budget = CAPTURE_BUDGET_BYTES
    lines_seen = bytes_seen = 0
    for hour in reversed(hours):
        directory, why = _real_dir(root, hour.start.strftime("%Y/%m/%d/%H"))
        if directory is None:
            if why:
                hour.problems.append(why)
            continue
        try:
            with os.scandir(directory) as entries:
                files = sorted(
                    e.name for e in entries if e.name.endswith(".jsonl") and not e.is_dir()
                )
        except OSError as exc:
            hour.problems.append(f"cannot be listed: {_problem(exc)}")
            continue
        if len(files) > CAPTURE_FILES_PER_HOUR:
            hour.problems.append(
                f"{len(files)} files: only {CAPTURE_FILES_PER_HOUR} of them counted"
            )
            hour.lower_bound = True
            files = files[:CAPTURE_FILES_PER_HOUR]
        for file in files:
            try:
                lines, done, size, whole = count_lines(
                    directory / file, min(budget, CAPTURE_FILE_BYTES)
                )
            except (OSError, Refused) as exc:
                hour.problems.append(one_line(_problem(exc), TEXT_CHARS))
                continue
            budget -= done
            capture.bytes_read += done
            hour.files += 1
            hour.counted += lines
            if whole:
                hour.estimate += lines
                lines_seen += lines
                bytes_seen += size
                continue
            hour.lower_bound = True
            if done and lines:
                hour.estimate += max(lines, round(lines * size / done))
            elif bytes_seen and lines_seen:  # not read at all: the average line so far
                hour.estimate += max(lines, round(size * lines_seen / bytes_seen))
            else:
                hour.estimate += lines
    return capture


# ------------------------------------------------------------------------------ drift history
@dataclass(frozen=True)
class Feature:
    name: str
    distance: float | None
    threshold: float | None
    critical: float | None
    drift: bool | None

    @property
    def drifted(self) -> bool | None:
        """The check's own flag; else distance over threshold when both are known."""
        if self.drift is not None:
            return self.drift
        if self.distance is not None and self.threshold is not None:
            return self.distance > self.threshold
        return None


def features_of(check: dict[str, Any]) -> list[Feature]:
    """The check's features, largest distance first (unknown distances last)."""
    raw = check.get("features")
    found = []
    if isinstance(raw, dict):
        for name, value in raw.items():
            value = value if isinstance(value, dict) else {}
            drift = value.get("drift")
            found.append(
                Feature(
                    name,
                    _number(value.get("distance")),
                    _number(value.get("threshold")),
                    _number(value.get("critical")),
                    drift if isinstance(drift, bool) else None,
                )
            )
    found.sort(key=lambda f: (f.distance is None, -(f.distance or 0.0), f.name))
    return found


@dataclass(frozen=True)
class Check:
    raw: dict[str, Any]
    at: datetime | None
    largest: Feature | None
    threshold: float | None
    """The threshold most of its features share (per-feature ones are in the table)."""
    drifted: tuple[str, ...]
    event: dict[str, Any] | None
    feature_count: int

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Check:
        features = features_of(raw)
        largest = features[0] if features and features[0].distance is not None else None
        thresholds = Counter(f.threshold for f in features if f.threshold is not None)
        drifted = raw.get("drifted")
        if isinstance(drifted, list):
            names = tuple(str(name) for name in drifted)
        else:
            names = tuple(f.name for f in features if f.drifted)
        event = raw.get("event")
        return cls(
            raw,
            _time(raw.get("checked_at")),
            largest,
            thresholds.most_common(1)[0][0] if thresholds else None,
            names,
            event if isinstance(event, dict) else None,
            len(features),
        )

    def flagged(self, part: str) -> bool:
        value = self.raw.get(part)
        return isinstance(value, dict) and value.get("drift") is True

    @property
    def sent(self) -> str | None:
        """The id of the drift event this check sent; None when it sent none. The monitor records
        an event it did not send too (`id` null, with a `note` or an `error`: events off, cooling
        down, EventBridge refused)."""
        event_id = (self.event or {}).get("id")
        return event_id if isinstance(event_id, str) and event_id else None

    @property
    def any_drift(self) -> bool:
        return bool(self.drifted) or self.flagged("output") or self.flagged("quality")


@dataclass
class History:
    checks: list[Check] = field(default_factory=list)
    bad_lines: int = 0
    skipped_bytes: int = 0
    """Bytes before the tail that was read (older checks, not shown)."""
    problem: str | None = None
    absent: bool = False


def read_history(store: Path) -> History:
    """The checks in the last HISTORY_TAIL_BYTES of history.jsonl, oldest first; a line that is
    not a JSON object within the platform's JSON bounds is skipped and counted."""
    history = History()
    directory, why = _real_dir(store, MODEL_MONITOR)
    if directory is None:
        history.problem = why or f"no monitor check yet: there is no {HISTORY}"
        history.absent = why is None
        return history
    try:
        with _open_regular(directory / "history.jsonl", HISTORY) as handle:
            size = os.fstat(handle.fileno()).st_size
            start = max(0, size - HISTORY_TAIL_BYTES)
            handle.seek(start)
            data = handle.read(HISTORY_TAIL_BYTES)
    except FileNotFoundError:
        history.problem = f"no monitor check yet: there is no {HISTORY}"
        history.absent = True
        return history
    except (OSError, Refused) as exc:
        history.problem = _problem(exc)
        return history
    if start:  # the first line read is the end of one cut in two: not a damaged line
        cut = data.find(b"\n") + 1
        start += cut if cut else len(data)
        data = data[cut:] if cut else b""
    history.skipped_bytes = start
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            raw = parse_json(line, "a line")
        except Refused:
            history.bad_lines += 1
            continue
        if not isinstance(raw, dict):
            history.bad_lines += 1
            continue
        history.checks.append(Check.of(raw))
    return history


# ------------------------------------------------------------------------------ HTML pieces
def esc(value: Any, limit: int | None = TEXT_CHARS) -> str:
    """Text from the store as it may appear in HTML: one printable line, cut to `limit`,
    escaped for an element and for a quoted attribute alike."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    # An undecodable file name arrives with lone surrogates, which UTF-8 cannot encode.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return html.escape(one_line(text, limit), quote=True)


def num(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "—" if value is None else esc(value, 40)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{number:.4g}"


def when(moment: datetime | float | None, now: datetime) -> str:
    if moment is None:
        return "—"
    if isinstance(moment, int | float):
        moment = datetime.fromtimestamp(moment, UTC)
    ago = (now - moment).total_seconds()
    if ago < -60:
        relative = "in the future"
    elif ago < 90:
        relative = "just now"
    elif ago < 5400:
        relative = f"{ago / 60:.0f} min ago"
    elif ago < 172800:
        relative = f"{ago / 3600:.0f} h ago"
    else:
        relative = f"{ago / 86400:.0f} days ago"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC <span class=dim>({relative})</span>"


def badge(text: str, kind: str) -> str:
    return f'<span class="badge {kind}">{esc(text)}</span>'


def missing(text: str) -> str:
    return f'<p class="missing">{esc(text, 1000)}</p>'


def notice(text: str, absent: bool) -> str:
    """What is not there yet, quietly; what is damaged or refused, marked."""
    return f'<p class="empty">{esc(text, 1000)}</p>' if absent else missing(text)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at least `value` (an axis' top)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value * (1 - 1e-9):
            return step * power
    return 10 * power


# ------------------------------------------------------------------------------ sections
def _outcome(report: dict[str, Any] | None) -> str:
    if report is None:
        return '<span class="dim">no report.json</span>'
    status = report.get("status")
    if status == "trained":
        return badge("trained", "ok")
    if status == "failed":
        parts = [badge("failed", "bad")]
        failure = _text(report.get("failure"))
        if failure:
            parts.append(f'<span class="reason">{esc(failure, 200)}</span>')
        task = report.get("task")
        if isinstance(task, dict):
            stop = " ".join(
                str(task[k]) for k in ("step", "stop_code") if isinstance(task.get(k), str)
            )
            parts.append(f'<span class="dim">task stopped: {esc(stop, 120)}</span>')
        return " ".join(parts)
    return badge(f"status {status!r}" if status is not None else "no status", "bad")


def _decision(decision: dict[str, Any] | None) -> tuple[str, str, str]:
    """(label, css class, data- value) of a run's gate decision."""
    if decision is None:
        return "not gated", "none", "not-gated"
    rollout = decision.get("rollout")
    status = rollout.get("status") if isinstance(rollout, dict) else None
    promoted = decision.get("promoted")
    if promoted is True and status == "pending":
        return "candidate, rollout pending", "wait", "candidate"
    if promoted is True:
        return ("promoted, rolled out" if status == "succeeded" else "promoted"), "ok", "promoted"
    if promoted is False and status == "failed":
        return "kept: its rollout failed", "bad", "kept"
    if promoted is False:
        return "kept", "kept", "kept"
    return "no decision in decision.json", "bad", "damaged"


def _objective(decision: dict[str, Any] | None) -> str:
    if decision is None:
        return "—"
    if decision.get("promotion") == "every-trained-run":
        return '<span class="dim">every trained run is promoted</span>'
    key = decision.get("key")
    text = f"{esc(key, 60) if key is not None else '?'} = {num(decision.get('objective'))}"
    other = decision.get("current_run")
    if decision.get("current_objective") is not None and other is not None:
        text += (
            f' <span class="dim">vs {num(decision.get("current_objective"))} of '
            f"{esc(other, 60)}</span>"
        )
    return text


def _reason(decision: dict[str, Any] | None) -> str:
    if decision is None:
        return ""
    reason = decision.get("reason")
    return f'<span class="reason">{esc(reason)}</span>' if reason is not None else ""


def _baseline(run_id: str, baseline: dict[str, Any]) -> str:
    """Where the run's training-data baseline is and what it describes, or why there is none."""
    channels = baseline.get("channels")
    channels = channels if isinstance(channels, dict) else {}
    described, skipped = [], []
    for name, summary in list(channels.items())[:10]:
        summary = summary if isinstance(summary, dict) else {}
        if "skipped" in summary:
            skipped.append(f"{esc(name, 60)}: {esc(summary.get('skipped'), 120)}")
        else:
            described.append(
                f"{esc(name, 60)} ({num(summary.get('rows'))} rows, "
                f"{num(summary.get('features'))} features)"
            )
    where = baseline.get("directory")
    if not (where and described):
        problem = baseline.get("problem")
        why = esc(problem) if problem else "; ".join(skipped) or "no tabular training channel"
        return f'<span class="dim">none: {why}</span>'
    text = f"<code>{MODELS}/{esc(run_id)}/{esc(where, 60)}/</code>: {', '.join(described)}"
    if skipped:
        text += f' <span class="dim">(skipped {"; ".join(skipped)})</span>'
    return text


def section_current(current: Current, now: datetime) -> str:
    head = '<section id="current-model"><h2>The current model</h2>'
    if current.problem:
        return head + missing(current.problem) + "</section>"
    if current.run_id is None or current.run is None:
        return (
            head + '<p class="empty" data-run-id="">no model promoted yet '
            f"(there is no {MODELS}/{CURRENT})</p></section>"
        )
    run = current.run
    label, kind, _ = _decision(run.decision)
    rows = [
        ("run", f'<strong data-run-id="{esc(run.run_id)}">{esc(run.run_id)}</strong>'),
        ("recorded", when(run.when, now)),
        ("training", _outcome(run.report)),
        ("objective", _objective(run.decision)),
        ("gate", f"{badge(label, kind)} {_reason(run.decision)}"),
    ]
    report = run.report or {}
    files = report.get("files")
    if isinstance(files, dict):
        rows.append(("model files", f"{len(files):,}"))
    baseline = report.get("baseline")
    if isinstance(baseline, dict):
        rows.append(("baseline", _baseline(run.run_id, baseline)))
    body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    problems = "".join(missing(problem) for problem in run.problems)
    return f'{head}<table class="facts">{body}</table>{problems}</section>'


def section_runs(runs: Runs, current: str | None, now: datetime) -> str:
    head = '<section id="runs"><h2>Runs and gate decisions</h2>'
    if runs.problem:
        return head + notice(runs.problem, runs.absent) + "</section>"
    if not runs.runs:
        return head + '<p class="empty">no runs yet</p></section>'
    shown = len(runs.runs)
    note = f"the newest {shown} of {runs.found:,}" if runs.found > shown else f"{shown}"
    notes = [f"{note} run(s) with a report or a decision, newest first"]
    if runs.entries_capped:
        notes.append(f"only the first {MAX_RUN_ENTRIES:,} entries of {MODELS}/ were looked at")
    if runs.symlinks:
        notes.append(f"{runs.symlinks} symlinked entr(ies) in {MODELS}/ not followed")
    rows = []
    for run in runs.runs:
        label, kind, value = _decision(run.decision)
        is_current = run.run_id == current
        mark = " " + badge("current", "current") if is_current else ""
        problems = "".join(f'<div class="missing">{esc(p)}</div>' for p in run.problems)
        rows.append(
            f'<tr data-run-id="{esc(run.run_id)}" data-decision="{value}" '
            f'data-current="{str(is_current).lower()}">'
            f"<td><code>{esc(run.run_id)}</code>{mark}</td><td>{when(run.when, now)}</td>"
            f"<td>{_outcome(run.report)}</td><td>{_objective(run.decision)}</td>"
            f"<td>{badge(label, kind)} {_reason(run.decision)}{problems}</td></tr>"
        )
    return (
        f'{head}<p class="dim">{"; ".join(notes)}</p><table><thead><tr><th>run</th>'
        "<th>when</th><th>training</th><th>objective</th><th>decision and why</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _count(hour: Hour) -> str:
    if not hour.lower_bound:
        return f"{hour.counted:,}"
    text = f"≥ {hour.counted:,}"
    if hour.estimate > hour.counted:
        text += f' <span class="dim">(≈ {hour.estimate:,} by file size)</span>'
    return text


def _tick(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else f"{value:g}"


def capture_chart(capture: Capture) -> str:
    width, height, left, right, top, bottom = 960, 200, 56, 10, 12, 38
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = nice_ceiling(max((hour.estimate for hour in capture.hours), default=0))
    slot = plot_w / len(capture.hours)
    parts = []
    for tick in (0, peak / 2, peak):
        y = top + plot_h - plot_h * tick / peak
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_tick(tick)}</text>'
        )
    for index, hour in enumerate(capture.hours):
        x = left + index * slot
        if hour.start.hour % 6 == 0 or index == 0:
            label = f"{hour.start:%H}:00"
            day = f"{hour.start:%b %d}" if hour.start.hour == 0 or index == 0 else ""
            parts.append(
                f'<text x="{x:.1f}" y="{top + plot_h + 14}">{label}</text>'
                + (f'<text x="{x:.1f}" y="{top + plot_h + 28}">{day}</text>' if day else "")
            )
        if not hour.estimate:
            continue
        bar_h = max(1.0, plot_h * hour.estimate / peak)
        kind = "bar estimate" if hour.lower_bound else "bar"
        title = f"{hour.start:%Y-%m-%d %H}:00 UTC: " + (
            f"at least {hour.counted:,} records (about {hour.estimate:,})"
            if hour.lower_bound
            else f"{hour.counted:,} records"
        )
        parts.append(
            f'<rect class="{kind}" data-hour="{hour.key}" data-count="{hour.counted}" '
            f'data-lower-bound="{str(hour.lower_bound).lower()}" x="{x + slot * 0.12:.1f}" '
            f'y="{top + plot_h - bar_h:.1f}" width="{slot * 0.76:.1f}" height="{bar_h:.1f}">'
            f"<title>{esc(title)}</title></rect>"
        )
    return (
        f'<svg id="capture-chart" role="img" viewBox="0 0 {width} {height}" '
        f'aria-label="captured records an hour, last {CAPTURE_HOURS} hours">{"".join(parts)}</svg>'
    )


def section_capture(capture: Capture) -> str:
    head = (
        f'<section id="capture"><h2>Capture volume</h2><p class="dim">records an hour in '
        f"<code>{CAPTURE}/{esc(capture.name)}/{VARIANT}/</code>, last {CAPTURE_HOURS} hours "
        "(UTC)</p>"
    )
    if capture.problem:
        return head + notice(capture.problem, capture.absent) + "</section>"
    total = f"{capture.counted:,}"
    if capture.lower_bound:
        total = f"at least {total} (about {capture.estimate:,}: some files were read in part)"
    last = capture.hours[-1]
    summary = (
        f'<p id="capture-total" data-records="{capture.counted}" '
        f'data-lower-bound="{str(capture.lower_bound).lower()}"><strong>{total}</strong> '
        f"records in the last {CAPTURE_HOURS} hours; {_count(last)} this hour so far.</p>"
    )
    rows = []
    for hour in reversed(capture.hours):
        if not (hour.files or hour.problems):
            continue
        problems = "".join(f'<div class="missing">{esc(p)}</div>' for p in hour.problems[:5])
        rows.append(
            f'<tr data-hour="{hour.key}" data-records="{hour.counted}">'
            f"<td>{hour.start:%Y-%m-%d %H}:00</td><td class=num>{_count(hour)}</td>"
            f"<td class=num>{hour.files}</td><td>{problems}</td></tr>"
        )
    table = (
        '<table id="capture-hours"><thead><tr><th>hour (UTC)</th><th class=num>records</th>'
        f"<th class=num>files</th><th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        '<p class="dim">hours without a capture file are not listed</p>'
        if rows
        else '<p class="empty">no capture file in these hours</p>'
    )
    return f"{head}{summary}{capture_chart(capture)}{table}</section>"


def drift_chart(checks: list[Check]) -> str:
    points = [c for c in checks if c.at is not None and c.largest is not None]
    points = points[-MAX_PLOTTED_CHECKS:]
    if not points:
        return '<p class="empty">no check with a feature distance to plot</p>'
    width, height, left, right, top, bottom = 960, 240, 56, 16, 14, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    # The history is in the order checks were written; a clock that stepped back still plots.
    first = min(c.at for c in points if c.at is not None)
    last = max(c.at for c in points if c.at is not None)
    span = (last - first).total_seconds() or 1.0
    peak = nice_ceiling(
        1.05 * max(max(c.largest.distance or 0.0, c.threshold or 0.0) for c in points if c.largest)
    )

    def x_of(moment: datetime) -> float:
        if len(points) == 1:
            return left + plot_w / 2
        return left + plot_w * (moment - first).total_seconds() / span

    def xy(check: Check, value: float) -> tuple[float, float]:
        assert check.at is not None
        return x_of(check.at), top + plot_h - plot_h * min(value, peak) / peak

    parts = []
    for tick in (0, peak / 2, peak):
        y = top + plot_h - plot_h * tick / peak
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.3g}</text>'
        )
    for moment, anchor in ((first, "start"), (last, "end")):
        anchor = "middle" if len(points) == 1 else anchor
        parts.append(
            f'<text x="{x_of(moment):.1f}" y="{top + plot_h + 16}" text-anchor="{anchor}">'
            f"{moment:%Y-%m-%d %H:%M}</text>"
        )
    limits = [xy(c, c.threshold) for c in points if c.threshold is not None]
    if limits:
        steps = [limits[0]]
        for x, y in limits[1:]:
            steps += [(x, steps[-1][1]), (x, y)]
        if len(steps) == 1:
            steps = [(left, steps[0][1]), (width - right, steps[0][1])]
        parts.append(
            f'<polyline id="drift-threshold" class="threshold" points="'
            f'{" ".join(f"{x:.1f},{y:.1f}" for x, y in steps)}"/>'
        )
    line = [xy(c, c.largest.distance or 0.0) for c in points if c.largest]
    parts.append(
        f'<polyline class="distance" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in line)}"/>'
    )
    for check, (x, y) in zip(points, line, strict=True):
        largest = check.largest
        assert largest is not None and check.at is not None
        title = (
            f"{check.at:%Y-%m-%d %H:%M} UTC: largest distance {largest.distance:.4g} "
            f"({largest.name}), threshold {num(check.threshold)}"
        )
        if check.drifted:
            title += f"; drifted: {', '.join(check.drifted[:10])}"
        event_id = check.sent
        if event_id is not None:
            title += f"; drift event {event_id}"
            parts.append(
                f'<circle class="event" data-event="{esc(event_id, 200)}" cx="{x:.1f}" '
                f'cy="{y:.1f}" r="8"/>'
            )
        kind = "point drifted" if check.any_drift else "point"
        parts.append(
            f'<circle class="{kind}" data-checked-at="{esc(check.raw.get("checked_at"), 40)}" '
            f'data-distance="{largest.distance}" cx="{x:.1f}" cy="{y:.1f}" r="4">'
            f"<title>{esc(title, 600)}</title></circle>"
        )
    legend = (
        f'<g class="legend" transform="translate({left},{height - 8})">'
        '<circle class="point" cx="4" cy="-4" r="4"/><text x="12" y="0">largest distance</text>'
        '<line class="threshold" x1="130" x2="160" y1="-4" y2="-4"/>'
        '<text x="166" y="0">threshold</text>'
        '<circle class="point drifted" cx="250" cy="-4" r="4"/><text x="258" y="0">drift</text>'
        '<circle class="event" cx="320" cy="-4" r="7"/><text x="332" y="0">sent a drift event'
        "</text></g>"
    )
    return (
        f'<svg id="drift-chart" role="img" viewBox="0 0 {width} {height}" aria-label="largest '
        f'feature distance a check, over time">{"".join(parts)}{legend}</svg>'
    )


def _features_table(check: Check) -> str:
    features = features_of(check.raw)
    if not features:
        return '<p class="empty">this check lists no features</p>'
    critical = any(f.critical is not None for f in features)
    rows = []
    for rank, feature in enumerate(features[:TOP_FEATURES], 1):
        drifted = feature.drifted
        flag = badge("drift", "bad") if drifted else "no" if drifted is False else "?"
        share = 0.0
        if feature.distance is not None and feature.threshold:
            share = min(1.0, feature.distance / (2 * feature.threshold))
        meter = (
            f'<svg class="meter" viewBox="0 0 100 8" aria-hidden="true"><rect class="track" '
            f'width="100" height="8"/><rect class="{"bad" if drifted else "fill"}" '
            f'width="{100 * share:.1f}" height="8"/><line x1="50" x2="50" y1="0" y2="8"/></svg>'
        )
        rows.append(
            f'<tr data-feature="{esc(feature.name, 200)}" '
            f'data-drift="{str(bool(drifted)).lower()}"><td class=num>{rank}</td>'
            f"<td><code>{esc(feature.name, 200)}</code></td>"
            f"<td class=num>{num(feature.distance)}</td><td>{meter}</td>"
            f"<td class=num>{num(feature.threshold)}</td>"
            + (f"<td class=num>{num(feature.critical)}</td>" if critical else "")
            + f"<td>{flag}</td></tr>"
        )
    rest = features[TOP_FEATURES:]
    more = ""
    if rest:
        hidden = [f.name for f in rest if f.drifted]
        more = f'<p id="drift-more" data-count="{len(rest)}">and {len(rest):,} more feature(s)'
        if hidden:
            more += f", of which {len(hidden):,} drifted: " + ", ".join(
                f"<code>{esc(name, 100)}</code>" for name in hidden[:20]
            )
        more += "</p>"
    return (
        '<table id="drift-features"><thead><tr><th class=num>#</th><th>feature</th>'
        '<th class=num>distance</th><th><span class="dim">vs threshold (middle)</span></th>'
        "<th class=num>threshold</th>"
        + ("<th class=num>critical</th>" if critical else "")
        + f"<th>drift</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"
    )


def _figures(title: str, part: Any, keys: Iterable[str], element_id: str) -> str:
    """The output or quality figures of a check, when it has them."""
    if not isinstance(part, dict):
        return ""
    cells = []
    for key in keys:
        if key not in part:
            continue
        value = part[key]
        if key == "drift":
            shown = badge("drift", "bad") if value is True else "no" if value is False else "?"
        elif key == "note":
            shown = esc(value)
        elif isinstance(value, str):
            shown = f"<code>{esc(value, 100)}</code>"
        else:
            shown = num(value)
        cells.append(f"<tr><th>{esc(key)}</th><td>{shown}</td></tr>")
    return (
        f'<div id="{element_id}"><h3>{title}</h3><table class="facts">{"".join(cells)}</table>'
        "</div>"
    )


def _last_check(check: Check, now: datetime) -> str:
    raw = check.raw
    decided = raw.get("decided")
    facts = [
        ("checked", when(check.at, now) if check.at else esc(raw.get("checked_at"), 60)),
        ("model run", f"<code>{esc(raw.get('run_id'), 128)}</code>"),
        ("baseline channel", esc(raw.get("channel"), 60)),
        ("rows compared", num(raw.get("rows"))),
        ("records", num(raw.get("records"))),
        ("malformed records", num(raw.get("malformed"))),
        ("decided", "yes" if decided is True else "no" if decided is False else "?"),
    ]
    if raw.get("since") or raw.get("until"):
        facts.append(
            ("capture read", f"{esc(raw.get('since'), 40)} to {esc(raw.get('until'), 40)}")
        )
    if raw.get("note"):
        facts.append(("note", esc(raw.get("note"))))
    if raw.get("report"):
        facts.append(("report", f"<code>{MODEL_MONITOR}/{esc(raw.get('report'))}</code>"))
    return (
        '<table class="facts">'
        + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
        + "</table>"
    )


def section_drift(history: History, now: datetime) -> str:
    head = (
        f'<section id="drift"><h2>Drift</h2><p class="dim">from <code>{HISTORY}</code>, one '
        "line a monitor check</p>"
    )
    if history.problem:
        return head + notice(history.problem, history.absent) + "</section>"
    notes = [f"{len(history.checks):,} check(s) read"]
    if history.skipped_bytes:
        notes.append(
            f"only the last {HISTORY_TAIL_BYTES >> 10:,} KiB were read; "
            f"{history.skipped_bytes:,} bytes of older checks are not shown"
        )
    if history.bad_lines:
        notes.append(f"{history.bad_lines:,} damaged line(s) skipped")
    undecided = sum(1 for c in history.checks if c.largest is None)
    if undecided:
        notes.append(f"{undecided:,} check(s) without feature distances are not plotted")
    no_time = sum(1 for c in history.checks if c.at is None and c.largest is not None)
    if no_time:
        notes.append(f"{no_time:,} check(s) without a readable checked_at are not plotted")
    plotted = sum(1 for c in history.checks if c.at is not None and c.largest is not None)
    if plotted > MAX_PLOTTED_CHECKS:
        notes.append(f"the chart shows the last {MAX_PLOTTED_CHECKS} of {plotted:,}")
    note = f'<p id="drift-notes" data-bad-lines="{history.bad_lines}">{"; ".join(notes)}</p>'
    if not history.checks:
        return head + note + '<p class="empty">no readable check yet</p></section>'
    last = history.checks[-1]
    with_features = [c for c in history.checks if c.feature_count]
    table_check = with_features[-1] if with_features else last
    table_note = ""
    if table_check is not last:
        table_note = (
            '<p class="dim">the newest check lists no features; these are of the check at '
            f"{esc(table_check.raw.get('checked_at'), 40)}</p>"
        )
    return (
        f"{head}{note}<h3>Largest feature distance, each check</h3>{drift_chart(history.checks)}"
        f"<h3>The last check</h3>{_last_check(last, now)}"
        f"<h3>Features of the last check, by distance</h3>{table_note}"
        f"{_features_table(table_check)}"
        '<div class="figures">'
        + _figures(
            "Output",
            last.raw.get("output"),
            ("field", "baseline", "distance", "threshold", "drift", "note"),
            "drift-output",
        )
        + _figures(
            "Quality",
            last.raw.get("quality"),
            ("key", "live", "model", "labels", "margin", "drift", "note"),
            "drift-quality",
        )
        + "</div></section>"
    )


def _event_status(event: dict[str, Any], event_id: str | None) -> str:
    if event_id is not None:
        return f"<code>{esc(event_id, 200)}</code>"
    why = event.get("error") or event.get("note") or "no event id recorded"
    return f"{badge('not sent', 'bad' if event.get('error') else 'none')} {esc(why)}"


def section_events(history: History, now: datetime) -> str:
    """Each check that found a reason for a drift event, newest first: those sent with their id,
    the others (events off, cooling down, a failed put) with why not."""
    head = '<section id="events"><h2>Drift events</h2>'
    if history.problem:
        return head + notice(history.problem, history.absent) + "</section>"
    found = [c for c in history.checks if c.event is not None][::-1]
    if not found:
        return head + '<p class="empty">no drift event in the checks read</p></section>'
    rows = []
    for check in found[:MAX_EVENTS]:
        event = check.event or {}
        reasons = event.get("reasons")
        reasons = reasons if isinstance(reasons, list) else []
        items = "".join(f"<li>{esc(r)}</li>" for r in reasons[:MAX_REASONS])
        if len(reasons) > MAX_REASONS:
            items += f"<li class=dim>and {len(reasons) - MAX_REASONS} more</li>"
        event_id = check.sent
        rows.append(
            f'<tr data-event-id="{esc(event_id or "", 200)}" '
            f'data-sent="{str(event_id is not None).lower()}"><td>'
            f"{when(check.at, now) if check.at else esc(check.raw.get('checked_at'), 40)}</td>"
            f"<td><code>{esc(check.raw.get('run_id'), 128)}</code></td>"
            f"<td><ul>{items}</ul></td><td>{_event_status(event, event_id)}</td></tr>"
        )
    sent = sum(1 for c in found if c.sent is not None)
    summary = f"{sent} sent, {len(found) - sent} not sent, in the checks read"
    if len(found) > MAX_EVENTS:
        summary += f"; the newest {MAX_EVENTS} of {len(found)} are listed"
    return (
        f'{head}<p class="dim">{summary}</p><table><thead><tr><th>when</th><th>model run</th>'
        f"<th>reasons</th><th>event id</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        "</section>"
    )


STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1d232b; background: #fff;
  max-width: 1100px; margin: 0 auto; padding: 1rem 1.5rem 3rem }
h1 { font-size: 1.5rem; margin: .2rem 0 }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; padding-bottom: .2rem;
  border-bottom: 1px solid #d8dde3 }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem }
header p { margin: .2rem 0 }
table { border-collapse: collapse; width: 100%; font-size: .9rem }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #eceff2;
  vertical-align: top }
thead th { background: #f5f7f9 }
.facts { width: auto }
.facts th { font-weight: 600; color: #4a535e; padding-right: 1.5rem }
.num { text-align: right; font-variant-numeric: tabular-nums }
code { font-size: .88em; word-break: break-all }
ul { margin: 0; padding-left: 1.1rem }
.dim { color: #68717c }
.reason { color: #333 }
.empty { color: #68717c; font-style: italic }
.missing { color: #6b4a00; background: #fff7e0; border-left: 3px solid #e0a800;
  padding: .3rem .6rem; margin: .3rem 0 }
.badge { display: inline-block; padding: 0 .5rem; border-radius: .7rem; font-size: .8rem;
  font-weight: 600; white-space: nowrap }
.ok { background: #dcf3e1; color: #125a24 }
.kept { background: #e9ecf0; color: #39424d }
.bad { background: #fde0de; color: #8d1a14 }
.wait { background: #fff0c8; color: #6e4d00 }
.none { background: #f1f1f1; color: #68717c }
.current { background: #1f5fbf; color: #fff }
svg { width: 100%; height: auto; display: block; margin: .4rem 0 }
svg text { font: 11px system-ui, sans-serif; fill: #5a636e }
.grid { stroke: #e3e7eb }
.bar { fill: #3a7bd5 }
.bar.estimate { fill: #9bbce8 }
.distance { fill: none; stroke: #3a7bd5; stroke-width: 2 }
.threshold { fill: none; stroke: #d0342c; stroke-width: 1.5; stroke-dasharray: 6 4 }
.point { fill: #3a7bd5; stroke: #fff; stroke-width: 1 }
.point.drifted { fill: #d0342c }
.event { fill: none; stroke: #d0342c; stroke-width: 2 }
.meter { width: 100px; height: 8px; margin: .45rem 0 0 }
.meter .track { fill: #eceff2 }
.meter .fill { fill: #3a7bd5 }
.meter rect.bad { fill: #d0342c }
.meter line { stroke: #1d232b; stroke-width: 1 }
.figures { display: flex; gap: 3rem; flex-wrap: wrap }
"""


def render_page(settings: Settings, now: datetime | None = None) -> str:
    """The whole page, every part read from the store now. A part that fails to build is shown
    as a problem in its place, and the rest of the page still comes."""
    now = now or datetime.now(UTC)
    store = settings.store
    warning = ""
    if not store.is_dir():
        warning = missing(f"{Env.STORE_DIR}={store} is not a directory (is the store mounted?)")

    def guarded(section: str, build: Callable[[], str]) -> str:
        try:
            return build()
        except Exception as exc:  # a bug met by strange data: the rest of the page still helps
            print(f"page: {section}: {one_line(repr(exc), 500)}", file=sys.stderr, flush=True)
            return f'<section id="{section}">{missing(f"this part failed: {exc!r}")}</section>'

    try:
        current = read_current_model(store)
    except Exception as exc:
        current = Current(None, None, f"models/{CURRENT} could not be read: {exc!r}")
    try:
        history = read_history(store)
    except Exception as exc:
        history = History(problem=f"{HISTORY} could not be read: {exc!r}")
    sections = [
        guarded("current-model", lambda: section_current(current, now)),
        guarded("runs", lambda: section_runs(read_runs(store), current.run_id, now)),
        guarded(
            "capture", lambda: section_capture(read_capture(store, settings.capture_name, now))
        ),
        guarded("drift", lambda: section_drift(history, now)),
        guarded("events", lambda: section_events(history, now)),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<link rel="icon" href="data:,"><title>The model: runs, capture and drift</title>'
        f"<style>{STYLE}</style></head><body><header><h1>The model: runs, capture and drift</h1>"
        f'<p class="dim">store <code>{esc(str(store), 200)}</code> · read {now:%Y-%m-%d %H:%M:%S}'
        f" UTC · this page reloads every {REFRESH_SECONDS} s</p>{warning}</header>"
        f"{''.join(sections)}</body></html>"
    )


# ------------------------------------------------------------------------------ the server
class PageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, settings: Settings, host: str = "0.0.0.0") -> None:
        self.settings = settings
        self.pages = 0
        self.count_lock = threading.Lock()
        super().__init__((host, settings.port), PageHandler)


class PageHandler(BaseHTTPRequestHandler):
    server: PageServer
    server_version = "mlops-page"
    sys_version = ""

    def version_string(self) -> str:
        return self.server_version

    timeout = REQUEST_TIMEOUT_SECONDS

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def __getattr__(self, name: str) -> Any:
        # Every other method (POST, PUT, DELETE, and any token a client invents): 405, where
        # BaseHTTPRequestHandler would answer 501 to a method it has no do_ for.
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self._send(
            405,
            "text/plain; charset=utf-8",
            b"method not allowed: GET or HEAD\n",
            True,
            {"Allow": "GET, HEAD", "Connection": "close"},
        )
        self.close_connection = True

    def _answer(self, with_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            try:
                body = render_page(self.server.settings).encode("utf-8", "replace")
            except Exception as exc:
                self.log_error("the page failed: %s", repr(exc))
                self._send(500, "text/plain; charset=utf-8", b"the page failed\n", with_body)
                return
            with self.server.count_lock:
                self.server.pages += 1
            self._send(200, "text/html; charset=utf-8", body, with_body)
        elif path == "/health":
            self._send(200, "application/json", b'{"status": "ok"}\n', with_body)
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /\n", with_body)

    def _send(
        self,
        status: int,
        content_type: str,
        body: bytes,
        with_body: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Errors only (log_error), one printable line: a request line is the client's text."""

    def log_error(self, format: str, *args: Any) -> None:
        print(f"page: {one_line(format % args, 500)}", file=sys.stderr, flush=True)


def page() -> str:
    """Serves until SIGTERM; returns the final line."""
    settings = read_settings()
    server = PageServer(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever, name="page", daemon=True)
    serving.start()
    print(
        json.dumps(
            {
                "event": "page-listening",
                "port": settings.port,
                "store": str(settings.store),
                "capture": settings.capture_name,
            }
        ),
        flush=True,
    )
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    return json.dumps({"event": "page-stopped", "pages": server.pages})
