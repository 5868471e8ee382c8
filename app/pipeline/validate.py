"""`python -m app validate`: check the dataset in the store before anything trains on it.

Two layers, both reported in `reports/<run_id>/validation.json`:

* a pandera schema for what must hold for any weekly series: parsable, unique and increasing
  weekly timestamps, finite values inside the descriptor's physical bounds (`app.series`; a
  series without bounds has none), no long outages, enough rows;
* a drift check against the statistics of the last dataset that passed (`accepted_stats.json`):
  history rewritten, a jump in level, a change in week-to-week noise, lost rows.

The report records the sha256 of the exact bytes it checked and the row range (first and last
date, the `RUN_DATE` cut): `train` refuses a dataset without a passing report for its sha, and
the forecast ticker forecasts only from the dataset of the newest passing report.

Exits 1 with a human summary on stderr when anything fails, so the state machine stops before
training. pandas and pandera are imported here only, never by the server.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from app.cli import command_settings, open_store
from app.pipeline.lineage import file_sha256
from app.series import Series, SeriesError, shipped_name
from app.settings import AppSettings
from app.store import Store

log = logging.getLogger(__name__)

MAX_GAP_WEEKS = 20
"""Longest allowed stretch between two observed weeks. The real series' longest outage is
18 missing weeks (early 1964, a 19-week gap), which must pass."""
MIN_ROWS = 520
"""Ten years: room for backtest folds of two years with five years before the first."""
MAX_MISSING_FRACTION = 0.10
"""The real series misses 2.6% of its weeks."""

DRIFT_MULTIPLE = 3.0
"""Drift tolerances of a series whose descriptor gives none (`drift_tolerances`), from the
accepted dataset: a year already accepted may not change its mean by more than DRIFT_MULTIPLE /
2 x its week-to-week noise (`weekly_noise`; history rewritten); the latest year's mean may move
by at most DRIFT_MULTIPLE x (the median change between consecutive yearly means + the weekly
noise), plus DRIFT_MULTIPLE x the median yearly change per year elapsed. For the shipped series
these come to 0.45, 4.7 and 3.8 against its descriptor's 0.5, 5 and 4."""
NOISE_RATIO = 3.0
"""Allowed ratio between the week-to-week noise of the new and the accepted dataset."""


