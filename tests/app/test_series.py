"""The served series is configuration: a descriptor beside the CSV, or a plain `date,value` CSV.

The worked example is a real weekly series that is not CO2: US finished motor gasoline product
supplied (EIA, via fpp3; benchmarks/data/SOURCE.md), 1,355 weeks between 6.3 and 9.8 million
barrels per day.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.dashboard.page import build_figure, read_snapshot
from app.forecasting.model import read_series
from app.pipeline.validate import validate
from app.series import SeriesError, load
from app.store import Store
from tests.app.helpers import REPO_ROOT, ServerProcess, run_app

GASOLINE = REPO_ROOT / "benchmarks" / "data" / "gasoline.csv"
DESCRIPTOR = {
    "name": "gasoline",
    "title": "US gasoline product supplied",
    "column": "value",
    "units": "million barrels/day",
    "cadence": "weekly",
    "min": 0,
    "max": 20,
}


def gasoline_store(root: Path, descriptor: dict | None = None) -> Store:
    """A store holding only the gasoline CSV, as a user would copy it in (no code change)."""
    store = Store(root)
    store.datasets_dir.mkdir(parents=True)
    shutil.copy(GASOLINE, store.datasets_dir / "gasoline.csv")
    if descriptor is not None:
        (store.datasets_dir / "gasoline.series.json").write_text(json.dumps(descriptor))
    return store


# --- nothing in app/ names the shipped series ---------------------------------------------------

ALLOWED = {"app/loop/ingest.py"}
"""NOAA's weekly CO2 format, which ingest reads (and the replay writes through it)."""
ALLOWED_DIRS = ("app/data/",)
"""The shipped series itself: its CSV, its descriptor and its SOURCE.md."""
ALLOWED_TOKENS = ("MONITOR_DRIFT_MIN_SHIFT_PPM",)
"""Environment variable names the stack already sets (kept working beside unit-neutral ones)."""


def test_nothing_in_app_names_co2_or_ppm_outside_its_descriptor_and_noaas_format() -> None:
    pattern = re.compile(r"co2|co₂|ppm", re.IGNORECASE)
    offenders = []
    for path in sorted((REPO_ROOT / "app").rglob("*")):
        relative = path.relative_to(REPO_ROOT).as_posix()
        if not path.is_file() or "__pycache__" in relative or relative in ALLOWED:
            continue
        if relative.startswith(ALLOWED_DIRS):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for token in ALLOWED_TOKENS:
                line = line.replace(token, "")
            if pattern.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []


# --- a plain date,value CSV: validate, train, gate, serve, dashboard ---------------------------


@pytest.mark.slow
def test_a_plain_gasoline_csv_validates_trains_gates_serves_and_shows_with_its_own_name(
    tmp_path: Path,
) -> None:
    store = gasoline_store(tmp_path / "store")
    for step in ("validate", "train", "gate"):
        done = run_app(step, store_root=store.root, RUN_ID="gas-1")
        assert done.returncode == 0, f"{step}: {done.stderr[-2000:]}"
    assert store.current_run_id() == "gas-1"
    assert sorted(p.name for p in store.datasets_dir.iterdir() if not p.name.startswith(".")) == [
        "accepted_stats.json",
        "gasoline.csv",
    ]  # nothing of the shipped series was copied in
    metrics = store.read_json(store.run_dir("gas-1") / "metrics.json")
    assert metrics["series"]["name"] == "gasoline" and metrics["series"]["described"] is False
    # No physical bounds: the plausible range is half the lowest to twice the highest value.
    _, values = read_series(GASOLINE)
    low = math.floor(np.nanmin(values) / 2 * 10) / 10
    high = math.ceil(np.nanmax(values) * 2 * 10) / 10
    assert (metrics["history_range"]["min"], metrics["history_range"]["max"]) == (low, high)
    assert "CO2" not in (store.run_dir("gas-1") / "card.md").read_text()
    assert "gasoline" in (store.run_dir("gas-1") / "card.md").read_text()

    history = [float(v) for v in values[-max(metrics["min_history"], 104) :]]
    with ServerProcess(store.root) as server:
        server.wait_ready()
        body = {"instances": [{"history": history, "horizon": 4}]}
        answer = httpx.post(server.url + "/predict", json=body)
        assert answer.status_code == 200, answer.text
        (prediction,) = answer.json()["predictions"]
        # The last observed week is 8.04 million barrels/day; a month ahead stays near it.
        assert all(7.0 < value < 9.5 for value in prediction["forecast"]), prediction
        # CO2-sized values are no gasoline weeks: refused against the series' own range.
        body = {"instances": [{"history": [372.0] * len(history), "horizon": 4}]}
        co2_like = httpx.post(server.url + "/predict", json=body)
        assert co2_like.status_code == 422
        assert f"must be between {low:g} and {high:g}" in co2_like.json()["detail"]
        described = httpx.get(server.url + "/openapi.json").text
        assert "gasoline" in described and "CO2" not in described

    snapshot = read_snapshot(store)
    assert snapshot.series.name == "gasoline" and len(snapshot.values) == len(values)
    figure = build_figure(snapshot)
    assert figure.layout.yaxis.title.text == "gasoline"
    assert figure.data[0].name == "observed (gasoline)"


