"""The dashboard's page: the Dash app under `/dashboard/` (`create_app`), and what it shows.

It reads the store and nothing else: the observed series (`datasets/`), the ticker's latest
forecast and its interval bands (`forecasts/latest.json`), the promoted model's family,
backtest and coverage (`models/CURRENT`, `models/<run>/metrics.json`) and every run's
validation report and gate decision. The page refreshes on an interval and renders before
any model exists.

Every Dash path lives under `/dashboard/` so the app works behind the load balancer's
`/dashboard*` path rule; `/dashboard/` itself is the health check path. `app.dashboard.server`
serves it with gunicorn.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import plotly.graph_objects as go
from dash import Dash, Input, Output, dcc, html
from flask import Response, redirect, request

from app.dashboard.loop_section import loop_section
from app.forecasting.model import read_series
from app.loop.ticker import LATEST_NAME
from app.series import Series, SeriesError
from app.store import Store

log = logging.getLogger(__name__)

PREFIX = "/dashboard/"
MAX_RUNS = 25
"""Most recent runs listed in the run history."""
INITIAL_YEARS = 6
"""The plot opens on the last few years plus the forecast; the range slider shows all of it."""

_OBSERVED_COLOUR = "#1f77b4"
_FORECAST_COLOUR = "#d62728"
_BAND_COLOURS = {95: "rgba(214,39,40,0.10)", 80: "rgba(214,39,40,0.22)"}


@dataclass(frozen=True)
class RunRow:
    """One run in the history table: what validation, training and the gate said about it."""

    run_id: str
    validated: bool | None = None
    validation_note: str = ""
    trained_at: str | None = None
    family: str = ""
    mae: float | None = None
    skill: float | None = None
    promoted: bool | None = None
    reason: str = ""
    current: bool = False


@dataclass(frozen=True)
class Snapshot:
    """Everything the page shows, read from the store in one go."""

    store_root: Path
    store_ok: bool
    dates: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[D]"))
    values: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.float64))
    latest: dict[str, Any] | None = None
    current: str | None = None
    metrics: dict[str, Any] | None = None
    runs: tuple[RunRow, ...] = ()
    series: Series = field(default_factory=lambda: Series(name="series", described=False))
    """The store's series descriptor: the page's title, legend and units."""


class _SeriesCache:
    """The observed series, parsed again only when the dataset file changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, int, int] | None = None
        self._series: tuple[np.ndarray, np.ndarray] | None = None

    def get(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key != self._key:
                try:
                    self._series = read_series(path)
                except (OSError, ValueError) as exc:
                    log.warning("cannot read the dataset %s: %s", path, exc)
                    return None
                self._key = key
            return self._series


_series_cache = _SeriesCache()


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from the store, or None when it is missing or unreadable (never raises)."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and np.isfinite(value) else None


def _run_ids(store: Store) -> list[str]:
    """Every run that left a trace (a validation report or a model directory), newest first."""
    ids: set[str] = set()
    for folder in (store.reports_dir, store.models_dir):
        try:
            ids.update(entry.name for entry in folder.iterdir() if entry.is_dir())
        except OSError:
            continue
    return sorted((run_id for run_id in ids if not run_id.startswith(".")), reverse=True)


def _run_row(store: Store, run_id: str, current: str | None) -> RunRow:
    report = _read_json(store.reports_dir / run_id / "validation.json")
    metrics = _read_json(store.models_dir / run_id / "metrics.json")
    decision = _read_json(store.models_dir / run_id / "decision.json")
    validated: bool | None = None
    note = ""
    if report is not None:
        validated = bool(report.get("ok"))
        problems = report.get("problems") or []
        if validated:
            note = f"{report.get('rows', '?')} rows"
        else:
            note = "; ".join(str(problem) for problem in problems) or "failed"
    mean = ((metrics or {}).get("backtest") or {}).get("mean") or {}
    return RunRow(
        run_id=run_id,
        validated=validated,
        validation_note=note,
        trained_at=(metrics or {}).get("trained_at"),
        family=str((metrics or {}).get("family", "")),
        mae=_float(mean.get("mae")),
        skill=_float(mean.get("skill")),
        promoted=None if decision is None else bool(decision.get("promoted")),
        reason=str((decision or {}).get("reason", "")),
        current=run_id == current,
    )


def store_series(store: Store) -> Series:
    """The store's series descriptor; one made from the CSV's name when it is unusable."""
    try:
        return store.series()
    except (SeriesError, OSError) as exc:
        log.warning("cannot read the series descriptor: %s", exc)
        return Series(name="series", described=False)


def read_snapshot(store: Store) -> Snapshot:
    """Read what the page shows. Missing or half-written pieces become empty, never errors."""
    if not store.root.is_dir():
        return Snapshot(store_root=store.root, store_ok=False)
    try:
        current = store.current_run_id()
    except ValueError:  # a damaged CURRENT (DamagedFileError) shows as no model, not an error
        current = None
    described = store_series(store)
    try:
        series = _series_cache.get(store.dataset_path)
    except SeriesError:
        series = None
    extra: dict[str, Any] = {"series": described}
    if series is not None:
        extra["dates"], extra["values"] = series
    return Snapshot(
        store_root=store.root,
        store_ok=True,
        latest=_read_json(store.forecasts_dir / LATEST_NAME),
        current=current,
        metrics=_read_json(store.models_dir / current / "metrics.json") if current else None,
        runs=tuple(_run_row(store, run_id, current) for run_id in _run_ids(store)[:MAX_RUNS]),
        **extra,
    )


# --- rendering --------------------------------------------------------------------------------


def build_figure(snapshot: Snapshot) -> go.Figure:
    """The observed series, with the latest forecast continuing from its last point."""
    figure = go.Figure()
    dates = np.datetime_as_string(snapshot.dates, unit="D").tolist()
    figure.add_trace(
        go.Scatter(
            x=dates,
            y=snapshot.values.tolist(),
            mode="lines",
            name=f"observed ({snapshot.series.in_units(snapshot.series.label)})",
            line={"color": _OBSERVED_COLOUR, "width": 1.5},
            connectgaps=False,
        )
    )
    latest = snapshot.latest or {}
    forecast = latest.get("forecast") or []
    # Widest band first, so the narrower one is drawn on top of it.
    for level in sorted(latest.get("levels") or [], reverse=True):
        key = str(level)
        if not all(key in point.get("lower", {}) for point in forecast):
            continue
        x = [point["date"] for point in forecast]
        figure.add_trace(
            go.Scatter(
                x=x + x[::-1],
                y=[p["upper"][key] for p in forecast] + [p["lower"][key] for p in forecast][::-1],
                fill="toself",
                fillcolor=_BAND_COLOURS.get(level, "rgba(214,39,40,0.12)"),
                line={"width": 0},
                hoverinfo="skip",
                name=f"{level}% interval",
            )
        )
    if forecast:
        # One ordered series: the forecast's own weeks in date order, joined to the observed
        # value at its origin (the week before its first), never to the newest observation,
        # which may lie after the forecast's start (a line back across it).
        ordered = sorted(forecast, key=lambda point: point["date"])
        x = [point["date"] for point in ordered]
        y = [point["value"] for point in ordered]
        origin = np.datetime64(x[0], "D") - np.timedelta64(7, "D")
        at = np.nonzero(snapshot.dates == origin)[0]
        if len(at) and np.isfinite(snapshot.values[at[0]]):
            x, y = [str(origin), *x], [float(snapshot.values[at[0]]), *y]
        figure.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                name=f"forecast ({(snapshot.latest or {}).get('run_id', '?')})",
                line={"color": _FORECAST_COLOUR, "width": 2, "dash": "dot"},
                marker={"size": 4},
            )
        )
    layout: dict[str, Any] = {
        "margin": {"l": 60, "r": 20, "t": 30, "b": 40},
        "height": 460,
        "yaxis": {"title": {"text": snapshot.series.in_units(snapshot.series.label)}},
        "legend": {"orientation": "h", "y": 1.08, "x": 0},
        "template": "plotly_white",
        # Keeps the user's zoom when the interval refresh replaces the figure.
        "uirevision": "keep",
        "xaxis": {
            "rangeslider": {"visible": True, "thickness": 0.08, "yaxis": {"rangemode": "auto"}}
        },
    }
    if dates:
        end = np.datetime64(forecast[-1]["date"] if forecast else dates[-1], "D")
        start = snapshot.dates[-1] - np.timedelta64(INITIAL_YEARS * 365, "D")
        layout["xaxis"]["range"] = [str(start), str(end + np.timedelta64(28, "D"))]
        bounds = [
            value
            for point in forecast
            for side in ("lower", "upper")
            for value in (point.get(side) or {}).values()
        ]
        shown = np.concatenate(
            [
                snapshot.values[snapshot.dates >= start],
                [point["value"] for point in forecast],
                bounds,
            ]
        )
        layout["yaxis"]["range"] = [float(np.nanmin(shown)) - 2, float(np.nanmax(shown)) + 2]
    else:
        layout["annotations"] = [
            {
                "text": "no data in the store yet",
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
                "font": {"size": 16},
            }
        ]
    figure.update_layout(**layout)
    return figure


