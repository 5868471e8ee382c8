"""The closed loop on a laptop: `python -m app local --replay [--inject-shift SIZE]`.

On a fresh store the replay holds back the last `--replay-years` of the shipped series: the first
model trains on the rest. Then, every `--tick-seconds`, it releases the next `--weeks-per-tick`
weeks the way NOAA publishes them (the whole weekly file so far, in NOAA's format, in
`replay/<NOAA's file name>`) through the same `app.loop.ingest` code, and runs `app.loop.monitor`'s
checks after each release. A check that trips runs validate -> train -> gate as child processes,
where AWS would publish `DataDriftDetected` and the stack's rule would start the state machine; the
api, the forecast ticker and the dashboard pick up the new observations and, when the gate promotes,
the new model, as they do in AWS.

`--inject-shift SIZE` adds a step of SIZE (in the series' units) to every week from the middle
of the held-back years (`--shift-at` weeks into the replay), so a user can watch the drift
detected, a retrain and a hot swap within a few minutes.

`python -m app.local.replay measure [--years N] [--inject-shift SIZE]` replays without retraining
and prints how often the checks trip on the shipped history (the false-alarm rate) and how many
weeks after an injected shift they first trip (the detection delay).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.forecasting.model import read_series
from app.local.children import Child, LinePrinter
from app.loop.ingest import NOAA_SOURCE_NAME, IngestError, ingest, noaa_weekly_text, render_rows
from app.loop.monitor import MonitorSettings, check, record_signal
from app.series import load as load_series
from app.store import SHIPPED_DATASET, Store
from mlops_contract import new_run_id

log = logging.getLogger(__name__)

SOURCE_NAME = NOAA_SOURCE_NAME
SCHEDULE_NAME = "schedule.json"
DEFAULT_YEARS = 4
RETRAIN_OVERHEAD_SECONDS = 5.0
"""Besides training: three Python start-ups, validation and the gate's probe of the new model
(4.5-5 s per retrain in the replay of 2026-12-03, whose models trained in 3.6-4.5 s)."""


def _duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 90 else f"{seconds / 60:.0f} min"


class ReplayError(Exception):
    """The replay cannot run on this store; the message says how to start one that can."""


@dataclass
class Replay:
    """The held-back weeks and how many of them have been released."""

    store: Store
    dates: np.ndarray
    values: np.ndarray
    released: int = 0
    shift: float = 0.0
    shift_at: int | None = None
    """Index into the held-back weeks from which `shift` is added."""
    signals: list[dict[str, Any]] = field(default_factory=list)
    shift_day: str | None = None
    """The first shifted week, as fixed when the replay started (`replay/schedule.json`)."""

    @classmethod
    def seed(
        cls, store: Store, years: float, shift: float = 0.0, shift_at: int | None = None
    ) -> Replay:
        """Hold back the last `years` of the shipped series; a fresh store gets the rest.

        A store that already has a dataset keeps it, and the replay releases the shipped weeks
        after its last one (none, when it already holds them all). The shift's week is fixed
        when a replay starts on a fresh store and kept in `replay/schedule.json`: a restarted
        replay shifts from the same week (every remaining week, once that week is released).
        """
        shipped = load_series(SHIPPED_DATASET)
        if store.series_name != shipped.name:
            raise ReplayError(
                f"the replay releases the shipped series {shipped.name!r}, but this store "
                f"holds {store.series_name!r}: give `--store` a new folder to replay"
            )
        dates, values = read_series(SHIPPED_DATASET)
        schedule = None
        if store.dataset_path.exists():
            last = read_series(store.dataset_path)[0][-1]
            held = dates > last
            schedule = _read_schedule(store)
        else:
            held = np.arange(len(dates)) >= len(dates) - round(years * 52)
            rows = [
                (day, None if not np.isfinite(value) else float(value))
                for day, value in zip(dates[~held].astype(object), values[~held], strict=True)
            ]
            store.write_bytes(store.dataset_path, render_rows(rows, shipped.column))
        held_dates, held_values = dates[held], values[held]
        if not len(held_dates):
            raise ReplayError(
                f"store {store.root} already holds every week of the shipped series to "
                f"{dates[-1]}, so a replay has nothing to release; replay into a new store: "
                "python -m app local --replay --store ./.mlops-replay"
            )
        if schedule is not None:
            shift = float(schedule.get("shift") or 0.0)
            day = schedule.get("shift_date")
            shift_at = int(np.searchsorted(held_dates, np.datetime64(day))) if day else None
            log.info("replay schedule kept: shift %+g from %s", shift, day)
        else:
            if shift and shift_at is None:
                shift_at = len(held_dates) // 2
            day = None
            if shift and shift_at is not None and shift_at < len(held_dates):
                day = str(held_dates[shift_at])
            store.write_json(_schedule_path(store), {"shift": shift, "shift_date": day})
        replay = cls(store, held_dates, held_values, 0, shift, shift_at)
        replay.shift_day = day
        return replay

    @property
    def source_path(self) -> Path:
        return self.store.root / "replay" / SOURCE_NAME

    @property
    def done(self) -> bool:
        return self.released >= len(self.dates)

    def shift_date(self) -> str | None:
        if not self.shift or self.shift_at is None or self.shift_at >= len(self.dates):
            return None
        return self.shift_day or str(self.dates[self.shift_at])

    def release(self, weeks: int) -> dict[str, Any]:
        """Publish `weeks` more weeks in the source file and ingest it; the ingest's outcome."""
        self.released = min(self.released + weeks, len(self.dates))
        values = self.values[: self.released].copy()
        if self.shift and self.shift_at is not None:
            values[self.shift_at :] += self.shift
        text = noaa_weekly_text(self.dates[: self.released], values)
        self.store.write_text(self.source_path, text)
        return ingest(self.store, str(self.source_path))


