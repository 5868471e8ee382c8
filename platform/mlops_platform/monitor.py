"""monitor: the platform's model monitor, for any workload that serves with data capture on. A
scheduled task of the stack runs it (docs/monitoring.md); it reads what it needs from the store.

1. The window: every complete line of capture/<MLOPS_CAPTURE_NAME>/AllTraffic/yyyy/mm/dd/hh/*.jsonl
   (capture.py) not read by an earlier check; state.json keeps, per file, how far it was read.
   Exchanges the server did not answer with 200 are counted, not compared. Fewer rows than
   MLOPS_MONITOR_MIN_ROWS decide nothing and are read again, with what came since, by the next
   check. At most MAX_WINDOW_BYTES a check: the rest waits for the next.
2. The comparison (drift.py): each feature of the window with the baseline of the current
   model's training channel (models/<CURRENT>/baseline/<channel>/), and with MLOPS_MONITOR_OUTPUT
   the model's answers (one field of each answer) with one baseline feature (the training label).
3. Model quality: ground truth (ground-truth/**/*.jsonl, SageMaker's format: groundTruthData.data
   and eventMetadata.eventId) joined by event id with the captured answers of the last
   JOIN_DAYS days gives the live objective (MLOPS_OBJECTIVE_KEY: accuracy, error, mae, mse or
   rmse); it drifts when it falls short of the model's own (its decision's objective) by more
   than MLOPS_MONITOR_QUALITY_MARGIN, once MLOPS_MONITOR_MIN_ROWS labels are in.
4. What it leaves: monitoring/model/reports/<time>.json (every figure), one line of
   monitoring/model/history.jsonl (the page's), CloudWatch metrics as Embedded Metric Format lines
   on stdout, which CloudWatch Logs turns into metrics (namespace mlops/ModelMonitor:
   BaselineDrift by Stack and Feature; RowsChecked, DriftedFeatures, OutputDrift, LiveObjective,
   DriftEvents by Stack). https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
5. On drift, with MLOPS_MONITOR_EVENTS=eventbridge: the `DataDriftDetected` event (source
   `mlops.monitoring`) the forecaster's monitor puts, on EVENT_BUS_NAME, where the stack's drift
   rule starts a retraining; at most one per MLOPS_MONITOR_COOLDOWN_HOURS, whatever the model.
6. Retention: capture hours older than MLOPS_CAPTURE_RETENTION_DAYS are deleted, and reports too.

One check at a time (a lock in monitoring/model/); a second one exits at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mlops_contract import (
    BASELINE_DIR,
    CAPTURE,
    DECISION_FILE,
    GROUND_TRUTH,
    MODEL_MONITOR,
    MODELS,
    Env,
    atomic_write,
)

from .drift import Column, Reference, Verdict, compare, load_baseline, number, side_rows, text
from .files import read_bounded, read_current_quietly, read_record
from .inputs import Outcome, Refused, json_object, one_line, parse_json, store_dir

VARIANT = "AllTraffic"
EVENT_SOURCE = "mlops.monitoring"
EVENT_DETAIL_TYPE = "DataDriftDetected"
NAMESPACE = "mlops/ModelMonitor"
MAX_WINDOW_BYTES = 256 << 20
MAX_LINE_BYTES = 8 << 20
JOIN_DAYS = 7
HISTORY_MAX_BYTES = 8 << 20
STATE_MAX_BYTES = 16 << 20
QUALITY_KEYS = ("accuracy", "error", "mae", "mse", "rmse")
_HOUR = re.compile(r"^\d{4}/\d{2}/\d{2}/\d{2}$")


@dataclass(frozen=True)
class Settings:
    channel: str
    threshold: float
    thresholds: dict[str, float]
    min_rows: int
    output: dict[str, str] | None
    quality_margin: float
    cooldown_hours: float
    events: bool
    bus: str
    region: str | None
    stack: str
    capture_name: str
    retention_days: int
    objective_key: str
    objective_direction: str


def _number(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    x = number(raw)
    if x is None or not low <= x <= high:
        raise Refused(f"{name}={raw[:40]!r} must be a number from {low:g} to {high:g}")
    return x


def read_settings() -> Settings:
    thresholds = json_object(Env.MONITOR_THRESHOLDS)
    for name, value in thresholds.items():
        if number(value) is None or not 0 < float(value) <= 1:
            raise Refused(f"{Env.MONITOR_THRESHOLDS}: {name!r} must be a distance in (0, 1]")
    output = os.environ.get(Env.MONITOR_OUTPUT, "")
    out: dict[str, str] | None = None
    if output:
        spec = json_object(Env.MONITOR_OUTPUT)
        if set(spec) != {"field", "baseline"} or not all(
            isinstance(v, str) and v for v in spec.values()
        ):
            raise Refused(f'{Env.MONITOR_OUTPUT} must be {{"field": ..., "baseline": ...}}')
        out = dict(spec)
    events = os.environ.get(Env.MONITOR_EVENTS, "")
    if events not in ("", "eventbridge"):
        raise Refused(f"{Env.MONITOR_EVENTS}={events[:40]!r}: use eventbridge, or leave it unset")
    direction = os.environ.get(Env.OBJECTIVE_DIRECTION, "") or "maximize"
    if direction not in ("maximize", "minimize"):
        raise Refused(f"{Env.OBJECTIVE_DIRECTION}={direction[:40]!r}: maximize or minimize")
    return Settings(
        channel=os.environ.get(Env.MONITOR_CHANNEL, ""),
        threshold=_number(Env.MONITOR_THRESHOLD, 0.1, 1e-6, 1.0),
        thresholds={k: float(v) for k, v in thresholds.items()},
        min_rows=int(_number(Env.MONITOR_MIN_ROWS, 200, 1, 1e9)),
        output=out,
        quality_margin=_number(Env.MONITOR_QUALITY_MARGIN, 0.05, 0.0, 1e12),
        cooldown_hours=_number(Env.MONITOR_COOLDOWN_HOURS, 24, 0, 24 * 365),
        events=events == "eventbridge",
        bus=os.environ.get(Env.EVENT_BUS_NAME, "") or "default",
        region=os.environ.get(Env.AWS_REGION) or None,
        stack=os.environ.get(Env.STACK, "") or "local",
        capture_name=os.environ.get(Env.CAPTURE_NAME, "") or "inference",
        retention_days=int(_number(Env.CAPTURE_RETENTION_DAYS, 30, 0, 3650)),
        objective_key=os.environ.get(Env.OBJECTIVE_KEY, ""),
        objective_direction=direction,
    )


# ------------------------------------------------------------------------------ reading capture
@dataclass
class Window:
    """What the check read: the records' rows, by the capture file and offset they came from."""

    records: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    not_ok: int = 0
    malformed: int = 0
    unreadable: dict[str, int] = field(default_factory=dict)
    """Records not read, by reason (a BASE64 body, JSON that is not)."""
    offsets: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    first: str | None = None
    last: str | None = None