def test_a_descriptor_gives_the_dashboard_its_title_and_units_and_refuses_out_of_range_weeks(
    tmp_path: Path,
) -> None:
    store = gasoline_store(tmp_path / "store", DESCRIPTOR)
    assert validate(store, "ok")["ok"]
    figure = build_figure(read_snapshot(store))
    assert figure.layout.yaxis.title.text == "US gasoline product supplied (million barrels/day)"

    # 25 million barrels a day is more than twice the US record: outside the descriptor's bounds.
    lines = GASOLINE.read_text().splitlines()
    lines[100] = lines[100].split(",")[0] + ",25.0"
    (store.datasets_dir / "gasoline.csv").write_text("\n".join(lines) + "\n")
    report = validate(store, "bad")
    assert not report["ok"]
    assert report["problems"] == [
        "value: values outside the physical bounds 0-20 million barrels/day at line 101 (25)"
    ]


def test_without_bounds_a_non_finite_week_is_still_refused(tmp_path: Path) -> None:
    store = gasoline_store(tmp_path / "store")
    lines = GASOLINE.read_text().splitlines()
    lines[100] = lines[100].split(",")[0] + ",inf"
    (store.datasets_dir / "gasoline.csv").write_text("\n".join(lines) + "\n")
    report = validate(store, "bad")
    assert report["problems"] == ["value: values outside the finite numbers at line 101 (inf)"]


def test_the_drift_check_of_a_series_without_descriptor_scales_with_its_noise(
    tmp_path: Path,
) -> None:
    """CO2's fixed 5 ppm level tolerance would let a gasoline series jump by half its range."""
    store = gasoline_store(tmp_path / "store")
    lines = GASOLINE.read_text().splitlines()
    (store.datasets_dir / "gasoline.csv").write_text("\n".join(lines[:-52]) + "\n")
    assert validate(store, "first")["ok"]
    # The last year arrives 2 million barrels a day higher: a level shift, not growth.
    shifted = [f"{d},{float(v) + 2.0:.3f}" for d, v in (line.split(",") for line in lines[-52:])]
    (store.datasets_dir / "gasoline.csv").write_text("\n".join(lines[:-52] + shifted) + "\n")
    report = validate(store, "shifted")
    assert not report["ok"]
    assert any("the latest year's mean moved" in problem for problem in report["problems"])
    # The real last year passes.
    (store.datasets_dir / "gasoline.csv").write_text("\n".join(lines) + "\n")
    assert validate(store, "real")["ok"]


# --- which series, and bad descriptors -----------------------------------------------------------


def test_the_store_holds_the_shipped_series_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SERIES_NAME", raising=False)
    store = Store(tmp_path / "empty")
    assert store.ensure_dataset().name == "co2_weekly.csv"
    assert store.series().units == "ppm" and (store.series().minimum, store.series().maximum) == (
        250.0,
        500.0,
    )
    # A store made before descriptors existed keeps the shipped bounds.
    store.descriptor_path.unlink()
    assert store.series().maximum == 500.0

    both = gasoline_store(tmp_path / "both")
    shutil.copy(store.dataset_path, both.datasets_dir / "co2_weekly.csv")
    assert both.series_name == "co2_weekly"  # the shipped series, when it is there
    monkeypatch.setenv("SERIES_NAME", "gasoline")
    assert both.dataset_path.name == "gasoline.csv"
    monkeypatch.setenv("SERIES_NAME", "../etc")
    with pytest.raises(SeriesError, match=re.escape("SERIES_NAME '../etc' is not allowed")):
        _ = both.dataset_path
    monkeypatch.delenv("SERIES_NAME")
    shutil.copy(GASOLINE, both.datasets_dir / "other.csv")
    (both.datasets_dir / "co2_weekly.csv").unlink()
    with pytest.raises(SeriesError, match=r"several series .*gasoline, other.*SERIES_NAME"):
        _ = both.dataset_path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min": 0}, "give both min and max"),
        ({"min": 30}, "min 30 must be below max 20"),
        ({"cadence": "daily"}, "cadence 'daily' is not supported"),
        ({"name": "petrol"}, "name must be 'gasoline'"),
        ({"max": "lots"}, "max must be a finite number"),
        ({"colour": "red"}, "unknown keys ['colour']"),
        ({"drift": {"level_shift": -1}}, "drift.level_shift must be at least 0"),
        ({"title": "<a href='x'>gas</a>"}, "title must be one line of at most 200 characters"),
    ],
)
def test_a_bad_descriptor_is_refused_naming_key_and_value(
    tmp_path: Path, change: dict, message: str
) -> None:
    descriptor = {**DESCRIPTOR, **change}
    if change == {"min": 0}:
        descriptor.pop("max")
    store = gasoline_store(tmp_path / "store", descriptor)
    with pytest.raises(SeriesError, match=re.escape(message)):
        load(store.dataset_path)
    done = run_app("validate", store_root=store.root, RUN_ID="bad")
    assert done.returncode == 2 and message in done.stderr


