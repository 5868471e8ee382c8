"""The WSGI app gunicorn runs for `serve`: `GET /ping` and `POST /invocations` on port 8080.

/ping answers 200 once the model in /opt/ml/model loads, 503 with the reason before that.
/invocations takes
  application/json  {"instances": [[64 pixel values 0-16], ...]}
  text/csv          one row of 64 pixel values per line, no header
and answers {"predictions": [{"class": 3, "probabilities": [10 values summing to 1]}, ...]}.
Bad input gets a 4xx and {"error": "..."} naming the problem; bodies over MAX_BODY_BYTES are
refused unread (413).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from digits_model import CLASSES, FEATURES, MODEL_FILE, PIXEL_MAX, gpu_visible, ml_root

MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", str(1024 * 1024)))
MAX_ROWS = int(os.environ.get("MAX_ROWS", "1000"))
JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class HTTPError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class Model:
    """The booster, loaded on first use (so /ping reports a missing model instead of a crash)."""

    def __init__(self) -> None:
        self._booster: Any = None
        self._lock = threading.Lock()

    def booster(self) -> Any:
        with self._lock:
            if self._booster is None:
                import xgboost as xgb

                path = ml_root() / "model" / MODEL_FILE
                if not path.is_file():
                    raise HTTPError("503 Service Unavailable", f"no model at {path}")
                booster = xgb.Booster()
                try:
                    booster.load_model(path)
                except xgb.core.XGBoostError as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
                    raise HTTPError(
                        "503 Service Unavailable", f"{path} is not an XGBoost model: {first}"
                    ) from None
                learner = json.loads(booster.save_config())["learner"]
                classes = int(learner["learner_model_param"].get("num_class", 0))
                if classes != CLASSES or booster.num_features() != FEATURES:
                    raise HTTPError(
                        "503 Service Unavailable",
                        f"{path} is not a digits model: {booster.num_features()} features and "
                        f"{classes} classes, expected {FEATURES} and {CLASSES}",
                    )
                cuda = bool(xgb.build_info().get("USE_CUDA")) and gpu_visible()
                booster.set_param({"device": "cuda" if cuda else "cpu"})
                self._booster = booster
            return self._booster

    def predict(self, rows: list[list[float]]) -> list[dict[str, Any]]:
        import numpy as np
        import xgboost as xgb

        booster = self.booster()
        probabilities = booster.predict(xgb.DMatrix(np.asarray(rows, dtype=np.float32)))
        return [
            {"class": int(p.argmax()), "probabilities": [round(float(v), 6) for v in p]}
            for p in probabilities
        ]


MODEL = Model()


def _read_body(environ: dict[str, Any]) -> bytes:
    raw_length = environ.get("CONTENT_LENGTH") or ""
    if raw_length:
        try:
            length = int(raw_length)
        except ValueError:
            raise HTTPError("400 Bad Request", "Content-Length is not a number") from None
        if length > MAX_BODY_BYTES:
            raise HTTPError(
                "413 Content Too Large", f"body of {length} bytes exceeds {MAX_BODY_BYTES} bytes"
            )
        body = environ["wsgi.input"].read(length)
    else:  # chunked: read one byte past the limit to know it was exceeded
        body = environ["wsgi.input"].read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            raise HTTPError("413 Content Too Large", f"body exceeds {MAX_BODY_BYTES} bytes")
    if not body.strip():
        raise HTTPError("400 Bad Request", "empty body: send instances to classify")
    return body


def _check_rows(rows: Any) -> list[list[float]]:
    if not isinstance(rows, list) or not rows:
        raise HTTPError("400 Bad Request", "instances must be a non-empty list of rows")
    if len(rows) > MAX_ROWS:
        raise HTTPError("413 Content Too Large", f"{len(rows)} rows exceed the limit of {MAX_ROWS}")
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != FEATURES:
            size = len(row) if isinstance(row, list) else type(row).__name__
            raise HTTPError(
                "400 Bad Request", f"row {index}: expected {FEATURES} pixel values, got {size}"
            )
        for column, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    not math.isfinite(value) or not 0 <= value <= PIXEL_MAX:
                raise HTTPError(
                    "400 Bad Request",
                    f"row {index}, column {column}: {value!r} is not a pixel value "
                    f"(a number 0..{PIXEL_MAX:g})",
                )
    return rows


def _parse(media_type: str, body: bytes) -> list[list[float]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError("400 Bad Request", "body is not UTF-8") from None
    if media_type == JSON_TYPE:
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise HTTPError("400 Bad Request", f"body is not JSON: {exc}") from None
        if not isinstance(document, dict) or "instances" not in document:
            raise HTTPError("400 Bad Request", 'JSON body must be {"instances": [[...], ...]}')
        return _check_rows(document["instances"])
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append([float(cell) for cell in line.split(",")])
        except ValueError:
            raise HTTPError(
                "400 Bad Request", f"CSV line {number}: not comma-separated numbers"
            ) from None
    return _check_rows(rows)


def _respond(start: StartResponse, status: str, payload: Any) -> Iterable[bytes]:
    body = json.dumps(payload).encode()
    start(status, [("Content-Type", JSON_TYPE), ("Content-Length", str(len(body)))])
    return [body]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "")
    try:
        if path == "/ping":
            if method not in ("GET", "HEAD"):
                raise HTTPError("405 Method Not Allowed", "use GET /ping")
            MODEL.booster()
            return _respond(start_response, "200 OK", {"status": "ok"})
        if path == "/invocations":
            if method != "POST":
                raise HTTPError("405 Method Not Allowed", "use POST /invocations")
            media_type = (environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
            if media_type not in (JSON_TYPE, CSV_TYPE):
                raise HTTPError(
                    "415 Unsupported Media Type",
                    f"Content-Type {media_type or '(none)'!r}: send {JSON_TYPE} or {CSV_TYPE}",
                )
            rows = _parse(media_type, _read_body(environ))
            return _respond(start_response, "200 OK", {"predictions": MODEL.predict(rows)})
        raise HTTPError("404 Not Found", f"no route {path}: use GET /ping or POST /invocations")
    except HTTPError as exc:
        return _respond(start_response, exc.status, {"error": str(exc)})