class DatasetError(Exception):
    """The dataset has problems; `problems` lists them, one human sentence each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _lines(index: Iterable[Any]) -> list[int]:
    # Frame index i is CSV line i + 2 (line 1 is the header).
    return [int(i) + 2 for i in index]


def _examples(lines: list[int], values: list[Any], limit: int = 3) -> str:
    pairs = zip(lines[:limit], values[:limit], strict=False)
    shown = [f"line {line} ({value})" for line, value in pairs]
    more = f" and {len(lines) - limit} more" if len(lines) > limit else ""
    return ", ".join(shown) + more


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"date": pd.Series([], dtype="datetime64[ns]"), "value": pd.Series([], dtype="float64")}
    )


def load_frame(path: Path, column: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Parse a `date,<column>` CSV into (date, value) columns; unparsable rows are dropped and
    reported. Any second column name passes unless `column` (the descriptor's) is given."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        return _empty_frame(), [f"{path.name} is empty"]
    columns = [str(column).strip() for column in raw.columns]
    if len(columns) < 2 or columns[0] != "date" or (column and columns[1] != column):
        wanted = f"date,{column}" if column else "date,<column>"
        return _empty_frame(), [f"header must start with {wanted!r}, got {','.join(columns)!r}"]
    name = columns[1]
    raw.columns = ["date", "value", *columns[2:]]
    problems = []
    date_text = raw["date"].str.strip()
    dates = pd.to_datetime(date_text, format="%Y-%m-%d", errors="coerce")
    bad_dates = dates.isna()
    if bad_dates.any():
        problems.append(
            "date: not a YYYY-MM-DD date at "
            + _examples(_lines(raw.index[bad_dates]), [repr(v) for v in date_text[bad_dates]])
        )
    value_text = raw["value"].str.strip()
    values = pd.to_numeric(value_text.where(value_text != "", None), errors="coerce")
    bad_values = values.isna() & (value_text != "")
    if bad_values.any():
        problems.append(
            f"{name}: not a number at "
            + _examples(_lines(raw.index[bad_values]), [repr(v) for v in value_text[bad_values]])
        )
    frame = pd.DataFrame({"date": dates, "value": values.astype("float64")})
    return frame[~bad_dates & ~bad_values], problems


def _weeks_since_previous_observation(frame: pd.DataFrame) -> pd.Series:
    observed = frame["date"].where(frame["value"].notna())
    previous = observed.ffill().shift(1)
    return (frame["date"] - previous).dt.days / 7.0


# Each custom check reports its own name as its error, which `_describe_failures` turns into a
# sentence with example lines.
def schema(series: Series) -> pa.DataFrameSchema:
    """The rules every weekly series must meet, with `series`' physical bounds if it has any."""
    low = -np.inf if series.minimum is None else series.minimum
    high = np.inf if series.maximum is None else series.maximum
    return pa.DataFrameSchema(
        {
            "date": pa.Column(
                "datetime64[ns]",
                nullable=False,
                unique=True,
                checks=[
                    pa.Check(
                        lambda s: s.diff().dt.days.fillna(0) >= 0,
                        name="date_order",
                        error="date_order",
                    ),
                    pa.Check(
                        lambda s: s.diff().dt.days.fillna(7) % 7 == 0,
                        name="weekly_cadence",
                        error="weekly_cadence",
                    ),
                ],
            ),
            "value": pa.Column(
                "float64",
                nullable=True,
                checks=[
                    pa.Check(
                        lambda s: s.between(low, high) & np.isfinite(s),
                        ignore_na=True,
                        name="physical_bounds",
                        error="physical_bounds",
                    )
                ],
            ),
        },
        checks=[
            pa.Check(
                lambda df: _weeks_since_previous_observation(df).fillna(0) <= MAX_GAP_WEEKS,
                name="max_gap",
                error="max_gap",
            ),
            pa.Check(lambda df: len(df) >= MIN_ROWS, name="min_rows", error="min_rows"),
            pa.Check(
                lambda df: len(df) == 0 or df["value"].isna().mean() <= MAX_MISSING_FRACTION,
                name="missing_fraction",
                error="missing_fraction",
            ),
        ],
        strict=True,
    )


def schema_problems(frame: pd.DataFrame, series: Series) -> list[str]:
    """Every schema rule the frame breaks, one sentence each with example lines."""
    try:
        schema(series).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return _describe_failures(frame, exc.failure_cases, series)
    return []


def _describe_failures(frame: pd.DataFrame, failures: pd.DataFrame, series: Series) -> list[str]:
    problems = []
    name = series.column
    for (column, check), group in failures.groupby(["column", "check"], dropna=False, sort=False):
        indexed = group[group["index"].notna()]
        lines = _lines(indexed["index"])
        if check == "field_uniqueness":
            dates = [pd.Timestamp(v).date().isoformat() for v in indexed["failure_case"]]
            problems.append(f"date: duplicate timestamps at {_examples(lines, dates)}")
        elif check == "min_rows":
            problems.append(f"too few rows: {len(frame)}, at least {MIN_ROWS} needed")
        elif check == "missing_fraction":
            share = frame["value"].isna().mean()
            problems.append(
                f"{name}: {share:.0%} of the weeks have no value, at most "
                f"{MAX_MISSING_FRACTION:.0%} allowed"
            )
        elif check == "max_gap":
            gaps = _weeks_since_previous_observation(frame)
            ends = [int(i) for i in indexed["index"].unique()]
            details = [
                f"{gaps.loc[i]:.0f} weeks before {frame['date'].loc[i].date().isoformat()}"
                for i in ends
            ]
            problems.append(
                f"{name}: gap without a value longer than {MAX_GAP_WEEKS} weeks: "
                + _examples(_lines(ends), details)
            )
        elif check == "date_order":
            dates = [frame["date"].loc[int(i)].date().isoformat() for i in indexed["index"]]
            problems.append(f"date: timestamps out of order at {_examples(lines, dates)}")
        elif check == "weekly_cadence":
            dates = [frame["date"].loc[int(i)].date().isoformat() for i in indexed["index"]]
            problems.append(
                f"date: not on a weekly cadence (steps of 7 days) at {_examples(lines, dates)}"
            )
        elif check == "physical_bounds":
            values = [f"{v:g}" for v in indexed["failure_case"]]
            if series.has_bounds:
                bounds = f"the physical bounds {series.minimum:g}-{series.maximum:g}"
                bounds += series.unit_suffix()
            else:
                bounds = "the finite numbers"
            problems.append(f"{name}: values outside {bounds} at " + _examples(lines, values))
        else:
            cases = ", ".join(str(v) for v in group["failure_case"].head(3))
            where = column if isinstance(column, str) else "dataset"
            problems.append(f"{where}: {check} ({cases})")
    return problems


