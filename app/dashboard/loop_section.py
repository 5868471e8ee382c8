"""The closed loop on the dashboard: ingest, forecast scoring, drift checks and drift retrains.

Reads what `app.loop.ingest` and `app.loop.monitor` leave in the store (`datasets/ingest.json`,
`monitoring/status.json`, `history.jsonl`, `scores.json`, `signals.jsonl`) and the gate's
`decision.json` of each drift retrain. Missing or half-written files render as "not yet", never
as errors. `app.dashboard.page` puts `loop_section` under its main figure and refreshes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import plotly.graph_objects as go
from dash import dcc, html

from app.series import SeriesError
from app.store import Store

MAX_SIGNALS = 10
SCORED_HORIZONS = (1, 4)
"""The forecast steps plotted against what happened."""
_BAND_COLOUR = "rgba(31, 119, 180, 0.15)"


@dataclass(frozen=True)
class LoopSnapshot:
    ingest: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    units: str = ""
    """The series' units (its descriptor's), shown beside every figure."""
    signals: list[dict[str, Any]] = field(default_factory=list)


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_loop(store: Store) -> LoopSnapshot:
    monitoring = store.root / "monitoring"
    scores = _json(monitoring / "scores.json") or {}
    signals = _jsonl(monitoring / "signals.jsonl")[-MAX_SIGNALS:]
    for signal in signals:
        run_id = signal.get("run_id")
        if run_id and signal.get("decision") is None:
            signal["decision"] = _json(store.models_dir / str(run_id) / "decision.json")
    return LoopSnapshot(
        ingest=_json(store.datasets_dir / "ingest.json"),
        status=_json(monitoring / "status.json"),
        history=_jsonl(monitoring / "history.jsonl"),
        scores=list(scores.get("scores") or []),
        signals=signals,
        units=_units(store),
    )


def _units(store: Store) -> str:
    try:
        return store.series().units
    except (SeriesError, OSError):
        return ""


def _layout(title: str) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 14}},
        "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
        "height": 320,
        "template": "plotly_white",
        "legend": {"orientation": "h", "y": -0.2, "x": 0},
        "uirevision": "keep",
    }


def _empty(figure: go.Figure, why: str) -> None:
    """Say on an empty chart why it is empty (instead of bare axes)."""
    figure.update_layout(
        annotations=[
            {
                "text": why,
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
                "font": {"size": 13, "color": "#666"},
            }
        ],
        xaxis={"visible": False},
        yaxis={"visible": False},
    )


def forecasts_vs_actuals_figure(loop: LoopSnapshot) -> go.Figure:
    """Observed weeks and what the forecasts 1 and 4 weeks earlier said about them."""
    figure = go.Figure()
    observed = sorted({row["target"]: row["observed"] for row in loop.scores}.items())
    if observed:
        figure.add_trace(
            go.Scatter(
                x=[day for day, _ in observed],
                y=[value for _, value in observed],
                mode="lines+markers",
                name="observed",
                marker={"size": 4},
            )
        )
    for horizon in SCORED_HORIZONS:
        rows = sorted(
            (row for row in loop.scores if row["horizon"] == horizon), key=lambda r: r["target"]
        )
        if rows:
            figure.add_trace(
                go.Scatter(
                    x=[row["target"] for row in rows],
                    y=[row["forecast"] for row in rows],
                    mode="markers",
                    name=f"forecast {horizon} week{'s' if horizon > 1 else ''} ahead",
                    marker={"size": 6, "symbol": "x" if horizon > 1 else "circle-open"},
                )
            )
    figure.update_layout(**_layout(_in_units("Past forecasts against what happened", loop)))
    if not loop.scores:
        _empty(
            figure,
            "No forecast scored yet: the monitor scores forecasts once the weeks they<br>"
            "forecast are observed (after ingest appends them, or a replay releases them).",
        )
    return figure


def error_band_figure(loop: LoopSnapshot) -> go.Figure:
    """Rolling realized error per check, against the backtest band and the alarm threshold."""
    figure = go.Figure()
    rows = [row for row in loop.history if row.get("band_p95") is not None]
    x = [row["last_observed"] for row in rows]
    if rows:
        figure.add_trace(
            go.Scatter(
                x=x,
                y=[row["band_p5"] for row in rows],
                mode="lines",
                line={"width": 0},
                showlegend=False,
                hoverinfo="skip",
            )
        )
        figure.add_trace(
            go.Scatter(
                x=x,
                y=[row["band_p95"] for row in rows],
                mode="lines",
                fill="tonexty",
                fillcolor=_BAND_COLOUR,
                line={"width": 0},
                name="backtest band (5th-95th percentile)",
            )
        )
        figure.add_trace(
            go.Scatter(
                x=x,
                y=[row["threshold"] for row in rows],
                mode="lines",
                line={"dash": "dash", "color": "#b3261e"},
                name="alarm threshold",
            )
        )
        figure.add_trace(
            go.Scatter(
                x=x,
                y=[row["realized_mae"] for row in rows],
                mode="lines+markers",
                marker={"size": 4},
                name="realized rolling MAE",
                connectgaps=False,
            )
        )
        signalled = [row for row in rows if row.get("signalled")]
        if signalled:
            figure.add_trace(
                go.Scatter(
                    x=[row["last_observed"] for row in signalled],
                    y=[row["realized_mae"] or row["threshold"] for row in signalled],
                    mode="markers",
                    marker={"size": 12, "symbol": "star", "color": "#b3261e"},
                    name="drift signalled",
                )
            )
    figure.update_layout(
        **_layout(_in_units("Rolling forecast error against the backtest band", loop))
    )
    if not rows:
        _empty(
            figure,
            "No monitor check with a band yet: the monitor runs after each ingest<br>"
            "and needs a promoted model and scored forecasts.",
        )
    return figure


def _in_units(text: str, loop: LoopSnapshot) -> str:
    return f"{text} ({loop.units})" if loop.units else text


def _fmt(value: Any, pattern: str) -> str:
    return pattern.format(value) if isinstance(value, int | float) else "—"


def drift_status(loop: LoopSnapshot) -> html.Div:
    status = loop.status
    if status is None:
        return html.Div(
            html.P("No check yet: the monitor runs after each ingest.", className="empty")
        )
    state = (
        html.Span("DRIFT", className="bad")
        if status.get("drift")
        else html.Span("no drift", className="ok")
    )
    units = f" {loop.units}" if loop.units else ""
    rows: list[tuple[str, Any]] = [
        ("status", state),
        ("checked", f"{status.get('checked_at', '—')} (data to {status.get('last_observed')})"),
        ("model", str(status.get("model_run_id") or "—")),
    ]
    for check in status.get("checks") or []:
        if check.get("check") == "forecast_error":
            rows.append(
                (
                    "forecast error",
                    f"rolling MAE {_fmt(check.get('realized_mae'), '{:.3f}')}{units} over "
                    f"{check.get('window_weeks')} weeks (horizons 1-{check.get('horizons')}); "
                    f"threshold {_fmt(check.get('threshold'), '{:.3f}')}{units}; backtest band "
                    f"{_fmt((check.get('band') or {}).get('p5'), '{:.3f}')}-"
                    f"{_fmt((check.get('band') or {}).get('p95'), '{:.3f}')}{units}"
                    + (" — TRIPPED" if check.get("tripped") else ""),
                )
            )
        elif check.get("check") == "input_drift":
            rows.append(
                (
                    "input drift",
                    f"{check.get('test')}: p = {_fmt(check.get('p_value'), '{:.2g}')} "
                    f"(threshold {check.get('p_threshold')}), median annual change shift "
                    f"{_fmt(check.get('shift'), '{:+.3g}')}{units} (at least "
                    f"{check.get('min_shift')}), {check.get('recent_weeks')} recent vs "
                    f"{check.get('reference_weeks')} training weeks"
                    + (" — TRIPPED" if check.get("tripped") else ""),
                )
            )
    for reason in status.get("reasons") or []:
        rows.append(("reason", reason))
    if loop.signals:
        last = loop.signals[-1]
        rows.append(
            (
                "last signal",
                f"data to {last.get('last_observed')}: " + "; ".join(last.get("reasons") or []),
            )
        )
    return html.Div(
        html.Table(
            html.Tbody([html.Tr([html.Th(name), html.Td(value)]) for name, value in rows]),
            className="metrics",
        ),
        id="drift-status",
    )


def last_ingest(loop: LoopSnapshot) -> html.Div:
    ingest = loop.ingest
    if ingest is None:
        return html.Div(html.P("No ingest yet.", className="empty"))
    rows = [
        ("when", str(ingest.get("ingested_at", "—"))),
        ("source", str(ingest.get("source", "—"))),
        (
            "weeks",
            f"{ingest.get('appended', 0)} appended ({ingest.get('appended_observed', 0)} "
            f"observed), {ingest.get('revised', 0)} revised, {ingest.get('held_missing', 0)} "
            "missing held",
        ),
        ("data to", str(ingest.get("last_date", "—"))),
        ("dataset sha256", str(ingest.get("sha256", ""))[:16] + "…"),
    ]
    return html.Div(
        html.Table(
            html.Tbody([html.Tr([html.Th(name), html.Td(value)]) for name, value in rows]),
            className="metrics",
        ),
        id="last-ingest",
    )


def retrains_table(loop: LoopSnapshot) -> html.Div:
    if not loop.signals:
        return html.Div(html.P("No drift signal yet.", className="empty"))
    header = html.Tr(
        [html.Th(n) for n in ("data to", "drift", "action", "run / event", "gate", "why")]
    )
    body = []
    for signal in reversed(loop.signals):
        decision = signal.get("decision") or {}
        promoted = decision.get("promoted")
        gate = (
            "—"
            if promoted is None
            else html.Span(
                "promoted" if promoted else "not promoted", className="ok" if promoted else "bad"
            )
        )
        body.append(
            html.Tr(
                [
                    html.Td(str(signal.get("last_observed", "—"))),
                    html.Td("; ".join(signal.get("reasons") or []) or "—"),
                    html.Td(str(signal.get("action", "—"))),
                    html.Td(str(signal.get("run_id") or signal.get("event_id") or "—")),
                    html.Td(gate),
                    html.Td(str(decision.get("reason") or "—")),
                ]
            )
        )
    return html.Div(html.Table([html.Thead(header), html.Tbody(body)], className="runs"))


def loop_section(store: Store) -> html.Div:
    """The loop's part of the page: two figures, the drift status, the last ingest, retrains."""
    loop = read_loop(store)
    return html.Div(
        [
            html.Div(
                [
                    html.Div(dcc.Graph(figure=forecasts_vs_actuals_figure(loop)), className="card"),
                    html.Div(dcc.Graph(figure=error_band_figure(loop)), className="card"),
                ],
                className="cols loop",
            ),
            html.Div(
                [
                    html.Div([html.H2("Drift"), drift_status(loop)], className="card"),
                    html.Div([html.H2("Last ingest"), last_ingest(loop)], className="card"),
                ],
                className="cols loop",
            ),
            html.Div(
                [html.H2("Drift signals and their retrains"), retrains_table(loop)],
                className="card",
            ),
        ]
    )
