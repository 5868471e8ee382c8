"""The page (`python -m mlops_platform page`): what it reads from a store, however damaged or
hostile, what it answers over HTTP, and the page a user sees in a real headless Chromium."""

from __future__ import annotations

import http.client
import importlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.platform.conftest import PLATFORM, Env
from tests.platform.test_capture import free_port


def _import_page() -> Any:
    """The module as the image lays it out: the platform's directory on the path, after the
    repository root (whose mlops_contract.py the image's is a copy of)."""
    if str(PLATFORM) not in sys.path:
        sys.path.append(str(PLATFORM))
    return importlib.import_module("mlops_platform.page")


page = _import_page()
NOW = datetime(2026, 12, 8, 12, 30, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>"


# --- building stores -----------------------------------------------------------------------
def settings(store: Path, name: str = "inference") -> Any:
    return page.Settings(store, 0, name)


def render(store: Path, **kwargs: Any) -> str:
    return page.render_page(settings(store, **kwargs), now=NOW)


def write_run(
    store: Path,
    run_id: str,
    report: dict | None = None,
    decision: dict | None = None,
    mtime: float | None = None,
) -> None:
    run_dir = store / "models" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, record in (("report.json", report), ("decision.json", decision)):
        if record is not None:
            (run_dir / name).write_text(json.dumps(record))
            if mtime is not None:
                os.utime(run_dir / name, (mtime, mtime))


def capture_record(index: int) -> str:
    """One line as capture-proxy writes it (docs/monitoring.md, "Data capture")."""
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "text/csv",
                    "mode": "INPUT",
                    "data": ",".join(["0"] * 64),
                    "encoding": "CSV",
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": '{"predictions": [3]}',
                    "encoding": "JSON",
                },
            },
            "eventMetadata": {"eventId": f"e-{index}", "inferenceTime": "2026-12-08T10:00:00Z"},
            "eventVersion": "0",
        }
    )


def write_capture(
    store: Path, hour: datetime, lines: list[str], file: str = "ip-10-0-1-5-7-1.jsonl"
) -> Path:
    directory = store / "capture" / "inference" / "AllTraffic" / f"{hour:%Y/%m/%d/%H}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file
    path.write_text("".join(line + "\n" for line in lines))
    return path


def check(
    at: datetime,
    distances: dict[str, float],
    event: dict | None = None,
    threshold: float = 0.1,
    **extra: Any,
) -> dict[str, Any]:
    """One line of monitoring/model/history.jsonl, as the monitor writes it."""
    features = {
        name: {"distance": d, "threshold": threshold, "critical": 0.03, "drift": d > threshold}
        for name, d in distances.items()
    }
    return {
        "checked_at": f"{at:%Y-%m-%dT%H:%M:%SZ}",
        "run_id": "r1",
        "channel": "train",
        "rows": 2400,
        "records": 120,
        "malformed": 0,
        "decided": True,
        "note": "",
        "features": features,
        "drifted": [name for name, f in features.items() if f["drift"]],
        "output": None,
        "quality": None,
        "event": event,
        "report": f"reports/{at:%Y-%m-%dT%H-%M-%SZ}.json",
        **extra,
    }


def write_history(store: Path, lines: list[dict | str | bytes]) -> Path:
    path = store / "monitoring" / "model" / "history.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line)
            handle.write((line if isinstance(line, bytes) else line.encode()) + b"\n")
    return path