def dataset_stats(frame: pd.DataFrame) -> dict[str, Any]:
    """Statistics kept for the drift check of the next dataset and shown on the dashboard."""
    values = frame["value"]
    if values.notna().sum() == 0:
        return {"rows": len(frame)}
    years = frame["date"].dt.year
    yearly = values.groupby(years).mean().dropna()
    last_date = frame["date"].max()
    last_year = values[frame["date"] > last_date - pd.Timedelta(weeks=52)]
    # Week-to-week noise: the spread of first differences after removing their typical size.
    steps = values.interpolate(limit_area="inside").diff().dropna()
    return {
        "rows": len(frame),
        "observed": int(values.notna().sum()),
        "missing": int(values.isna().sum()),
        "first_date": frame["date"].min().date().isoformat(),
        "last_date": last_date.date().isoformat(),
        "mean": round(float(values.mean()), 4),
        "std": round(float(values.std()), 4),
        "min": float(values.min()),
        "max": float(values.max()),
        "last_year_mean": round(float(last_year.mean()), 4),
        "weekly_noise": round(float((steps - steps.median()).abs().median()), 4),
        "max_gap_weeks": round(float(_weeks_since_previous_observation(frame).max()), 1),
        "yearly_means": {str(year): round(float(mean), 4) for year, mean in yearly.items()},
    }


def drift_tolerances(series: Series, accepted: dict[str, Any]) -> dict[str, float]:
    """The descriptor's drift tolerances; each one it lacks comes from the accepted dataset's
    noise and year-to-year change (DRIFT_MULTIPLE)."""
    noise = float(accepted.get("weekly_noise") or 0.0)
    yearly = np.array(list((accepted.get("yearly_means") or {}).values()), dtype=np.float64)
    change = float(np.median(np.abs(np.diff(yearly)))) if len(yearly) > 1 else noise
    derived = {
        "history_tolerance": DRIFT_MULTIPLE / 2 * noise,
        "level_shift": DRIFT_MULTIPLE * (change + noise),
        "growth_per_year": DRIFT_MULTIPLE * change,
    }
    return {key: series.drift.get(key, value) for key, value in derived.items()}