def test_switching_series_in_one_store_does_not_drift_check_against_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = gasoline_store(tmp_path / "store")
    shutil.copy(REPO_ROOT / "app" / "data" / "co2_weekly.csv", store.datasets_dir)
    monkeypatch.setenv("SERIES_NAME", "co2_weekly")
    assert validate(store, "co2")["ok"]
    monkeypatch.setenv("SERIES_NAME", "gasoline")
    report = validate(store, "gas")
    assert report["ok"] and report["drift_checked"] is False
    assert validate(store, "gas-again")["drift_checked"] is True


# --- ingest of a series that is not NOAA's ---------------------------------------------------


def test_ingest_appends_a_date_value_csv_to_a_series_of_its_own(tmp_path: Path) -> None:
    from app.loop.ingest import IngestError, ingest
    from app.loop.ticker import Ticker
    from app.settings import AppSettings

    store = gasoline_store(tmp_path / "store", DESCRIPTOR)
    lines = GASOLINE.read_text().splitlines()
    (store.datasets_dir / "gasoline.csv").write_text("\n".join(lines[:-8]) + "\n")
    assert validate(store, "first")["ok"]

    source = tmp_path / "new-weeks.csv"
    source.write_text("\n".join([lines[0], *lines[-8:]]) + "\n")
    outcome = ingest(store, str(source))
    assert (
        outcome["appended"] == 8 and outcome["validated"] and outcome["last_date"] == "2017-01-16"
    )
    assert read_series(store.dataset_path)[1].tolist() == read_series(GASOLINE)[1].tolist()
    # The forecast ticker's series starts from the newest week ingest accepted, though the only
    # validation run saw the data to 2016-11-21.
    ticker = Ticker(store, AppSettings(store_dir=store.root), identity="test:1")
    dates, _ = ticker._load_series()
    assert dates[-1] == np.datetime64("2017-01-16")

    # Refused against the series' own bounds and format, the dataset unchanged.
    before = store.dataset_path.read_bytes()
    cases = [
        ("2017-01-23,25.0", "25 is outside the physical bounds 0-20"),
        ("2017-01-23,nan", "'nan' is not a plain number"),
        ("23/01/2017,8.1", "'23/01/2017' is not a YYYY-MM-DD date"),
        (
            "2017-01-30,8.1",
            "the week 2017-01-30 does not follow the dataset's weeks (expected "
            "the week 2017-01-23)",
        ),
    ]
    for row, message in cases:
        source.write_text(f"date,value\n{row}\n")
        with pytest.raises(IngestError) as refused:
            ingest(store, str(source))
        assert message in refused.value.problems[0], refused.value.problems
    source.write_text("date,barrels\n2017-01-23,8.1\n")
    with pytest.raises(IngestError, match="header must start with 'date,value'"):
        ingest(store, str(source))
    with pytest.raises(IngestError, match="give its new weeks as a date,value CSV"):
        ingest(store, "https://gml.noaa.gov/webdata/ccgg/trends/co2/co2_weekly_mlo.txt")
    assert store.dataset_path.read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("command", ["validate", "train", "monitor"])
def test_a_store_with_two_series_and_no_series_name_stops_every_command_in_one_line(
    tmp_path: Path, command: str
) -> None:
    store = gasoline_store(tmp_path / "store")
    shutil.copy(GASOLINE, store.datasets_dir / "other.csv")
    done = run_app(command, store_root=store.root, RUN_ID="two")
    assert done.returncode == (1 if command == "train" else 2)  # train: "cannot train on this"
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith("holds several series (gasoline, other); set SERIES_NAME to the one to use")
    )