def _when(value: Any) -> str:
    """An ISO timestamp from the store as `2026-11-22 00:11 UTC`; anything else as is."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value) if value else "—"
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "—" if value is None else pattern.format(value)


def status_text(snapshot: Snapshot, now: datetime | None = None) -> str:
    if not snapshot.store_ok:
        return f"The store {snapshot.store_root} is not available yet."
    if snapshot.current is None:
        return "No model yet: the first run that passes its gate appears here."
    latest = snapshot.latest
    if latest is None:
        return f"Model {snapshot.current} is promoted; waiting for the first forecast tick."
    now = now or datetime.now(UTC)
    try:
        generated = datetime.fromisoformat(latest["generated_at"])
        age = f"{max((now - generated).total_seconds(), 0):.0f} s ago"
    except (KeyError, TypeError, ValueError):
        age = "at an unknown time"
    dataset = latest.get("dataset") or {}
    sha = str(dataset.get("sha256") or "?")[:12]
    return (
        f"Forecast of {latest.get('horizon', '?')} weeks after {latest.get('last_observed', '?')} "
        f"by run {latest.get('run_id', '?')} ({latest.get('family', 'xgboost')}), from dataset "
        f"{sha}… {_validated_by(dataset)}, generated {age}."
    )


def _validated_by(dataset: dict[str, Any]) -> str:
    if dataset.get("validated_by") == "ingest":
        return f"validated by ingest at {dataset.get('ingested_at', '?')}"
    return f"validated by run {dataset.get('validated_by', '?')}"


def model_panel(snapshot: Snapshot) -> html.Div:
    if snapshot.current is None:
        return html.Div(
            [html.P("No model yet.", className="empty")],
            id="model-empty",
        )
    metrics = snapshot.metrics or {}
    card = metrics.get("backtest") or {}
    mean = card.get("mean") or {}
    folds = card.get("folds") or []
    dataset = metrics.get("dataset") or {}
    coverage = metrics.get("coverage") or {}
    units = snapshot.series.unit_suffix()
    rows = [
        ("run", snapshot.current),
        ("model family", str(metrics.get("family", "xgboost"))),
        ("trained at", _when(metrics.get("trained_at"))),
        (
            "dataset",
            f"{str(dataset.get('sha256', '?'))[:12]}… to {dataset.get('last_date', '?')}, "
            f"validated by run {dataset.get('validation_run', '?')}",
        ),
        ("skill vs seasonal naive + drift", _fmt(_float(mean.get("skill")), "{:.2f}")),
        ("backtest MAE (mean)", _fmt(_float(mean.get("mae")), "{:.3f}" + units)),
        ("backtest MAE per fold", " / ".join(f"{f['mae']:.3f}" for f in folds) or "—"),
        ("backtest RMSE", _fmt(_float(mean.get("rmse")), "{:.3f}" + units)),
        ("seasonal naive + drift MAE", _fmt(_float(mean.get("drift_mae")), "{:.3f}" + units)),
        ("seasonal naive MAE", _fmt(_float(mean.get("naive_mae")), "{:.3f}" + units)),
        (
            "folds",
            f"{len(folds)} x {card.get('spec', {}).get('fold_weeks', '?')} weeks, "
            f"{folds[0]['first_date']}..{folds[-1]['last_date']}"
            if folds
            else "—",
        ),
        (
            "interval coverage",
            ", ".join(f"{level}%: {value:.1f}%" for level, value in coverage.items()) or "—",
        ),
    ]
    return html.Div(
        html.Table(
            html.Tbody([html.Tr([html.Th(name), html.Td(value)]) for name, value in rows]),
            className="metrics",
        )
    )


def _yes_no(value: bool | None, yes: str, no: str) -> html.Span:
    if value is None:
        return html.Span("—", className="unknown")
    return html.Span(yes if value else no, className="ok" if value else "bad")


def runs_table(snapshot: Snapshot) -> html.Div:
    if not snapshot.runs:
        return html.Div(html.P("No runs yet.", className="empty"))
    header = html.Tr(
        [
            html.Th(name)
            for name in (
                "run",
                "validated",
                "trained",
                "family",
                "backtest MAE",
                "skill vs naive + drift",
                "gate",
                "why",
            )
        ]
    )
    body = [
        html.Tr(
            [
                html.Td(
                    [run.run_id, html.Span(" current", className="tag")]
                    if run.current
                    else run.run_id
                ),
                html.Td([_yes_no(run.validated, "passed", "failed"), " ", run.validation_note]),
                html.Td(_when(run.trained_at)),
                html.Td(run.family or "—"),
                html.Td(_fmt(run.mae)),
                html.Td(_fmt(run.skill, "{:.2f}")),
                html.Td(_yes_no(run.promoted, "promoted", "not promoted")),
                html.Td(run.reason or "—"),
            ],
            className="current" if run.current else None,
        )
        for run in snapshot.runs
    ]
    return html.Div(html.Table([html.Thead(header), html.Tbody(body)], className="runs"))


_CSS = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; background: #f6f7f9; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 24px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 16px; margin: 0 0 8px; }
.card { background: #fff; border-radius: 8px; padding: 12px 16px; margin: 12px 0;
        box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.cols { display: grid; grid-template-columns: 1fr 2fr; gap: 12px; }
.cols.loop { grid-template-columns: 1fr 1fr; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; vertical-align: top; }
.ok { color: #137333; } .bad { color: #b3261e; } .empty { color: #666; }
.tag { background: #1f77b4; color: #fff; border-radius: 4px; padding: 0 4px; font-size: 11px; }
tr.current { background: #eef5fc; } .runs td:first-child { white-space: nowrap; }
#status { color: #555; margin: 0; }
"""