def drift_problems(stats: dict[str, Any], accepted: dict[str, Any], series: Series) -> list[str]:
    """Ways the new dataset departs from the last accepted one beyond normal growth."""
    problems = []
    tolerance = drift_tolerances(series, accepted)
    units = series.unit_suffix()
    if stats["rows"] < accepted["rows"]:
        problems.append(
            f"drift: the dataset shrank from {accepted['rows']} to {stats['rows']} rows "
            "since the last accepted one"
        )
    changed = [
        (year, stats["yearly_means"][year] - mean)
        for year, mean in accepted.get("yearly_means", {}).items()
        if year in stats["yearly_means"]
        and abs(stats["yearly_means"][year] - mean) > tolerance["history_tolerance"]
    ]
    # The last accepted year may have been partial, so it may legitimately change.
    last_accepted_year = accepted["last_date"][:4]
    changed = [(year, delta) for year, delta in changed if year != last_accepted_year]
    if changed:
        shown = ", ".join(f"{year} by {delta:+.2f}{units}" for year, delta in changed[:3])
        problems.append(
            f"drift: history was rewritten: yearly means changed ({shown}"
            f"{' and more' if len(changed) > 3 else ''}) since the last accepted dataset"
        )
    elapsed_years = max(
        0.0,
        (date.fromisoformat(stats["last_date"]) - date.fromisoformat(accepted["last_date"])).days
        / 365.25,
    )
    allowed = tolerance["level_shift"] + tolerance["growth_per_year"] * elapsed_years
    shift = stats["last_year_mean"] - accepted["last_year_mean"]
    if abs(shift) > allowed:
        problems.append(
            f"drift: the latest year's mean moved {shift:+.3g}{units} from the accepted "
            f"{accepted['last_year_mean']:.4g}{units}; at most {allowed:.3g}{units} expected"
        )
    if accepted.get("weekly_noise", 0) > 0:
        ratio = stats["weekly_noise"] / accepted["weekly_noise"]
        if ratio > NOISE_RATIO or ratio < 1 / NOISE_RATIO:
            problems.append(
                f"drift: week-to-week noise is {ratio:.1f}x that of the accepted dataset "
                f"({stats['weekly_noise']:.3g} vs {accepted['weekly_noise']:.3g}{units})"
            )
    return problems


SPIKE_Z = AppSettings.model_fields["validate_spike_z"].default
SPIKE_WINDOW_WEEKS = AppSettings.model_fields["validate_spike_window_weeks"].default
MAD_SCALE = 1.4826
"""MAD times this estimates a normal distribution's standard deviation."""
MIN_SPREAD = 0.01
"""The data's precision: a window of identical changes does not make every change a spike."""


