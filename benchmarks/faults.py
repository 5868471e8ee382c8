"""`python -m benchmarks.faults [--trials N] [--app-root DIR]`: kill -9 at random moments.

Runs `python -m app ingest`, `train` and `gate` N times each (default 50) on a private copy of a
small store, SIGKILLs each at a random moment within the time an uninterrupted run takes, then
checks the store the way its readers would; then N rounds of two concurrent ingests, an older
and a newer NOAA file. Prints one count per failure kind (each should be 0):

* torn: a dataset that does not parse, or a run directory without metrics.json or model file;
* lost audit: after the killed ingest and a rerun, the revised week's value has no record in
  datasets/revisions.jsonl (or two);
* crash at start: models/CURRENT that a server cannot read (it raises) or names a run that is
  not whole;
* orphaned probes: `app.forecasting.model_check` processes of this store alive 3 s after their gate
  died;
* rollbacks: concurrent rounds after which the older file's value is the one stored.

`--app-root` runs another checkout's `python -m app` (for example the main branch's), with the
same trials, so the counts can be read side by side.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

REPO_ROOT = Path(__file__).resolve().parents[1]
FIRST_SUNDAY = date(2001, 12, 30)
REVISED_WEEK = "2002-01-12"
HEADER = "# File Creation: {created}\n# (yr, mon, day, decimal)    (ppm)  #days\n"


def noaa_text(values: list[float], created: str) -> str:
    lines = []
    for week, value in enumerate(values):
        start = FIRST_SUNDAY + timedelta(weeks=week)
        decimal = start.year + (start.timetuple().tm_yday - 1) / 365
        lines.append(
            f"  {start.year}  {start.month:2d}  {start.day:2d}  {decimal:9.4f}    {value:7.2f}"
            "  7          -999.99   -999.99    -999.99"
        )
    return HEADER.format(created=created) + "\n".join(lines) + "\n"


class Trials:
    def __init__(self, app_root: Path, work: Path, seed: int) -> None:
        self.app_root = app_root
        self.work = work
        self.random = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.durations: dict[str, float] = {}

    def env(self, store: Path, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("RUN_ID", "RUN_DATE")}
        env.update(
            STORE_DIR=str(store),
            STORE_WAIT_SECONDS="5",
            MODEL_FAMILY="harmonic",
            TRAIN_THREADS="1",
            PYTHONPATH=str(self.app_root),
            **extra,
        )
        return env

    def run(self, store: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "app", *args],
            cwd=self.app_root,
            env=self.env(store, **env),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def start(self, store: Path, *args: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "app", *args],
            cwd=self.app_root,
            env=self.env(store, **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    # --- the template store -------------------------------------------------------------------

    def template(self) -> Path:
        """A store with run-a (harmonic) promoted, run-b validated, and run-c a better copy of
        run-a to gate; and the two NOAA files of the ingest trials."""
        store = self.work / "template"
        store.mkdir()
        for step, run_id in (("validate", "run-a"), ("train", "run-a"), ("gate", "run-a")):
            result = self.run(store, step, RUN_ID=run_id)
            if result.returncode:
                raise SystemExit(f"{step} failed:\n{result.stderr}")
        assert self.run(store, "validate", RUN_ID="run-b").returncode == 0
        run_c = store / "models" / "run-c"
        shutil.copytree(store / "models" / "run-a", run_c)
        (run_c / "decision.json").unlink()
        metrics = orjson.loads((run_c / "metrics.json").read_bytes())
        metrics["run_id"] = "run-c"
        metrics["recipe"]["params"] = {**metrics["recipe"].get("params", {}), "variant": 1}
        metrics["backtest"]["mean"]["mae"] *= 0.5
        (run_c / "metrics.json").write_bytes(orjson.dumps(metrics))
        (self.work / "a.txt").write_text(noaa_text([371.83, 372.01], "Sat Jan  5 04:40:53 2002"))
        (self.work / "old.txt").write_text(
            noaa_text([371.83, 372.01, 372.4], "Sat Jan 12 04:40:11 2002")
        )
        (self.work / "new.txt").write_text(
            noaa_text([371.83, 372.11, 372.4], "Sat Jan 19 04:41:02 2002")
        )
        assert self.run(store, "ingest", "--source", str(self.work / "a.txt")).returncode == 0
        return store

    def copy(self, template: Path, name: str) -> Path:
        target = self.work / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(template, target)
        return target

    # --- checks ---------------------------------------------------------------------------

    def check_store(self, store: Path) -> None:
        dataset = store / "datasets" / "co2_weekly.csv"
        text = dataset.read_text()
        rows = [line.split(",") for line in text.splitlines()[1:]]
        if not text.endswith("\n") or any(len(row) != 2 for row in rows):
            self.counts["torn"] += 1
        models = store / "models"
        for run in models.iterdir():
            if run.is_dir() and not run.name.startswith("."):
                has_model = any((run / n).is_file() for n in ("model.json", "model.ubj"))
                if not ((run / "metrics.json").is_file() and has_model):
                    self.counts["torn"] += 1
        try:
            current = (models / "CURRENT").read_bytes().decode().strip()
        except (OSError, UnicodeDecodeError):
            self.counts["crash at start"] += 1
            return
        if not (models / current / "metrics.json").is_file():
            self.counts["crash at start"] += 1

    def orphans(self, store: Path) -> int:
        found = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text()
            except OSError:
                continue
            if state[state.rfind(")") + 2] == "Z":
                continue
            probe = b"app.forecasting.model_check" in cmdline
            if probe and any(str(store).encode() in a for a in cmdline):
                found += 1
                os.kill(int(entry.name), signal.SIGKILL)
        return found

    def revision_records(self, store: Path) -> list[dict[str, Any]]:
        path = store / "datasets" / "revisions.jsonl"
        if not path.exists():
            return []
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]

    def stored(self, store: Path, week: str) -> str | None:
        for line in (store / "datasets" / "co2_weekly.csv").read_text().splitlines():
            if line.startswith(week + ","):
                return line.split(",")[1]
        return None

    # --- trials ---------------------------------------------------------------------------

    def timed(self, template: Path, command: str, *args: str, **env: str) -> float:
        store = self.copy(template, "timing")
        started = time.monotonic()
        self.run(store, command, *args, **env)
        return time.monotonic() - started

    def kill_at_random(self, template: Path, command: str, *args: str, **env: str) -> Path:
        store = self.copy(template, "trial")
        process = self.start(store, command, *args, **env)
        time.sleep(self.random.uniform(0, self.durations[command]))
        process.send_signal(signal.SIGKILL)
        process.wait()
        return store

    def ingest_trial(self, template: Path) -> None:
        source = str(self.work / "new.txt")
        store = self.kill_at_random(template, "ingest", "--source", source)
        self.check_store(store)
        self.run(store, "ingest", "--source", source)  # the rerun an operator would do
        value = self.stored(store, REVISED_WEEK)
        records = [r for r in self.revision_records(store) if r.get("date") == REVISED_WEEK]
        if value == "372.11" and len(records) != 1:
            self.counts["lost audit"] += 1
        self.check_store(store)

    def train_trial(self, template: Path) -> None:
        self.check_store(self.kill_at_random(template, "train", RUN_ID="run-b"))

    def gate_trial(self, template: Path) -> None:
        store = self.kill_at_random(template, "gate", RUN_ID="run-c")
        time.sleep(3)
        self.counts["orphaned probes"] += self.orphans(store)
        self.check_store(store)

    def concurrent_trial(self, template: Path) -> None:
        store = self.copy(template, "trial")
        both = [
            self.start(store, "ingest", "--source", str(self.work / name))
            for name in self.random.sample(["old.txt", "new.txt"], 2)
        ]
        for process in both:
            process.wait()
        if self.stored(store, REVISED_WEEK) == "372.01":
            self.counts["rollbacks"] += 1
        self.check_store(store)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__)
    parser.add_argument("--trials", type=int, default=50, help="kills of each command (50)")
    parser.add_argument("--app-root", type=Path, default=REPO_ROOT, help="checkout to run")
    parser.add_argument("--seed", type=int, default=24)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="faults-") as work:
        trials = Trials(args.app_root.resolve(), Path(work), args.seed)
        started = time.monotonic()
        template = trials.template()
        source = str(trials.work / "new.txt")
        trials.durations = {
            "ingest": trials.timed(template, "ingest", "--source", source),
            "train": trials.timed(template, "train", RUN_ID="run-b"),
            "gate": trials.timed(template, "gate", RUN_ID="run-c"),
        }
        for _ in range(args.trials):
            trials.ingest_trial(template)
            trials.train_trial(template)
            trials.gate_trial(template)
            trials.concurrent_trial(template)
        print(
            f"app from {trials.app_root}: {args.trials} random kills each of ingest, train, gate "
            f"(uninterrupted: {', '.join(f'{k} {v:.1f}s' for k, v in trials.durations.items())})"
            f" and {args.trials} concurrent older/newer ingest pairs, "
            f"{time.monotonic() - started:.0f}s"
        )
        for kind in ("torn", "lost audit", "crash at start", "orphaned probes", "rollbacks"):
            print(f"  {kind:<16} {trials.counts[kind]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
