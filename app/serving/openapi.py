"""The api's OpenAPI document, written out by hand (`GET /openapi.json`).

`/predict` is checked by hand for speed (`app/serving/payload.py`), so FastAPI cannot derive its
schema; this module states the same limits the parser enforces, for the model being served. The
tests run schemathesis against a live server with this document: no 5xx, no response off the schema,
no valid request refused, no invalid one accepted.

Compatibility: request objects are closed (`additionalProperties: false`, as the parser refuses
unknown fields); response objects are open, so fields added later do not break clients that
validate against an older document. `levels` is restricted to the levels the served model
calibrated (none for a model without intervals), so a request for another level is off the
schema and its 422 is expected; the `lower`/`upper` bounds next to `forecast` are described.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"


def _error(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds after which to try again.",
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return response


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _levels_schema(levels: tuple[int, ...], default_levels: tuple[int, ...]) -> dict[str, Any]:
    """`levels`: only the interval levels the served model calibrated, each at most once."""
    defaults = [level for level in default_levels if level in levels]
    schema: dict[str, Any] = {
        "description": "Prediction-interval levels (percent) to return bounds for. Only levels "
        f"the served model calibrated: {', '.join(map(str, levels)) or 'none'}. Without it, "
        f"{', '.join(map(str, defaults)) or 'none'}; an empty list asks for no bounds.",
        "type": "array",
        "uniqueItems": True,
        "maxItems": len(levels),
        "default": defaults,
    }
    if levels:
        schema["items"] = {"type": "integer", "enum": list(levels)}
    return schema


def _bounds_schema(side: str, max_horizon: int) -> dict[str, Any]:
    return {
        "description": f'{side} interval bounds, keyed by level (e.g. `"80"`): one value per '
        "forecast week. Present when the request asked for levels (or by default) and the "
        "model calibrated them.",
        "type": "object",
        "additionalProperties": {
            "type": "array",
            "minItems": 1,
            "maxItems": max_horizon,
            "items": {"type": "number"},
        },
    }


def openapi_document(
    *,
    min_history: int,
    max_history: int,
    max_horizon: int,
    max_instances: int,
    max_body_bytes: int,
    history_range: tuple[float, float] | None,
    levels: tuple[int, ...] = (),
    default_levels: tuple[int, ...] = (),
    internal: bool,
    series: str = "",
    range_rule: str = "",
) -> dict[str, Any]:
    """The document for one server: the served model's limits (its calibrated interval `levels`
    among them), and `/model` and `/metrics` only where they answer (`internal`: on the internal
    port, or on the only port)."""
    value: dict[str, Any] = {"type": "number"}
    range_note = ""
    if history_range is not None:
        low, high = history_range
        value.update(minimum=low, maximum=high)
        range_note = (
            f" Values must lie in {low:g}..{high:g}, the served model's plausible range"
            + (f" ({range_rule})." if range_rule else ".")
        )
    levels_schema = _levels_schema(levels, default_levels)
    not_ready = _error("No model is loaded yet (nothing promoted, or it failed to load).")
    paths: dict[str, Any] = {
        "/health": {
            "get": {
                "summary": "Liveness: 200 while the process runs, model or not.",
                "operationId": "health",
                "responses": {
                    "200": _json(
                        "The process runs.",
                        {
                            "type": "object",
                            "required": ["status"],
                            "properties": {"status": {"const": "ok"}},
                        },
                    )
                },
            }
        },
        "/ready": {
            "get": {
                "summary": "Readiness: 200 once a model is loaded (the load balancer's check).",
                "operationId": "ready",
                "responses": {
                    "200": _json(
                        "A model is loaded.",
                        {
                            "type": "object",
                            "required": ["status", "model"],
                            "properties": {
                                "status": {"const": "ready"},
                                "model": {"type": "string"},
                            },
                        },
                    ),
                    "503": _json(
                        "No model is loaded yet.",
                        {
                            "type": "object",
                            "required": ["status", "detail"],
                            "properties": {
                                "status": {"const": "not ready"},
                                "detail": {"type": "string"},
                            },
                        },
                    ),
                },
            }
        },
        "/predict": {
            "post": {
                "summary": "Forecast the next `horizon` weeks after each history.",
                "description": (
                    "Concurrent requests are batched into one model call. The body may hold at "
                    f"most {max_body_bytes} bytes (413 beyond)." + range_note
                ),
                "operationId": "predict",
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
                },
                "responses": {
                    "200": _json(
                        "One prediction per instance, in order.",
                        {"$ref": "#/components/schemas/PredictResponse"},
                    ),
                    "408": _error("The body did not arrive in time."),
                    "413": _error(f"The body is larger than {max_body_bytes} bytes."),
                    "422": _error(
                        "The body breaks this schema; `detail` names the first bad field, e.g. "
                        "`instances[0].history[3]: must be a number, got null`, or "
                        "`levels[0]: must be one of 80, 95, got 70` for a level the served "
                        "model did not calibrate."
                    ),
                    "500": _error("The model failed on this batch; see the server log."),
                    "503": _error(not_ready["description"], retry_after=True),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "operationId": "openapi",
                "responses": {"200": _json("The OpenAPI document.", {"type": "object"})},
            }
        },
    }
    if internal:
        paths["/model"] = {
            "get": {
                "summary": "The served run: its id, training time, metrics and input limits.",
                "operationId": "model",
                "responses": {
                    "200": _json("The served run.", {"$ref": "#/components/schemas/ModelInfo"}),
                    "503": not_ready,
                },
            }
        }
        paths["/metrics"] = {
            "get": {
                "summary": "Prometheus metrics: requests, latency, model version, reloads, "
                "batch sizes.",
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        }
    schemas = {
        "Error": {
            "type": "object",
            "required": ["detail"],
            "properties": {"detail": {"type": "string"}},
        },
        "Instance": {
            "type": "object",
            "additionalProperties": False,
            "required": ["history", "horizon"],
            "properties": {
                "history": {
                    "description": f"Weekly values of {series or 'the served series'}, oldest "
                    "first; only the most recent ones are used." + range_note,
                    "type": "array",
                    "minItems": min_history,
                    "maxItems": max_history,
                    "items": value,
                },
                "horizon": {
                    "description": "Weeks to forecast after the last history value.",
                    "type": "integer",
                    "minimum": 1,
                    "maximum": max_horizon,
                },
            },
        },
        "PredictRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["instances"],
            "properties": {
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": max_instances,
                    "items": {"$ref": "#/components/schemas/Instance"},
                },
                "levels": levels_schema,
            },
        },
        "Prediction": {
            "description": "Clients should ignore fields they do not know: more may be added.",
            "type": "object",
            "required": ["forecast"],
            "properties": {
                "forecast": {
                    "description": "`horizon` finite values, one per week after the history.",
                    "type": "array",
                    "minItems": 1,
                    "maxItems": max_horizon,
                    "items": {"type": "number"},
                },
                "lower": _bounds_schema("Lower", max_horizon),
                "upper": _bounds_schema("Upper", max_horizon),
            },
        },
        "PredictResponse": {
            "type": "object",
            "required": ["predictions", "model"],
            "properties": {
                "predictions": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Prediction"},
                },
                "model": {"type": "string", "description": "The run that made the forecasts."},
            },
        },
        "ModelInfo": {
            "type": "object",
            "required": ["run_id", "trained_at", "metrics", "min_history", "max_horizon", "device"],
            "properties": {
                "run_id": {"type": "string"},
                "trained_at": {"type": "string"},
                "metrics": {"type": "object"},
                "min_history": {"type": "integer"},
                "max_horizon": {"type": "integer"},
                "device": {
                    "type": "string",
                    "enum": ["cuda", "cpu"],
                    "description": "Where predictions run: a GPU the model can use, or the CPU.",
                },
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "mlops inference", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