def hour_directories(root: Path) -> list[tuple[str, Path]]:
    """capture/<name>/AllTraffic's hour directories, oldest first, as ("yyyy/mm/dd/hh", path)."""
    found: list[tuple[str, Path]] = []

    def walk(directory: Path, parts: list[str]) -> None:
        try:
            children = sorted(os.scandir(directory), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in children:
            if not entry.is_dir(follow_symlinks=False) or not entry.name.isdigit():
                continue
            if len(parts) == 3:
                found.append(("/".join([*parts, entry.name]), Path(entry.path)))
            else:
                walk(Path(entry.path), [*parts, entry.name])

    walk(root, [])
    return [(hour, path) for hour, path in found if _HOUR.match(hour)]


def _complete_lines(path: Path, offset: int, budget: int) -> tuple[list[bytes], int]:
    """The complete lines of `path` after `offset`, at most about `budget` bytes of them; the
    offset after the last one."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        handle.seek(offset)
        data = handle.read(max(budget, 1))
    end = data.rfind(b"\n")
    if end < 0:
        # A line longer than the budget: skip it whole once it is complete.
        return [], offset
    return data[: end + 1].splitlines(), offset + end + 1


def read_window(
    capture: Path, offsets: dict[str, int], order: list[str], output_field: str | None
) -> Window:
    window = Window()
    budget = MAX_WINDOW_BYTES
    for hour, directory in hour_directories(capture):
        for path in sorted(directory.glob("*.jsonl")):
            key = f"{hour}/{path.name}"
            start = offsets.get(key, 0)
            try:
                if path.stat().st_size <= start or budget <= 0:
                    window.offsets[key] = start
                    continue
                lines, end = _complete_lines(path, start, min(budget, MAX_WINDOW_BYTES))
            except OSError:
                window.offsets[key] = start
                continue
            budget -= end - start
            window.bytes += end - start
            window.offsets[key] = end
            for line in lines:
                _take(window, line, order, output_field)
    return window


def _take(window: Window, line: bytes, order: list[str], output_field: str | None) -> None:
    if not line.strip():
        return
    try:
        record = json.loads(line)
        data = record["captureData"]
        meta = record.get("eventMetadata", {})
    except (ValueError, KeyError, TypeError):
        window.malformed += 1
        return
    window.records += 1
    when = meta.get("inferenceTime") if isinstance(meta, dict) else None
    if isinstance(when, str):
        window.first = min(window.first or when, when)
        window.last = max(window.last or when, when)
    status = meta.get("responseStatus", 200) if isinstance(meta, dict) else 200
    if status != 200:
        window.not_ok += 1
        return
    try:
        rows = side_rows(data.get("endpointInput"), order)
    except (ValueError, RecursionError) as exc:
        reason = one_line(str(exc), 80)
        window.unreadable[reason] = window.unreadable.get(reason, 0) + 1
        return
    window.rows.extend(rows)
    if output_field is not None:
        with contextlib.suppress(ValueError, RecursionError):
            answers = side_rows(data.get("endpointOutput"), [output_field], output=True)
            window.answers.extend(answers)


# ------------------------------------------------------------------------------ the check
def _columns(rows: list[dict[str, Any]], references: dict[str, Reference]) -> dict[str, Column]:
    columns = {name: Column() for name in references}
    for row in rows:
        for name, value in row.items():
            if name in columns:
                columns[name].add(value, references[name].numeric)
    return columns


def drift_figures(
    window: Window, references: dict[str, Reference], settings: Settings
) -> tuple[dict[str, Verdict], Verdict | None, int]:
    """Per-feature verdicts, the output's (or None), and how many rows were compared."""
    columns = _columns(window.rows, references)
    entries = [(name, references[name], columns[name]) for name in references]
    output_entry = None
    if settings.output is not None and settings.output["baseline"] in references:
        reference = references[settings.output["baseline"]]
        column = Column()
        for answer in window.answers:
            if settings.output["field"] in answer:
                column.add(answer[settings.output["field"]], reference.numeric)
        output_entry = ("__output__", reference, column)
        entries.append(output_entry)
    verdicts = compare(entries, settings.thresholds, settings.threshold)
    output = verdicts.pop("__output__", None)
    return verdicts, output, len(window.rows)


# ------------------------------------------------------------------------------ quality
def _ground_truth(store: Path, offsets: dict[str, int]) -> tuple[dict[str, str], dict[str, int]]:
    labels: dict[str, str] = {}
    new_offsets: dict[str, int] = {}
    root = store / GROUND_TRUTH
    if not root.is_dir():
        return labels, new_offsets
    budget = MAX_WINDOW_BYTES
    for path in sorted(root.rglob("*.jsonl")):
        if path.is_symlink() or not path.is_file():
            continue
        key = str(path.relative_to(root))
        start = offsets.get(key, 0)
        lines, end = _complete_lines(path, start, budget) if budget > 0 else ([], start)
        budget -= end - start
        new_offsets[key] = end
        for line in lines:
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                record = json.loads(line)
                labels[str(record["eventMetadata"]["eventId"])] = str(
                    record["groundTruthData"]["data"]
                )
    return labels, new_offsets


def _answers_for(capture: Path, ids: set[str], field_name: str, now: datetime) -> dict[str, list]:
    """The captured answers (their `field_name` values, a list per request) of `ids`, from the
    last JOIN_DAYS days of capture."""
    oldest = (now - timedelta(days=JOIN_DAYS)).strftime("%Y/%m/%d/%H")
    found: dict[str, list] = {}
    for hour, directory in hour_directories(capture):
        if hour < oldest:
            continue
        for path in sorted(directory.glob("*.jsonl")):
            with contextlib.suppress(OSError), path.open("rb") as handle:
                for line in handle:
                    if b'"eventId"' not in line:
                        continue
                    with contextlib.suppress(ValueError, KeyError, TypeError, RecursionError):
                        record = json.loads(line)
                        event = record["eventMetadata"]["eventId"]
                        if event in ids:
                            answers = side_rows(
                                record["captureData"]["endpointOutput"], [field_name], output=True
                            )
                            found[event] = [a.get(field_name) for a in answers]
    return found


def live_objective(key: str, pairs: list[tuple[Any, str]]) -> float | None:
    """The objective over (prediction, label) pairs; None for a key it cannot compute."""
    if key == "accuracy":
        return sum(
            text(p) == text(t) or number(p) == number(t) is not None for p, t in pairs
        ) / len(pairs)
    numeric = [(number(p), number(t)) for p, t in pairs]
    errors = [p - t for p, t in numeric if p is not None and t is not None]
    if not errors:
        return None
    if key == "error":
        return sum(text(p) != text(t) for p, t in pairs) / len(pairs)
    if key == "mae":
        return sum(map(abs, errors)) / len(errors)
    squares = sum(e * e for e in errors) / len(errors)
    return {"mse": squares, "rmse": math.sqrt(squares)}.get(key)


def quality_figures(
    store: Path, capture: Path, state: dict[str, Any], run: str, settings: Settings, now: datetime
) -> dict[str, Any] | None:
    if settings.output is None or not settings.objective_key:
        return None
    labels, offsets = _ground_truth(store, state.get("ground_truth", {}))
    pending = {**state.get("pending_labels", {}), **labels}
    result: dict[str, Any] = {
        "key": settings.objective_key,
        "labels": len(pending),
        "margin": settings.quality_margin,
        "drift": False,
    }
    if settings.objective_key not in QUALITY_KEYS:
        result["note"] = f"{settings.objective_key} is not computed from labels ({QUALITY_KEYS})"
        state["ground_truth"] = offsets
        return result
    decision = read_record(store / MODELS / run / DECISION_FILE, f"{run}/{DECISION_FILE}") or {}
    model = number(decision.get("objective"))
    result["model"] = model
    answers = _answers_for(capture, set(pending), settings.output["field"], now) if pending else {}
    pairs = []
    for event, label in pending.items():
        predicted = answers.get(event)
        if predicted:
            truths = label.split(",") if len(predicted) > 1 else [label]
            pairs.extend(zip(predicted, truths, strict=False))
    result["joined"] = len(pairs)
    state["ground_truth"] = offsets
    if len(pairs) < settings.min_rows:
        state["pending_labels"] = dict(list(pending.items())[-100_000:])
        result["note"] = f"{len(pairs)} labelled rows, fewer than {settings.min_rows}"
        return result
    state["pending_labels"] = {}
    live = live_objective(settings.objective_key, pairs)
    result["live"] = live
    if live is not None and model is not None:
        drop = model - live if settings.objective_direction == "maximize" else live - model
        result["drop"] = round(drop, 6)
        result["drift"] = drop > settings.quality_margin
    return result


# ------------------------------------------------------------------------------ signals
def emf(
    settings: Settings, now: datetime, verdicts: dict[str, Verdict], summary: dict[str, float]
) -> list[str]:
    """CloudWatch Embedded Metric Format documents, one per feature and one summary."""
    stamp = int(now.timestamp() * 1000)

    def document(
        dimensions: list[str], metrics: dict[str, tuple[float, str]], values: dict[str, str]
    ) -> str:
        return json.dumps(
            {
                "_aws": {
                    "Timestamp": stamp,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": NAMESPACE,
                            "Dimensions": [dimensions],
                            "Metrics": [
                                {"Name": n, "Unit": unit} for n, (_, unit) in metrics.items()
                            ],
                        }
                    ],
                },
                **values,
                **{n: v for n, (v, _) in metrics.items()},
            }
        )

    lines = [
        document(
            ["Stack", "Feature"],
            {"BaselineDrift": (round(v.distance, 6), "None")},
            {"Stack": settings.stack, "Feature": name},
        )
        for name, v in verdicts.items()
    ]
    units = {"RowsChecked": "Count", "DriftedFeatures": "Count", "DriftEvents": "Count"}
    if summary:
        lines.append(
            document(
                ["Stack"],
                {k: (v, units.get(k, "None")) for k, v in summary.items()},
                {"Stack": settings.stack},
            )
        )
    return lines