def spike_robust_z(frame: pd.DataFrame, window: int) -> pd.DataFrame:
    """Per observed week: its week-on-week change, and that change's robust z-score against
    the `window` changes before it (their median, and MAD_SCALE times their median absolute
    deviation from it)."""
    observed = frame[frame["value"].notna()]
    change = observed["value"].diff()
    before = change.shift(1)
    centre = before.rolling(window, min_periods=window // 2).median()
    spread = (before - centre).abs().rolling(window, min_periods=window // 2).median() * MAD_SCALE
    spread = spread.clip(lower=MIN_SPREAD)
    return pd.DataFrame(
        {
            "date": observed["date"],
            "value": observed["value"],
            "change": change,
            "centre": centre,
            "spread": spread,
            "z": (change - centre) / spread,
        }
    )


def spike_problems(
    frame: pd.DataFrame, z_max: float, window: int, series: Series | None = None
) -> list[str]:
    """An isolated spike: a week whose change is more than `z_max` robust z-scores from the
    usual and whose next change goes back by as many (or which is the last week: nothing
    has confirmed it yet). A lasting step is not a spike; the drift check judges those."""
    scored = spike_robust_z(frame, window)
    name, units = (series.column, series.unit_suffix()) if series else ("value", "")
    z = scored["z"].to_numpy()
    problems = []
    returning = False  # the change out of a spike just reported: not a second spike
    for position in range(len(scored)):
        if returning or not abs(z[position]) > z_max:
            returning = False
            continue
        last = position == len(scored) - 1
        if not last and not (z[position + 1] * z[position] < 0 and abs(z[position + 1]) > z_max):
            continue
        returning = True
        row = scored.iloc[position]
        (line,) = _lines([scored.index[position]])
        problems.append(
            f"{name}: an isolated spike at line {line} ({row['date']:%Y-%m-%d}, "
            f"{row['value']:g}{units}): its week-on-week change {row['change']:+.5g}{units} is "
            f"{abs(z[position]):.1f} robust z-scores from the previous {window} weeks' changes "
            f"(median {row['centre']:+.3g}, scale {row['spread']:.3g}{units}); "
            f"VALIDATE_SPIKE_Z is {z_max:g}"
        )
    return problems


def check_dataset(
    path: Path,
    series: Series,
    run_date: date | None = None,
    spike_z: float = SPIKE_Z,
    spike_window: int = SPIKE_WINDOW_WEEKS,
) -> tuple[pd.DataFrame, list[str]]:
    """The parsed frame (cut at `run_date` when given), its schema problems and isolated
    spikes (`spike_problems`)."""
    frame, problems = load_frame(path, series.column if series.described else None)
    if problems and frame.empty:
        return frame, problems  # nothing parsed: the schema would only repeat the problem
    if run_date is not None:
        frame = frame[frame["date"] <= pd.Timestamp(run_date)]
    problems += schema_problems(frame, series)
    if not problems:
        problems += spike_problems(frame, spike_z, spike_window, series)
    return frame, problems


def validate(
    store: Store,
    run_id: str,
    run_date: date | None = None,
    spike_z: float = SPIKE_Z,
    spike_window: int = SPIKE_WINDOW_WEEKS,
) -> dict[str, Any]:
    """Validate the store's dataset, write the report and, when it passes, the accepted stats."""
    path = store.ensure_dataset()
    # Hashed before parsing: the report vouches for exactly these bytes.
    sha256 = file_sha256(path)
    series = store.series()
    frame, problems = check_dataset(path, series, run_date, spike_z, spike_window)
    stats = dataset_stats(frame) if len(frame) else {"rows": 0}
    drift_checked = False
    if not problems and store.accepted_stats_path.exists():
        accepted = store.read_json(store.accepted_stats_path)
        # Stats of another series (SERIES_NAME switched) say nothing about this one; stats
        # written before descriptors existed are the shipped series'.
        if accepted.get("series", shipped_name()) == series.name:
            problems += drift_problems(stats, accepted, series)
            drift_checked = True
    report = {
        "run_id": run_id,
        "ok": not problems,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": len(frame),
        "problems": problems,
        "stats": stats,
        "dataset": str(path.relative_to(store.root)),
        "series": series.to_json(),
        "dataset_sha256": sha256,
        "run_date": run_date.isoformat() if run_date else None,
        "first_date": stats.get("first_date"),
        "last_date": stats.get("last_date"),
        "drift_checked": drift_checked,
    }
    store.write_json(store.report_path(run_id), report)
    if report["ok"]:
        store.write_json(
            store.accepted_stats_path, {"run_id": run_id, "series": series.name, **stats}
        )
    return report


def main(argv: list[str]) -> int:
    settings = command_settings("validate", argv)
    store = open_store(settings)
    store.clean_stale()
    run_id = settings.run_id_or_new()
    try:
        if not store.ensure_dataset().exists():
            raise SeriesError(f"no dataset {store.dataset_path}: put the series' CSV there")
        report = validate(
            store,
            run_id,
            settings.run_date,
            settings.validate_spike_z,
            settings.validate_spike_window_weeks,
        )
    except SeriesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report_path = store.report_path(run_id)
    if not report["ok"]:
        summary = "\n".join(f"  - {problem}" for problem in report["problems"])
        print(
            f"validation failed for run {run_id}: {len(report['problems'])} problem(s) in "
            f"{report['dataset']}:\n{summary}\nreport: {report_path}",
            file=sys.stderr,
        )
        return 1
    log.info(
        "validation passed for run %s: series %r, %d rows %s..%s%s; report %s",
        run_id,
        report["series"]["name"],
        report["rows"],
        report["stats"]["first_date"],
        report["stats"]["last_date"],
        ", drift checked" if report["drift_checked"] else ", no accepted dataset to compare yet",
        report_path,
    )
    return 0