class Tags(HTMLParser):
    """Every element and attribute name of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes |= {name for name, _ in attrs}


# --- the parts --------------------------------------------------------------------------------
def test_a_missing_store_and_an_empty_one_are_shown_not_raised(tmp_path: Path) -> None:
    missing = render(tmp_path / "not-mounted")
    assert "is not a directory (is the store mounted?)" in missing
    empty = tmp_path / "store"
    empty.mkdir()
    for text in (missing, render(empty)):
        assert "no model promoted yet" in text
        assert "no runs yet: there is no models/ in the store" in text
        assert "no capture yet" in text
        assert "no monitor check yet: there is no monitoring/model/history.jsonl" in text


def test_hostile_names_and_text_reach_the_page_escaped(tmp_path: Path) -> None:
    hostile_run = "<img src=x onerror=alert(1)>"  # a valid directory name, not a run id
    write_run(
        tmp_path,
        hostile_run,
        report={"status": "failed", "failure": "<script>alert('f')</script>\x1b[31mred"},
        decision={"promoted": False, "reason": HOSTILE, "key": "<b>k</b>", "objective": 1.0},
    )
    write_history(
        tmp_path,
        [
            check(
                NOW - timedelta(hours=1),
                {HOSTILE: 0.5, "_c1": 0.01},
                event={"id": '"><svg onload=alert(3)>', "reasons": ["<iframe src=//evil.example>"]},
                channel=HOSTILE,
                note="<style>body{display:none}</style>",
            )
        ],
    )
    real = write_capture(tmp_path, NOW, [capture_record(0)])
    (real.parent / "<b>x<.jsonl").symlink_to(real)  # named in the hour's problems

    text = render(tmp_path)

    for raw in ("<script", "<img", "<iframe", "<svg onload", "<b>", "<style>body", "\x1b"):
        assert raw not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;iframe src=//evil.example&gt;" in text
    assert "\\x1b[31mred" in text  # the control character shown, not sent to the terminal
    assert "&lt;b&gt;x&lt;.jsonl is a symlink" in text
    parsed = Tags()
    parsed.feed(text)
    assert "script" not in parsed.tags and "iframe" not in parsed.tags and "img" not in parsed.tags
    assert not [name for name in parsed.attributes if name.startswith("on")]


def test_damaged_history_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    write_history(
        tmp_path,
        [
            check(NOW - timedelta(hours=3), {"_c0": 0.01}),
            "not json {",
            "[1, 2]",
            '{"deep": ' + "[" * 100 + "]" * 100 + "}",
            b"\xff\xfe not utf-8",
            '{"big": ' + "9" * 500 + "}",
            {"checked_at": "yesterday"},  # an object missing nearly everything still counts
            check(NOW - timedelta(hours=1), {"_c0": 0.02, "_c1": 0.2}),
        ],
    )

    history = page.read_history(tmp_path)

    assert (len(history.checks), history.bad_lines) == (3, 5)
    text = render(tmp_path)
    assert "5 damaged line(s) skipped" in text
    assert 'data-bad-lines="5"' in text
    assert '<tr data-feature="_c1" data-drift="true">' in text
    assert "1 check(s) without feature distances are not plotted" in text


def test_history_is_read_from_its_end_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(page, "HISTORY_TAIL_BYTES", 4096)
    lines = [check(NOW - timedelta(hours=200 - i), {"_c0": i / 1000}) for i in range(200)]
    path = write_history(tmp_path, lines)

    history = page.read_history(tmp_path)

    assert history.bad_lines == 0  # the line the bound cut in two is not called damaged
    shown = [c.raw for c in history.checks]
    assert shown == lines[len(lines) - len(shown) :]  # the newest, in order
    read = sum(len(json.dumps(raw)) + 1 for raw in shown)
    assert read <= 4096 < read + len(json.dumps(lines[-len(shown) - 1])) + 1
    assert history.skipped_bytes == path.stat().st_size - read
    assert "only the last 4 KiB were read" in render(tmp_path)


def test_capture_counts_per_hour_with_bounded_reads(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(page, "CAPTURE_FILE_BYTES", 1000)
    line = "x" * 49  # 50 bytes with its newline
    write_capture(tmp_path, NOW - timedelta(hours=1), [line] * 5)
    write_capture(tmp_path, NOW - timedelta(hours=1), [line] * 2, file="b.jsonl")
    big = write_capture(tmp_path, NOW - timedelta(hours=3), [line] * 100)
    with open(big, "a") as handle:
        handle.write("no newline at the end")  # counted where the whole file is read
    write_capture(tmp_path, NOW - timedelta(hours=47), ["{}", "{}", "{}"])
    write_capture(tmp_path, NOW - timedelta(hours=48), ["{}"])  # outside the window
    (big.parent / "linked.jsonl").symlink_to(big)

    capture = page.read_capture(tmp_path, "inference", NOW)

    hours = {hour.key: hour for hour in capture.hours if hour.files or hour.problems}
    assert len(capture.hours) == 48
    recent = hours[f"{NOW - timedelta(hours=1):%Y-%m-%dT%H}"]
    assert (recent.counted, recent.lower_bound, recent.files) == (7, False, 2)
    cut = hours[f"{NOW - timedelta(hours=3):%Y-%m-%dT%H}"]
    assert (cut.counted, cut.lower_bound) == (20, True)
    assert cut.estimate == round(20 * big.stat().st_size / 1000)
    assert cut.problems == ["linked.jsonl is a symlink, which the page does not follow"]
    assert hours[f"{NOW - timedelta(hours=47):%Y-%m-%dT%H}"].counted == 3
    assert capture.counted == 30 and capture.bytes_read == 350 + 1000 + 9
    text = page.section_capture(capture)
    assert "≥ 20" in text and f"≈ {cut.estimate}" in text
    assert 'data-lower-bound="true"' in text
    assert "at least 30" in text

    # One page reads at most the budget, newest hours first: the oldest count is the estimate.
    monkeypatch.setattr(page, "CAPTURE_BUDGET_BYTES", 1200)
    capture = page.read_capture(tmp_path, "inference", NOW)
    assert capture.bytes_read == 1200
    oldest = capture.hours[0]
    assert (oldest.counted, oldest.lower_bound, oldest.estimate) == (0, True, 0)


def test_a_whole_file_ending_without_a_newline_counts_its_last_line(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"a\nb\nc")
    assert page.count_lines(path, 1 << 20) == (3, 5, 5, True)
    assert page.count_lines(path, 4) == (2, 4, 5, False)
    path.write_bytes(b"")
    assert page.count_lines(path, 1 << 20) == (0, 0, 0, True)


def test_runs_newest_first_at_most_fifty_with_their_decisions(tmp_path: Path) -> None:
    trained = {"status": "trained", "failure": None, "files": {"model.json": "ab"}}
    base = NOW.timestamp() - 10_000
    for i in range(55):
        write_run(tmp_path, f"r{i:02d}", report=trained, mtime=base + i)
    write_run(
        tmp_path,
        "r54",
        decision={"promoted": True, "key": "accuracy", "objective": 0.95, "reason": "first"},
        mtime=base + 54,
    )
    write_run(
        tmp_path,
        "r53",
        decision={"promoted": True, "rollout": {"status": "pending"}, "reason": "better"},
        mtime=base + 53,
    )
    write_run(
        tmp_path,
        "r52",
        decision={"promoted": False, "rollout": {"status": "failed"}, "reason": "rollout failed"},
        mtime=base + 52,
    )
    write_run(tmp_path, "r51", decision={"promoted": False, "reason": "not better"})
    os.utime(tmp_path / "models/r51/decision.json", (base + 51, base + 51))
    (tmp_path / "models" / "r50" / "decision.json").write_text('{"promoted": ')  # damaged
    os.utime(tmp_path / "models/r50/decision.json", (base + 50, base + 50))
    (tmp_path / "models" / ".r99.abcd.tmp").mkdir()  # a collection in progress: not a run
    (tmp_path / "models" / "CURRENT").write_text("r54\n")

    runs = page.read_runs(tmp_path)

    assert runs.found == 55
    assert [run.run_id for run in runs.runs] == [f"r{i:02d}" for i in range(54, 4, -1)]
    text = page.section_runs(runs, "r54", NOW)
    assert "the newest 50 of 55 run(s)" in text
    decisions = {
        f"r{i}": value
        for i, value in (
            (54, "promoted"),
            (53, "candidate"),
            (52, "kept"),
            (51, "kept"),
            (49, "not-gated"),
        )
    }
    for run_id, value in decisions.items():
        assert f'data-run-id="{run_id}" data-decision="{value}"' in text
    assert 'data-run-id="r54" data-decision="promoted" data-current="true"' in text
    assert "kept: its rollout failed" in text
    assert "models/r50/decision.json is not JSON" in text


def test_current_model_damaged_or_naming_a_missing_run(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "CURRENT").write_text("../../etc/passwd\n")
    assert "models/CURRENT is damaged: not a run id" in render(tmp_path)
    (tmp_path / "models" / "CURRENT").write_text("r9\n")
    assert "models/CURRENT names run &#x27;r9&#x27; but models/r9/ does not exist" in render(
        tmp_path
    )
    write_run(tmp_path, "r9", report={"status": "trained"})
    (tmp_path / "models" / "r9" / "decision.json").symlink_to("/etc/hostname")
    text = render(tmp_path)
    assert '<strong data-run-id="r9">r9</strong>' in text
    assert "models/r9/decision.json is a symlink; only a regular file is read" in text


def test_the_current_model_with_its_report_decision_and_baseline(tmp_path: Path) -> None:
    write_run(
        tmp_path,
        "r4",
        report={
            "run_id": "r4",
            "status": "trained",
            "failure": None,
            "files": {"model.json": "ab", "metrics.json": "cd"},
            "baseline": {
                "directory": "baseline",
                "channels": {
                    "train": {"format": "csv", "rows": 1797, "features": 65},
                    "images": {"skipped": "no CSV or JSON Lines files: 3 file(s) (.png 3)"},
                },
            },
        },
        decision={
            "run_id": "r4",
            "promoted": True,
            "objective": 0.95,
            "current_objective": 0.9,
            "current_run": "r1",
            "key": "accuracy",
            "direction": "maximize",
            "margin": 0.01,
            "reason": "accuracy 0.95 vs 0.9 of run r1: higher by 0.05 > margin 0.01",
            "rollout": {"status": "succeeded", "finished_at": "2026-12-08T01:00:00Z"},
        },
    )
    (tmp_path / "models" / "CURRENT").write_text("r4\n")

    text = page.section_current(page.read_current_model(tmp_path), NOW)

    assert '<strong data-run-id="r4">r4</strong>' in text
    assert "accuracy = 0.95" in text and "vs 0.9 of r1" in text
    assert "promoted, rolled out" in text and "higher by 0.05 &gt; margin 0.01" in text
    assert "<code>models/r4/baseline/</code>: train (1,797 rows, 65 features)" in text
    assert "skipped images: no CSV or JSON Lines files" in text
    assert "<th>model files</th><td>2</td>" in text


def test_events_not_sent_are_listed_with_why_and_not_marked(tmp_path: Path) -> None:
    # As monitor.py records a reason for an event it did not send (events off, cooling down, a
    # failed put), next to the keys it adds beyond the page's (expired_hours, since, absent, ...).
    reasons = ["_c3: distance 0.400 > 0.1"]
    write_history(
        tmp_path,
        [
            check(
                NOW - timedelta(hours=2),
                {"_c3": 0.4},
                event={"id": "0b5f-sent", "reasons": reasons},
            ),
            check(
                NOW - timedelta(hours=1),
                {"_c3": 0.4},
                event={"id": None, "reasons": reasons, "note": "cooling down: the last event was"},
                expired_hours=0,
                since="2026-12-08T10:00:00Z",
                until="2026-12-08T11:00:00Z",
                absent=[],
            ),
            check(
                NOW,
                {"_c3": 0.4},
                event={"id": None, "reasons": reasons, "error": "the drift event was not sent"},
                quality={"key": "accuracy", "labels": 3, "note": "too few labels"},
            ),
        ],
    )

    text = render(tmp_path)

    assert text.count('<circle class="event" data-event=') == 1
    assert 'data-event="0b5f-sent"' in text
    assert '<tr data-event-id="0b5f-sent" data-sent="true">' in text
    assert text.count('<tr data-event-id="" data-sent="false">') == 2
    assert "1 sent, 2 not sent, in the checks read" in text
    assert "cooling down: the last event was" in text
    assert "the drift event was not sent" in text
    assert "<th>note</th><td>too few labels</td>" in text
    assert "2026-12-08T10:00:00Z to 2026-12-08T11:00:00Z" not in text  # the last check's only


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    (tmp_path / "store").mkdir()
    served = page.PageServer(settings(tmp_path / "store"), host="127.0.0.1")
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    try:
        yield served.server_address
    finally:
        served.shutdown()
        served.server_close()


def _request(address: tuple[str, int], method: str, path: str) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_http_answers_get_health_404_and_405(server: tuple[str, int]) -> None:
    status, headers, body = _request(server, "GET", "/")
    assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    assert "script-src" not in headers["Content-Security-Policy"]
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert body.startswith(b"<!doctype html>") and int(headers["Content-Length"]) == len(body)
    assert _request(server, "GET", "/health")[::2] == (200, b'{"status": "ok"}\n')
    assert _request(server, "GET", "/?refresh=1")[0] == 200
    assert _request(server, "HEAD", "/")[::2] == (200, b"")
    assert _request(server, "GET", "/models/CURRENT")[0] == 404
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "BREW"):
        status, headers, _ = _request(server, method, "/")
        assert (status, headers["Allow"]) == (405, "GET, HEAD"), method


def test_bad_settings_are_refused_with_one_line(env: Env) -> None:
    refused = env.run("page", PORT="http")
    assert refused.returncode == 1
    assert refused.stderr == "page: PORT='http' is not a port (an integer 1-65535)\n"
    refused = env.run("page", MLOPS_CAPTURE_NAME="../models")
    assert refused.returncode == 1
    assert refused.stderr.startswith("page: MLOPS_CAPTURE_NAME='../models' is not a directory")


# --- the real thing: the command and headless Chromium -----------------------------------------
@pytest.fixture
def store(env: Env) -> Env:
    """What a user's stack leaves: r1 trained and promoted, r2 trained and kept (both through
    the platform's own commands), capture files in two hours, and a monitor history whose last
    check drifted on _c10 and sent an event."""
    env.trained("r1", 0.9)
    assert env.gate("r1").returncode == 0
    env.trained("r2", 0.85)
    assert env.gate("r2").returncode == 3
    now = datetime.now(UTC)
    for run_id, age in (("r1", 7200), ("r2", 3600)):
        for name in ("report.json", "decision.json"):
            os.utime(env.models / run_id / name, (now.timestamp() - age,) * 2)
    write_capture(env.store, now - timedelta(hours=2), [capture_record(i) for i in range(12)])
    write_capture(env.store, now - timedelta(hours=5), [capture_record(i) for i in range(30)])
    calm = {f"_c{i}": 0.01 + i / 1000 for i in range(25)}
    drifted = {**calm, "_c10": 0.31, HOSTILE: 0.02}
    write_history(
        env.store,
        [
            check(now - timedelta(hours=3), calm),
            "{damaged",
            check(now - timedelta(hours=2), calm),
            check(
                now - timedelta(hours=1),
                drifted,
                event={"id": "evt-1234", "reasons": ["_c10 drifted: distance 0.31 > 0.1"]},
                output={
                    "field": "class",
                    "baseline": "_c64",
                    "distance": 0.02,
                    "threshold": 0.1,
                    "drift": False,
                },
                quality={
                    "key": "accuracy",
                    "live": 0.91,
                    "model": 0.95,
                    "labels": 300,
                    "margin": 0.05,
                    "drift": False,
                },
            ),
        ],
    )
    return env


@pytest.mark.slow
def test_the_page_in_a_real_browser(store: Env, tmp_path: Path) -> None:
    # The forecaster dashboard's browser test launches Chromium so; its module imports Dash, so
    # it is imported here, in the slow test only.
    from playwright.sync_api import sync_playwright

    from tests.app.dashboard.test_page import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package `chromium`)")
    port = free_port()
    process = store.popen("page", PORT=str(port))
    try:
        assert process.stdout is not None
        listening = json.loads(process.stdout.readline() or "{}")
        assert listening.get("event") == "page-listening", process.stderr.read()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                shot = tmp_path / "page.png"
                problems = _look_at_the_page(browser, f"http://127.0.0.1:{port}/", shot)
            finally:
                browser.close()
        assert problems == []
        assert shot.stat().st_size > 20_000
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {"event": "page-stopped", "pages": 1}


def _look_at_the_page(browser: Any, url: str, shot: Path) -> list[str]:
    """What a user sees; returns the console errors, failed responses and dialogs met."""
    view = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    view.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    view.on("pageerror", lambda error: problems.append(str(error)))
    view.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    view.on(
        "dialog", lambda dialog: (problems.append(f"dialog {dialog.message}"), dialog.dismiss())
    )
    view.goto(url)

    assert "r1" in view.inner_text("#current-model")
    assert "accuracy = 0.9" in view.inner_text("#current-model")
    r1, r2 = view.locator('#runs tr[data-run-id="r1"]'), view.locator('#runs tr[data-run-id="r2"]')
    assert r1.get_attribute("data-decision") == "promoted"
    assert r1.get_attribute("data-current") == "true"
    assert "promoted" in r1.inner_text() and "current" in r1.inner_text()
    assert r2.get_attribute("data-decision") == "kept"
    assert "not higher by more than margin 0" in r2.inner_text()
    rows = view.locator("#runs tbody tr")
    assert [rows.nth(i).get_attribute("data-run-id") for i in range(rows.count())] == ["r2", "r1"]

    assert view.locator("#capture-total").get_attribute("data-records") == "42"
    assert "42 records in the last 48 hours" in view.inner_text("#capture")
    counts = view.locator("#capture-hours tbody tr td:nth-child(2)")
    assert [counts.nth(i).inner_text() for i in range(counts.count())] == ["12", "30"]
    assert view.locator("#capture-chart rect.bar").count() == 2

    first = view.locator("#drift-features tbody tr").first
    assert first.get_attribute("data-feature") == "_c10"
    assert first.get_attribute("data-drift") == "true"
    assert "drift" in first.inner_text()
    assert HOSTILE in view.inner_text("#drift-features")  # shown as text, never run
    assert "and 6 more feature(s)" in view.inner_text("#drift-more")
    assert "1 damaged line(s) skipped" in view.inner_text("#drift-notes")
    assert view.locator("#drift-chart circle.point[data-checked-at]").count() == 3
    assert view.locator("#drift-chart circle.point.drifted[data-checked-at]").count() == 1
    assert (
        view.locator("#drift-chart circle.event[data-event]").get_attribute("data-event")
        == "evt-1234"
    )
    assert "0.91" in view.inner_text("#drift-quality")
    assert "_c64" in view.inner_text("#drift-output")
    event = view.locator('#events tr[data-event-id="evt-1234"]')
    assert "_c10 drifted: distance 0.31 > 0.1" in event.inner_text()

    view.screenshot(path=str(shot), full_page=True)
    return problems