def put_drift_event(settings: Settings, detail: dict[str, Any]) -> str:
    """PutEvents one DataDriftDetected on the bus; its event id. botocore takes the task role's
    credentials from the ECS agent, and AWS_ENDPOINT_URL_EVENTBRIDGE where one is set."""
    import botocore.session

    client = botocore.session.get_session().create_client("events", region_name=settings.region)
    response = client.put_events(
        Entries=[
            {
                "Source": EVENT_SOURCE,
                "DetailType": EVENT_DETAIL_TYPE,
                "Detail": json.dumps(detail),
                "EventBusName": settings.bus,
            }
        ]
    )
    entry = response["Entries"][0]
    if response.get("FailedEntryCount") or "EventId" not in entry:
        raise Refused(
            f"EventBridge refused the drift event: {entry.get('ErrorCode')}: "
            f"{entry.get('ErrorMessage')}"
        )
    return str(entry["EventId"])


# ------------------------------------------------------------------------------ upkeep
def expire(capture: Path, directory: Path, retention_days: int, now: datetime) -> int:
    """Delete capture hours and reports past the retention; how many hours went."""
    if retention_days <= 0:
        return 0
    oldest = (now - timedelta(days=retention_days)).strftime("%Y/%m/%d/%H")
    gone = 0
    for hour, path in hour_directories(capture):
        if hour < oldest:
            shutil.rmtree(path, ignore_errors=True)
            gone += 1
            for parent in (path.parent, path.parent.parent, path.parent.parent.parent):
                with contextlib.suppress(OSError):
                    parent.rmdir()  # only when empty
    cutoff = time.time() - retention_days * 86400
    for report in (directory / "reports").glob("*.json"):
        with contextlib.suppress(OSError):
            if report.stat().st_mtime < cutoff:
                report.unlink()
    return gone