def _schedule_path(store: Store) -> Path:
    return store.root / "replay" / SCHEDULE_NAME


def _read_schedule(store: Store) -> dict[str, Any] | None:
    try:
        schedule = store.read_json(_schedule_path(store))
    except (OSError, ValueError):
        return None
    return schedule if isinstance(schedule, dict) else None


# --- inside `app local` ------------------------------------------------------------------------


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """`app local`'s replay options."""
    group = parser.add_argument_group("replay (the closed loop on this machine)")
    group.add_argument(
        "--replay",
        action="store_true",
        help="hold back the last years of the shipped series and release them week by week "
        "through ingest and monitor; drift retrains in place",
    )
    group.add_argument(
        "--weeks-per-tick", type=_positive_int, default=1, help="weeks released per tick (1)"
    )
    group.add_argument(
        "--tick-seconds", type=_non_negative, default=1.0, help="seconds between ticks (1)"
    )
    group.add_argument(
        "--inject-shift",
        type=float,
        default=0.0,
        metavar="SIZE",
        help="add SIZE (in the series' units) to every week from the middle of the replay on "
        "(0: none)",
    )
    group.add_argument(
        "--shift-at",
        type=_non_negative_int,
        default=None,
        metavar="WEEKS",
        help="weeks into the replay the shift starts (default: half of them)",
    )
    group.add_argument(
        "--replay-years",
        type=float,
        default=DEFAULT_YEARS,
        help=f"years of the shipped series held back on a fresh store ({DEFAULT_YEARS})",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


class ReplayHost(Protocol):
    """What `LocalReplay` needs of `app local` (app/local/supervisor.py `Local` satisfies it):
    its options and store, its printer, and a way to run a step as a child and wait for it."""

    args: argparse.Namespace
    store_dir: Path
    printer: LinePrinter

    def env(self, **extra: str) -> dict[str, str]: ...

    def start(self, name: str, command: str, env: dict[str, str]) -> Child: ...

    def wait_step(self, child: Child, started: float) -> int: ...

    def sleep(self, seconds: float) -> None: ...


class LocalReplay:
    """Drives a Replay from `app local`: releases, monitors, retrains with the local children."""

    def __init__(self, local: ReplayHost, settings: MonitorSettings | None = None) -> None:
        args = local.args
        self.local = local
        self.store = Store(local.store_dir)
        self.settings = settings or MonitorSettings()
        self.replay = Replay.seed(self.store, args.replay_years, args.inject_shift, args.shift_at)
        self.units = self.store.series().unit_suffix()
        self.weeks_per_tick = args.weeks_per_tick
        self.tick_seconds = args.tick_seconds

    def plan(self) -> str:
        """What the replay will do, said before the first model trains."""
        replay = self.replay
        shift = replay.shift_date()
        ticks = -(-len(replay.dates) // self.weeks_per_tick)
        return (
            f"will release {len(replay.dates)} held-back weeks ({replay.dates[0]} to "
            f"{replay.dates[-1]}), {self.weeks_per_tick} per tick every {self.tick_seconds:g}s "
            f"({ticks} ticks), through ingest and the monitor"
            + (f"; {replay.shift:+g}{self.units} from the week of {shift}" if shift else "")
            + "; each drift signal retrains (at most one per "
            f"{self.settings.monitor_cooldown_weeks} weeks of data); how long it takes follows "
            "after the first tick"
        )

    def estimate(self, tick_cost: float) -> str:
        """Roughly how long the rest takes: ticks x (pause + the first tick's cost), plus one
        validate -> train -> gate (timed by the promoted model's training) per retrain."""
        left = -(-(len(self.replay.dates) - self.replay.released) // self.weeks_per_tick)
        base = left * (self.tick_seconds + tick_cost)
        retrain = self._retrain_seconds()
        cooldown = max(self.settings.monitor_cooldown_weeks, 1)
        most = -(-(len(self.replay.dates) - self.replay.released) // cooldown)
        text = (
            f"about {_duration(base)} for the {left} remaining ticks "
            f"({self.tick_seconds:g}s pause + {tick_cost:.1f}s ingest and monitor each)"
        )
        if retrain is not None:
            text += (
                f", plus about {_duration(retrain)} per drift retrain (up to {most}: "
                f"{_duration(base + most * retrain)} in all)"
            )
        return text

    def _retrain_seconds(self) -> float | None:
        """validate -> train -> gate: the promoted run's training and backtest time plus about
        RETRAIN_OVERHEAD_SECONDS of process start-up, validation and the gate's probe."""
        current = self.store.current_run_id()
        if current is None:
            return None
        try:
            metrics = self.store.read_json(self.store.run_dir(current) / "metrics.json")
            trained = float(metrics["train_seconds"]) + float(metrics["backtest_seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return trained + RETRAIN_OVERHEAD_SECONDS

    def say(self, text: str) -> None:
        self.local.printer.line("replay", text)

    def run(self) -> None:
        """Release every held-back week, monitoring after each release; then say what happened."""
        replay = self.replay
        self.say(f"releasing {len(replay.dates)} held-back weeks now")
        promoted_before = self._promoted()
        started = time.monotonic()
        while not replay.done:
            try:
                outcome = replay.release(self.weeks_per_tick)
            except IngestError as exc:
                self.say("ingest refused: " + "; ".join(exc.problems))
                return
            result = check(self.store, self.settings)
            self.say(self._describe(outcome, result.status))
            if started is not None:
                self.say(self.estimate(time.monotonic() - started))
                started = None
            if result.signal:
                self._retrain(result.status)
            self.local.sleep(self.tick_seconds)
        promoted = self._promoted()
        self.say(
            f"replay done: {len(replay.dates)} weeks released, {len(replay.signals)} drift "
            f"signal(s), models promoted: {', '.join(promoted)} "
            f"({len(promoted) - len(promoted_before)} during the replay); "
            f"serving {self.store.current_run_id()}"
        )

    def _describe(self, outcome: dict[str, Any], status: dict[str, Any]) -> str:
        parts = [f"week {outcome['last_date']}: +{outcome['appended']} week(s)"]
        for item in status["checks"]:
            if item["check"] == "forecast_error" and item.get("realized_mae") is not None:
                parts.append(
                    f"error {item['realized_mae']:.3g}{self.units} (limit {item['threshold']:.3g})"
                )
            if item["check"] == "input_drift" and item.get("p_value") is not None:
                parts.append(
                    f"drift p={item['p_value']:.2g} shift {item['shift']:+.3g}{self.units}"
                )
        if status["drift"]:
            parts.append("DRIFT" + (" (cooling down)" if status["cooldown"] else ""))
        return ", ".join(parts)

    def _retrain(self, status: dict[str, Any]) -> None:
        for reason in status["reasons"]:
            self.say(f"drift detected: {reason}")
        run_id = new_run_id()
        self.say(f"retraining (run {run_id}) in place of EventBridge: validate -> train -> gate")
        env = self.local.env(RUN_ID=run_id)
        failed = None
        for step in ("validate", "train", "gate"):
            started = time.monotonic()
            status_code = self.local.wait_step(self.local.start(step, step, env), started)
            if status_code != 0:
                failed = f"{step} failed with exit status {status_code}"
                break
        decision = None
        with contextlib.suppress(FileNotFoundError):
            decision = self.store.read_json(self.store.run_dir(run_id) / "decision.json")
        record_signal(self.store, status, action="retrain", run_id=run_id, decision=decision)
        self.replay.signals.append({"run_id": run_id, "decision": decision})
        if failed:
            self.say(f"retrain {run_id}: {failed}")
        elif decision is not None:
            verdict = "promoted, hot-swapping" if decision["promoted"] else "not promoted"
            self.say(f"retrain {run_id}: {verdict}: {decision['reason']}")

    def _promoted(self) -> list[str]:
        promoted = []
        for run_id in self.store.list_runs():
            try:
                decision = self.store.read_json(self.store.run_dir(run_id) / "decision.json")
            except FileNotFoundError:
                continue
            if decision.get("promoted"):
                promoted.append(run_id)
        return promoted


# --- measuring the checks ----------------------------------------------------------------------


def measure(
    years: float, shift: float, settings: MonitorSettings, rounds: int, weeks: int = 1
) -> dict[str, Any]:
    """Replay `years` of the shipped history against one model (no retraining).

    Returns the share of weekly checks that tripped before any shift (the false-alarm rate) and,
    with a shift, the weeks from the shift to the first trip of each check (the detection delay).
    """
    from app.pipeline.gate import decide
    from app.pipeline.train import train
    from app.pipeline.validate import validate

    with tempfile.TemporaryDirectory() as root:
        store = Store(Path(root))
        replay = Replay.seed(store, years, shift)
        assert validate(store, "measure")["ok"]
        train(store, "measure", rounds=rounds, log_every=rounds)
        decide(store, "measure", 0.0)
        shift_at = replay.shift_at if shift else None
        checks: list[tuple[int, dict[str, bool]]] = []
        while not replay.done:
            replay.release(weeks)
            status = check(store, settings).status
            checks.append((replay.released, {c["check"]: c["tripped"] for c in status["checks"]}))
    before = [tripped for released, tripped in checks if shift_at is None or released <= shift_at]
    result: dict[str, Any] = {
        "weeks": len(replay.dates),
        "checks_before_shift": len(before),
        "false_alarms": {
            name: sum(t[name] for t in before) for name in ("forecast_error", "input_drift")
        },
        "false_alarm_weeks": sum(any(t.values()) for t in before),
    }
    result["false_alarm_rate"] = result["false_alarm_weeks"] / max(len(before), 1)
    if shift_at is not None:
        delays = {}
        for name in ("forecast_error", "input_drift"):
            first = next(
                (released for released, t in checks if released > shift_at and t[name]), None
            )
            delays[name] = None if first is None else first - shift_at
        result["shift_week"] = str(replay.dates[shift_at])
        result["detection_delay_weeks"] = delays
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.local.replay")
    sub = parser.add_subparsers(dest="command", required=True)
    measure_parser = sub.add_parser("measure", help="false-alarm rate and detection delay")
    measure_parser.add_argument("--years", type=float, default=DEFAULT_YEARS)
    measure_parser.add_argument("--inject-shift", type=float, default=0.0)
    measure_parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = measure(args.years, args.inject_shift, MonitorSettings(), args.rounds)
    import json

    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