def _index_string() -> str:
    return (
        "<!DOCTYPE html><html><head>{%metas%}<title>{%title%}</title>{%favicon%}{%css%}"
        f"<style>{_CSS}</style></head>"
        "<body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body></html>"
    )


def _page(store: Store, refresh_ms: int) -> html.Main:
    snapshot = read_snapshot(store)
    return html.Main(
        [
            html.H1(f"{snapshot.series.label}: observations and live forecast"),
            html.P(status_text(snapshot), id="status"),
            html.Div(
                dcc.Graph(
                    id="forecast-graph",
                    figure=build_figure(snapshot),
                    config={"displaylogo": False, "responsive": True},
                ),
                className="card",
            ),
            html.Div(
                [
                    html.Div(
                        [html.H2("Current model"), html.Div(model_panel(snapshot), id="model")],
                        className="card",
                    ),
                    html.Div(
                        [
                            html.H2("Runs: validated, trained, promoted"),
                            html.Div(runs_table(snapshot), id="runs"),
                        ],
                        className="card",
                    ),
                ],
                className="cols",
            ),
            html.Div(loop_section(store), id="loop"),
            dcc.Interval(id="refresh", interval=refresh_ms),
        ]
    )


def create_app(store_root: Path, refresh_seconds: float = 10.0) -> Dash:
    """The Dash app reading the store at `store_root`, refreshing every `refresh_seconds`."""
    store = Store(Path(store_root))
    refresh_ms = max(int(refresh_seconds * 1000), 1000)
    app = Dash(
        __name__,
        url_base_pathname=PREFIX,
        title=f"mlops: {store_series(store).label} forecast",
        update_title=None,
        index_string=_index_string(),
        serve_locally=True,
    )
    # A function layout is evaluated on every page load, so the first paint already has data.
    app.layout = lambda: _page(store, refresh_ms)

    @app.callback(
        Output("forecast-graph", "figure"),
        Output("status", "children"),
        Output("model", "children"),
        Output("runs", "children"),
        Output("loop", "children"),
        Input("refresh", "n_intervals"),
        prevent_initial_call=True,
    )
    def _refresh(_: int) -> tuple[go.Figure, str, html.Div, html.Div, html.Div]:
        snapshot = read_snapshot(store)
        return (
            build_figure(snapshot),
            status_text(snapshot),
            model_panel(snapshot),
            runs_table(snapshot),
            loop_section(store),
        )

    server = app.server

    @server.route("/")
    @server.route(PREFIX.rstrip("/"))
    def _to_dashboard() -> Any:
        return redirect(PREFIX, code=302)

    @server.errorhandler(FileNotFoundError)
    def _not_in_image(exc: FileNotFoundError) -> Any:
        # The image ships no source maps (app/slim.py): a browser's developer tools asking for
        # one get a plain 404, not a 500 with a traceback in the logs. Anything else re-raises.
        if "/_dash-component-suites/" not in request.path:
            raise exc
        return Response("not in this image\n", status=404, mimetype="text/plain")

    # Dash prepares its script registry on a worker's first request, but marks it prepared
    # before it is filled, so a thread racing that first request gets a 500 for a script. One
    # request here prepares it once, before gunicorn forks its workers.
    if server.test_client().get(PREFIX).status_code != 200:
        raise RuntimeError("the dashboard failed to render its index page")

    return app