def append_history(directory: Path, line: dict[str, Any]) -> None:
    """One line more; past HISTORY_MAX_BYTES the older half is dropped (rewritten atomically)."""
    path = directory / "history.jsonl"
    encoded = (json.dumps(line, allow_nan=False) + "\n").encode()
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = 0
    if size + len(encoded) > HISTORY_MAX_BYTES:
        kept = path.read_bytes()[size // 2 :]
        kept = kept[kept.find(b"\n") + 1 :]
        atomic_write(path, kept + encoded)
        return
    with path.open("ab") as handle:
        handle.write(encoded)


@contextlib.contextmanager
def single_check(directory: Path) -> Iterator[bool]:
    with (directory / ".lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _state(directory: Path) -> dict[str, Any]:
    try:
        state = parse_json(
            read_bounded(directory / "state.json", "state.json", STATE_MAX_BYTES), "state.json"
        )
    except FileNotFoundError:
        return {}
    except Refused:
        return {}  # a damaged state: read the capture again from the start, as on a first run
    return state if isinstance(state, dict) else {}


# ------------------------------------------------------------------------------ the command
def monitor() -> Outcome:
    settings = read_settings()
    store = store_dir()
    directory = store / MODEL_MONITOR
    (directory / "reports").mkdir(parents=True, exist_ok=True)
    with single_check(directory) as alone:
        if not alone:
            return Outcome("monitor: another check is running; this one did nothing")
        return check(store, directory, settings, datetime.now(UTC))


def check(store: Path, directory: Path, settings: Settings, now: datetime) -> Outcome:
    capture = store / CAPTURE / settings.capture_name / VARIANT
    state = _state(directory)
    checked_at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    expired = expire(capture, directory, settings.retention_days, now)
    line: dict[str, Any] = {
        "checked_at": checked_at,
        "decided": False,
        "drifted": [],
        "features": {},
        "output": None,
        "quality": None,
        "event": None,
        "expired_hours": expired,
    }
    run = read_current_quietly(store / MODELS)
    line["run_id"] = run
    if run is None:
        return _finish(directory, state, line, "no model is current: nothing to compare with")
    baselines = store / MODELS / run / BASELINE_DIR
    channels = sorted(p.name for p in baselines.iterdir()) if baselines.is_dir() else []
    channel = settings.channel or (channels[0] if channels else "")
    line["channel"] = channel
    if channel not in channels:
        return _finish(
            directory,
            state,
            line,
            f"run {run} has no baseline of channel {channel or '(any)'!r} "
            "(its training channel held no CSV or JSON Lines)",
        )
    baseline = load_baseline(baselines / channel)
    references = baseline.by_name()
    output_field = settings.output["field"] if settings.output else None
    window = read_window(capture, state.get("files", {}), baseline.order, output_field)
    line.update(
        records=window.records,
        rows=len(window.rows),
        malformed=window.malformed,
        not_ok=window.not_ok,
        unreadable=window.unreadable,
        since=window.first,
        until=window.last,
    )
    quality = quality_figures(store, capture, state, run, settings, now)
    line["quality"] = quality
    if len(window.rows) < settings.min_rows:
        note = (
            f"{len(window.rows)} rows since the last decision, fewer than "
            f"{settings.min_rows}: kept for the next check"
        )
        _summary_metrics(settings, now, {}, line)
        return _finish(directory, state, line, note)
    verdicts, output, rows = drift_figures(window, references, settings)
    state["files"] = {k: v for k, v in window.offsets.items()}
    drifted = sorted(
        (k for k, v in verdicts.items() if v.drift), key=lambda k: -verdicts[k].distance
    )
    line.update(
        decided=True,
        drifted=drifted,
        features={k: v.record() for k, v in verdicts.items()},
        absent=sorted(set(references) - set(verdicts)),
    )
    if output is not None and settings.output is not None:
        line["output"] = {**settings.output, **output.record()}
    reasons = [
        f"{k}: distance {verdicts[k].distance:.3f} > {verdicts[k].threshold:g}"
        for k in drifted[:10]
    ]
    if len(drifted) > 10:
        reasons.append(f"and {len(drifted) - 10} more features")
    if output is not None and output.drift:
        reasons.append(f"model output: distance {output.distance:.3f} > {output.threshold:g}")
    if quality and quality.get("drift"):
        reasons.append(
            f"live {quality['key']} {quality['live']:.4f} vs the model's "
            f"{quality['model']:.4f}: more than {quality['margin']:g} worse"
        )
    report = f"reports/{now.strftime('%Y-%m-%dT%H-%M-%SZ')}.json"
    line["report"] = report
    if reasons:
        line["event"] = _signal(settings, state, now, run, reasons, line)
    for document in emf(settings, now, verdicts, {}):
        print(document, flush=True)
    _summary_metrics(settings, now, verdicts, line)
    atomic_write(directory / report, (json.dumps(line, indent=1, allow_nan=False) + "\n").encode())
    summary = f"{len(drifted)} of {len(verdicts)} features drifted"
    if drifted:
        summary += " (" + ", ".join(drifted[:5]) + ")"
    event = line["event"]
    if event and event.get("id"):
        summary += f"; drift event {event['id']}"
    elif event and event.get("note"):
        summary += f"; no event: {event['note']}"
    _finish(directory, state, line, "")
    failure = event.get("error") if event else None
    said = f"monitor: model {run}, {rows} rows of {window.records} records: {summary}"
    return Outcome(said + (f"; {failure}" if failure else ""), 1 if failure else 0)


def _signal(
    settings: Settings,
    state: dict[str, Any],
    now: datetime,
    run: str,
    reasons: list[str],
    line: dict[str, Any],
) -> dict[str, Any]:
    event: dict[str, Any] = {"id": None, "reasons": reasons}
    last = state.get("last_event_at")
    if not settings.events:
        event["note"] = f"{Env.MONITOR_EVENTS} is not eventbridge: reported only"
        return event
    if isinstance(last, str):
        since = now - datetime.fromisoformat(last.replace("Z", "+00:00"))
        if since < timedelta(hours=settings.cooldown_hours):
            event["note"] = f"cooling down: the last event was {last}"
            return event
    detail = {
        "reasons": reasons,
        "model_run_id": run,
        "checked_at": line["checked_at"],
        "drifted": {k: line["features"][k]["distance"] for k in line["drifted"][:50]},
        "report": f"{MODEL_MONITOR}/{line['report']}",
        "monitor": "platform",
    }
    try:
        event["id"] = put_drift_event(settings, detail)
    except Exception as exc:  # recorded; the check exits non-zero
        reason = one_line(str(exc), 300)
        event["error"] = f"the drift event was not sent: {type(exc).__name__}: {reason}"
        return event
    state["last_event_at"] = line["checked_at"]
    return event


def _summary_metrics(
    settings: Settings, now: datetime, verdicts: dict[str, Verdict], line: dict[str, Any]
) -> None:
    summary: dict[str, float] = {"RowsChecked": line.get("rows", 0)}
    if line["decided"]:
        summary["DriftedFeatures"] = len(line["drifted"])
        summary["DriftEvents"] = 1 if (line["event"] or {}).get("id") else 0
    if line.get("output"):
        summary["OutputDrift"] = line["output"]["distance"]
    quality = line.get("quality") or {}
    if quality.get("live") is not None:
        summary["LiveObjective"] = quality["live"]
    print(emf(settings, now, {}, summary)[-1], flush=True)


def _finish(directory: Path, state: dict[str, Any], line: dict[str, Any], note: str) -> Outcome:
    line["note"] = note
    append_history(directory, line)
    atomic_write(directory / "state.json", json.dumps(state).encode())
    if note:
        return Outcome(f"monitor: {note}")
    return Outcome("monitor: checked")
