"""`serve` over real HTTP: `python -m app serve` subprocesses against a trained store."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from app.forecasting.model import Forecaster
from app.store import Store
from tests.app.conftest import FIRST_RUN
from tests.app.helpers import (
    PATIENCE,
    ServerProcess,
    free_port,
    predict_body,
    replace_model,
    run_app,
    shipped_history,
    wait_for,
)


@pytest.fixture(scope="module")
def shared_server(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the tests that only read; a 10 ms batch window makes batching visible."""
    root = tmp_path_factory.mktemp("shared") / "store"
    shutil.copytree(trained_store, root)
    with ServerProcess(root, BATCH_WAIT_MS="10") as server:
        server.wait_ready()
        yield server.url


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def clone_run(store: Store, run_id: str, *, fix_run_id: bool = True) -> Path:
    """A copy of the first run under another id (same model, so forecasts stay comparable)."""
    run_dir = store.run_dir(run_id)
    shutil.copytree(store.run_dir(FIRST_RUN), run_dir)
    (run_dir / "decision.json").unlink()
    if fix_run_id:
        metrics = store.read_json(run_dir / "metrics.json")
        metrics["run_id"] = run_id
        store.write_json(run_dir / "metrics.json", metrics)
    return run_dir


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


# --- the contract -------------------------------------------------------------------------------


def test_health_is_ok(shared_server: str) -> None:
    response = httpx.get(shared_server + "/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_names_the_loaded_model(shared_server: str) -> None:
    response = httpx.get(shared_server + "/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "model": FIRST_RUN}


def test_model_describes_the_served_run(shared_server: str, trained_store: Path) -> None:
    body = httpx.get(shared_server + "/model").json()
    assert set(body) == {"run_id", "trained_at", "metrics", "min_history", "max_horizon", "device"}
    assert body["run_id"] == FIRST_RUN
    assert body["metrics"] == Store(trained_store).read_json(
        Store(trained_store).run_dir(FIRST_RUN) / "metrics.json"
    )
    assert body["min_history"] <= 60
    assert body["max_horizon"] == 52
    # No GPU on the test machines (and no CUDA in xgboost-cpu): the fallback serves.
    assert body["device"] == "cpu"


def test_predict_returns_a_forecast_of_each_requested_length(shared_server: str) -> None:
    history = shipped_history(60)
    body = {
        "instances": [
            {"history": history, "horizon": 1},
            {"history": history, "horizon": 4},
            {"history": shipped_history(58), "horizon": 52},
        ]
    }
    response = httpx.post(shared_server + "/predict", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    result = response.json()
    assert result["model"] == FIRST_RUN
    assert [len(p["forecast"]) for p in result["predictions"]] == [1, 4, 52]
    assert set(result["predictions"][0]) == {"forecast", "lower", "upper"}
    assert result["predictions"][1]["forecast"][0] == result["predictions"][0]["forecast"][0]
    assert all(330 < value < 390 for p in result["predictions"] for value in p["forecast"])


def test_predict_returns_interval_bounds_at_the_requested_levels(
    shared_server: str, trained_store: Path
) -> None:
    forecaster = Forecaster.load(Store(trained_store).run_dir(FIRST_RUN))
    history = shipped_history(60)
    default = httpx.post(shared_server + "/predict", json=predict_body(horizon=8)).json()
    (prediction,) = default["predictions"]
    assert set(prediction["lower"]) == set(prediction["upper"]) == {"80", "95"}
    expected = forecaster.bounds(forecaster.predict([np.array(history)], [8]), [80, 95])[0]
    for side in ("lower", "upper"):
        for level in ("80", "95"):
            assert len(prediction[side][level]) == 8
            np.testing.assert_allclose(prediction[side][level], expected[side][level], atol=1e-4)
    body = {**predict_body(horizon=3), "levels": [99, 50]}
    chosen = httpx.post(shared_server + "/predict", json=body).json()["predictions"][0]
    assert set(chosen["lower"]) == {"50", "99"}
    assert chosen["lower"]["99"][0] < chosen["lower"]["50"][0] < chosen["forecast"][0]
    refused = httpx.post(shared_server + "/predict", json={**body, "levels": [42]})
    assert refused.status_code == 422
    assert refused.json() == {"detail": "levels[0]: must be one of 50, 80, 90, 95, 99, got 42"}
    # As the published schema says: 99.0 is the integer 99, and a level is asked for once.
    as_float = httpx.post(shared_server + "/predict", json={**body, "levels": [99.0, 50]})
    assert as_float.json()["predictions"][0] == chosen
    repeated = httpx.post(shared_server + "/predict", json={**body, "levels": [99, 99]})
    assert repeated.status_code == 422
    assert repeated.json() == {"detail": "levels[1]: 99 is already asked for"}


def test_predictions_match_the_model_loaded_in_process(
    shared_server: str, trained_store: Path
) -> None:
    forecaster = Forecaster.load(Store(trained_store).run_dir(FIRST_RUN))
    history = shipped_history(60)
    served = httpx.post(shared_server + "/predict", json=predict_body(horizon=8)).json()
    expected = forecaster.predict([np.array(history)], [8])[0]
    np.testing.assert_allclose(served["predictions"][0]["forecast"], expected, atol=1e-4)


def test_concurrent_requests_share_model_calls(shared_server: str) -> None:
    before = httpx.get(shared_server + "/metrics").text
    history = shipped_history(60)

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=shared_server, timeout=10) as client:
            bodies = [
                {"instances": [{"history": [v + i * 0.01 for v in history], "horizon": 1 + i % 52}]}
                for i in range(32)
            ]
            return await asyncio.gather(*(client.post("/predict", json=b) for b in bodies))

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * 32
    assert [len(r.json()["predictions"][0]["forecast"]) for r in responses] == [
        1 + i % 52 for i in range(32)
    ]
    after = httpx.get(shared_server + "/metrics").text
    calls = metric(after, "mlops_predict_batch_size_count") - metric(
        before, "mlops_predict_batch_size_count"
    )
    instances = metric(after, "mlops_predict_batch_size_sum") - metric(
        before, "mlops_predict_batch_size_sum"
    )
    assert instances == 32
    assert calls < 32


BAD_INPUTS = {
    "history too short": (
        {"instances": [{"history": [350.0] * 10, "horizon": 4}]},
        "instances[0].history: needs at least 56 values, got 10",
    ),
    "horizon zero": (
        {"instances": [{"history": [350.0] * 60, "horizon": 0}]},
        "instances[0].horizon: must be between 1 and 52, got 0",
    ),
    "horizon too far": (
        {
            "instances": [
                {"history": [350.0] * 60, "horizon": 4},
                {"history": [350.0] * 60, "horizon": 53},
            ]
        },
        "instances[1].horizon: must be between 1 and 52, got 53",
    ),
    "horizon as a string": (
        {"instances": [{"history": [350.0] * 60, "horizon": "4"}]},
        "instances[0].horizon: must be an integer, got the string '4'",
    ),
    "horizon as a float": (
        {"instances": [{"history": [350.0] * 60, "horizon": 4.5}]},
        "instances[0].horizon: must be an integer, got 4.5",
    ),
    "text in history": (
        {"instances": [{"history": [350.0] * 3 + ["high"] + [350.0] * 56, "horizon": 4}]},
        "instances[0].history[3]: must be a number, got the string 'high'",
    ),
    "null in history": (
        {"instances": [{"history": [350.0] * 5 + [None] + [350.0] * 54, "horizon": 4}]},
        "instances[0].history[5]: must be a number, got null",
    ),
    "boolean in history": (
        {"instances": [{"history": [True] + [350.0] * 59, "horizon": 4}]},
        "instances[0].history[0]: must be a number, got true",
    ),
    "history not a list": (
        {"instances": [{"history": "350,351", "horizon": 4}]},
        "instances[0].history: must be a list of numbers, got the string '350,351'",
    ),
    "missing horizon": (
        {"instances": [{"history": [350.0] * 60}]},
        "instances[0].horizon: missing",
    ),
    "unknown instance field": (
        {"instances": [{"history": [350.0] * 60, "horizon": 4, "horizn": 5}]},
        "instances[0].horizn: unknown field",
    ),
    "too many instances": (
        {"instances": [{"history": [350.0] * 60, "horizon": 1}] * 65},
        "instances: at most 64 instances per request, got 65",
    ),
    "no instances": ({"instances": []}, "instances: must hold at least one instance"),
    "missing instances": (
        {"inputs": []},
        "inputs: unknown field; only 'instances' and 'levels' are accepted",
    ),
    "instance not an object": ({"instances": [[350.0] * 60]}, "instances[0]: must be an object"),
    "body not an object": ([1, 2, 3], 'body: must be an object {"instances": [...]}, got a list'),
}

RAW_BAD_INPUTS = {
    "NaN in history": (
        b'{"instances": [{"history": [350.0, 351.0, NaN' + b", 350.0" * 57 + b'], "horizon": 4}]}',
        "instances[0].history[2]: must be a finite number, got nan",
    ),
    "Infinity in history": (
        b'{"instances": [{"history": [' + b"350.0, " * 59 + b'1e999], "horizon": 4}]}',
        "instances[0].history[59]: must be a finite number, got inf",
    ),
    "not JSON": (b'{"instances": [', "body: not valid JSON"),
    "empty body": (b"", "body: empty"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_422_naming_the_field(shared_server: str, case: str) -> None:
    body, message = BAD_INPUTS[case]
    response = httpx.post(shared_server + "/predict", json=body)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(message)


@pytest.mark.parametrize("case", RAW_BAD_INPUTS)
def test_malformed_body_is_422_naming_the_problem(shared_server: str, case: str) -> None:
    body, message = RAW_BAD_INPUTS[case]
    response = httpx.post(
        shared_server + "/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith(message)


def test_oversized_body_is_refused_with_413(shared_server: str) -> None:
    body = b'{"instances": [' + b" " * (9 * 1024 * 1024) + b"]}"
    response = httpx.post(shared_server + "/predict", content=body)
    assert response.status_code == 413
    assert response.json() == {"detail": "body: larger than the 8388608 bytes allowed"}
    assert httpx.get(shared_server + "/health").status_code == 200


def plausible_range(trained_store: Path) -> tuple[float, float]:
    store = Store(trained_store)
    record = store.read_json(store.run_dir(FIRST_RUN) / "metrics.json")["history_range"]
    return record["min"], record["max"]


@pytest.mark.parametrize(
    "values",
    [
        [-5000.0 + i for i in range(60)],  # a ramp around -5000
        [350.0] * 59 + [1e300],
        [350.0] * 30 + [-1e300] + [350.0] * 29,
        [1e305] * 60,  # used to overflow to null when rounded: a 200 with null forecasts
    ],
    ids=["ramp around -5000", "1e300", "-1e300", "1e305"],
)
def test_history_outside_the_plausible_range_is_422_naming_index_and_range(
    shared_server: str, trained_store: Path, values: list[float]
) -> None:
    body = {"instances": [{"history": shipped_history(60), "horizon": 4}] * 2}
    body["instances"][1] = {"history": values, "horizon": 4}
    response = httpx.post(shared_server + "/predict", json=body)
    assert response.status_code == 422
    low, high = plausible_range(trained_store)
    index = next(i for i, v in enumerate(values) if not low <= v <= high)
    assert response.json()["detail"] == (
        f"instances[1].history[{index}]: must be between {low:g} and {high:g} "
        f"(the model's plausible range), got {values[index]}"
    )


def test_integer_too_large_for_a_float_is_422_not_500(shared_server: str) -> None:
    huge = b"1" * 310
    body = b'{"instances": [{"history": [' + b"350.0, " * 59 + huge + b'], "horizon": 4}]}'
    response = httpx.post(shared_server + "/predict", content=body)
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "instances[0].history[59]: must be a number, "
        "got an integer too large for a 64-bit float (310 digits)"
    )


def test_an_integral_float_horizon_counts_as_an_integer(shared_server: str) -> None:
    history = shipped_history(60)
    as_float = httpx.post(
        shared_server + "/predict", json={"instances": [{"history": history, "horizon": 4.0}]}
    )
    as_int = httpx.post(shared_server + "/predict", json=predict_body(horizon=4))
    assert as_float.status_code == 200
    assert as_float.json() == as_int.json()


def test_a_large_body_is_parsed_off_the_event_loop_with_the_same_results(
    shared_server: str,
) -> None:
    history = shipped_history(1000)
    instances = [{"history": history, "horizon": 1 + i % 52} for i in range(64)]
    body = orjson.dumps({"instances": instances})
    assert len(body) > 256 * 1024  # serve.LARGE_BODY_BYTES: goes to the parser process
    large = httpx.post(shared_server + "/predict", content=body, timeout=30)
    assert large.status_code == 200
    small = httpx.post(shared_server + "/predict", json={"instances": instances[:3]})
    assert large.json()["predictions"][:3] == small.json()["predictions"]

    instances[63] = {"history": [*history[:5], None, *history[6:]], "horizon": 4}
    bad = httpx.post(shared_server + "/predict", content=orjson.dumps({"instances": instances}))
    assert bad.status_code == 422
    assert bad.json() == {"detail": "instances[63].history[5]: must be a number, got null"}


def test_openapi_json_publishes_the_served_models_limits(shared_server: str) -> None:
    response = httpx.get(shared_server + "/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert set(document["paths"]) == {
        "/health",
        "/ready",
        "/model",
        "/metrics",
        "/predict",
        "/openapi.json",
    }
    predict = document["paths"]["/predict"]["post"]
    assert set(predict["responses"]) == {"200", "408", "413", "422", "500", "503"}
    model = httpx.get(shared_server + "/model").json()
    instance = document["components"]["schemas"]["Instance"]["properties"]
    assert instance["history"]["minItems"] == model["min_history"]
    assert instance["horizon"]["maximum"] == model["max_horizon"]
    assert instance["history"]["items"]["minimum"] == model["metrics"]["history_range"]["min"]
    # Issue 17's fields: `levels` only among the served run's calibrated levels, each once; the
    # bounds next to `forecast`, keyed by level.
    schemas = document["components"]["schemas"]
    levels = schemas["PredictRequest"]["properties"]["levels"]
    calibrated = sorted(int(level) for level in model["metrics"]["intervals"]["offsets"])
    assert levels["items"]["enum"] == calibrated == [50, 80, 90, 95, 99]
    assert levels["uniqueItems"] is True and levels["maxItems"] == len(calibrated)
    assert levels["default"] == [80, 95]
    assert "levels" not in schemas["PredictRequest"].get("required", [])
    for side in ("lower", "upper"):
        bound = schemas["Prediction"]["properties"][side]
        assert bound["type"] == "object"
        assert bound["additionalProperties"]["items"] == {"type": "number"}


def test_metrics_expose_requests_latency_model_and_batches(shared_server: str) -> None:
    httpx.post(shared_server + "/predict", json=predict_body())
    httpx.post(shared_server + "/predict", json={"instances": []})
    response = httpx.get(shared_server + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    ok = {"route": "/predict", "method": "POST", "status": "200"}
    assert metric(text, "http_requests_total", **ok) >= 1
    assert metric(text, "http_requests_total", route="/predict", method="POST", status="422") >= 1
    assert metric(text, "http_request_duration_seconds_count", route="/predict", status="200") >= 1
    assert metric(text, "mlops_model_info", run_id=FIRST_RUN) == 1
    assert metric(text, "mlops_model_reloads_total") == 1
    # The gate probed run-a and wrote its probe.json: the server loaded it without a child.
    assert metric(text, "mlops_current_checks_total", how="recorded") == 1
    assert metric(text, "mlops_model_reload_failures_total") == 0
    assert metric(text, "mlops_predict_batch_size_count") >= 1
    assert metric(text, "process_resident_memory_bytes") > 0


# --- model lifecycle ----------------------------------------------------------------------------


def test_ready_is_503_until_a_model_is_promoted(store_copy: Store) -> None:
    run_dir = store_copy.run_dir(FIRST_RUN)
    store_copy.current_path.unlink()
    with ServerProcess(store_copy.root) as server:
        server.wait_ready("/health")
        assert httpx.get(server.url + "/ready").status_code == 503
        assert httpx.get(server.url + "/model").status_code == 503
        response = httpx.post(server.url + "/predict", json=predict_body())
        assert response.status_code == 503
        assert response.json() == {"detail": "no model is promoted yet; retry later"}
        assert int(response.headers["Retry-After"]) > 0
        assert run_dir.exists()
        store_copy.set_current(FIRST_RUN)
        server.wait_ready("/ready")
        assert httpx.post(server.url + "/predict", json=predict_body()).json()["model"] == FIRST_RUN


def test_hot_reload_under_concurrent_requests_drops_nothing(
    server: ServerProcess, store_copy: Store
) -> None:
    store = store_copy
    clone_run(store, "run-b")
    body = orjson.dumps(predict_body())
    seen: list[list[str]] = [[] for _ in range(8)]
    failures: list[str] = []

    async def client_loop(client: httpx.AsyncClient, worker: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                response = await client.post("/predict", content=body)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text}")
                else:
                    seen[worker].append(response.json()["model"])
            except httpx.HTTPError as exc:
                failures.append(repr(exc))

    async def scenario() -> None:
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            workers = [asyncio.create_task(client_loop(client, i, stop)) for i in range(8)]
            await asyncio.sleep(0.4)
            await asyncio.to_thread(store.set_current, "run-b")
            deadline = time.monotonic() + PATIENCE
            while not all(s and s[-1] == "run-b" for s in seen):
                assert time.monotonic() < deadline, "the new model was never served"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*workers)

    asyncio.run(scenario())
    assert failures == []
    for models in seen:
        assert models[0] == FIRST_RUN
        switch = models.index("run-b")
        assert set(models[switch:]) == {"run-b"}  # never back to the old model
    assert httpx.get(server.url + "/model").json()["run_id"] == "run-b"
    text = httpx.get(server.url + "/metrics").text
    assert metric(text, "mlops_model_reloads_total") == 2
    assert metric(text, "mlops_model_info", run_id="run-b") == 1
    assert metric(text, "mlops_model_info", run_id=FIRST_RUN) == 0


def test_corrupt_new_model_keeps_the_old_one_and_counts_the_failure(
    server: ServerProcess, store_copy: Store
) -> None:
    store = store_copy
    run_dir = clone_run(store, "run-corrupt")
    (run_dir / "model.ubj").write_bytes(b"\x7fnot a model at all")
    store.set_current("run-corrupt")

    def failure_count() -> float:
        return metric(httpx.get(server.url + "/metrics").text, "mlops_model_reload_failures_total")

    wait_for(lambda: failure_count() == 1)
    time.sleep(0.6)  # several more polls: the same broken run is not retried or recounted
    assert failure_count() == 1
    assert httpx.get(server.url + "/model").json()["run_id"] == FIRST_RUN
    response = httpx.post(server.url + "/predict", json=predict_body())
    assert response.status_code == 200
    assert response.json()["model"] == FIRST_RUN
    assert httpx.get(server.url + "/ready").status_code == 200
    assert "cannot load promoted run run-corrupt" in server.log()
    assert "still serving run-a" in server.log()


def test_an_empty_promoted_model_never_takes_the_server_down(
    server: ServerProcess, store_copy: Store
) -> None:
    """The defect: `load_model(bytearray())` aborted the server, and every replica polling
    CURRENT with it. First the size check refuses the empty file; then, with a checksum that
    matches (a file damaged before train hashed it), the bytes reach XGBoost in the probe
    process, which dies instead of the server."""

    def failure_count() -> float:
        return metric(httpx.get(server.url + "/metrics").text, "mlops_model_reload_failures_total")

    for count, (run_id, recorded) in enumerate([("run-empty", False), ("run-aborts", True)], 1):
        replace_model(clone_run(store_copy, run_id), b"", record=recorded)
        store_copy.set_current(run_id)
        wait_for(lambda count=count: failure_count() == count)
        assert server.process.poll() is None
        assert httpx.get(server.url + "/health").status_code == 200
        response = httpx.post(server.url + "/predict", json=predict_body())
        assert response.status_code == 200
        assert response.json()["model"] == FIRST_RUN
    assert "model.ubj is 0 bytes" in server.log()
    assert "killed the probe process (SIGABRT)" in server.log()


def test_a_server_starting_on_a_bad_current_serves_the_last_good_promoted_run(
    store_copy: Store,
) -> None:
    run_dir = clone_run(store_copy, "run-bad")
    replace_model(run_dir, b"")
    store_copy.set_current("run-bad")
    with ServerProcess(store_copy.root) as server:
        server.wait_ready()
        assert httpx.get(server.url + "/ready").json() == {"status": "ready", "model": FIRST_RUN}
        time.sleep(0.6)  # several polls: CURRENT is not retried while its files stay the same
        text = httpx.get(server.url + "/metrics").text
        assert metric(text, "mlops_model_reload_failures_total") == 1
        assert metric(text, "mlops_model_reloads_total") == 1
        assert "cannot load promoted run run-bad" in server.log()
        assert "serving the last good promoted run run-a" in server.log()


def test_a_server_starting_on_a_bad_current_with_no_good_run_stays_up_and_not_ready(
    store_copy: Store,
) -> None:
    replace_model(store_copy.run_dir(FIRST_RUN), b"")
    with ServerProcess(store_copy.root) as server:
        server.wait_ready("/health")
        time.sleep(0.6)
        assert server.process.poll() is None
        assert httpx.get(server.url + "/ready").status_code == 503
        assert "no servable model: CURRENT names run run-a" in server.log()


def test_a_copied_run_that_keeps_its_old_run_id_is_loaded_once(
    server: ServerProcess, store_copy: Store
) -> None:
    """The defect: reloads were keyed on the run_id inside metrics.json, so promoting a copy
    that kept the original's reloaded it on every poll, for ever."""
    clone_run(store_copy, "run-copy", fix_run_id=False)
    store_copy.set_current("run-copy")
    wait_for(lambda: httpx.get(server.url + "/ready").json()["model"] == "run-copy")
    time.sleep(1.0)  # five polls
    text = httpx.get(server.url + "/metrics").text
    assert metric(text, "mlops_model_reloads_total") == 2


@dataclass
class SplitServer:
    url: str
    internal: str
    port: int
    process: ServerProcess


@pytest.fixture(scope="module")
def split_server(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SplitServer]:
    """A server as ECS runs it, with INTERNAL_PORT set; short read deadlines so the slow-client
    test is quick, and two instances per request so schemathesis's boundary bodies stay small."""
    root = tmp_path_factory.mktemp("split") / "store"
    shutil.copytree(trained_store, root)
    internal_port = free_port()
    settings = {
        "INTERNAL_PORT": internal_port,
        "HEADER_TIMEOUT_SECONDS": "0.5",
        "BODY_TIMEOUT_SECONDS": "0.5",
        "MAX_INSTANCES": "2",
    }
    with ServerProcess(root, **settings) as server:
        server.wait_ready()
        yield SplitServer(server.url, f"http://127.0.0.1:{internal_port}", server.port, server)


def test_metrics_and_model_answer_only_on_the_internal_port(split_server: SplitServer) -> None:
    for path in ("/metrics", "/model"):
        assert httpx.get(split_server.url + path).status_code == 404
        assert httpx.get(split_server.internal + path).status_code == 200
    public = httpx.get(split_server.url + "/openapi.json").json()["paths"]
    assert "/metrics" not in public and "/model" not in public
    internal = httpx.get(split_server.internal + "/openapi.json").json()["paths"]
    assert {"/metrics", "/model"} <= set(internal)
    assert httpx.post(split_server.url + "/predict", json=predict_body()).status_code == 200


def _read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    sock.settimeout(timeout)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received, time.monotonic() - started


def test_slow_clients_are_cut_off_with_408(split_server: SplitServer) -> None:
    """The defect: a connection sending one header byte a second stayed open indefinitely."""
    server = split_server
    trickle = socket.create_connection(("127.0.0.1", server.port))
    trickle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: ")
    # One byte every 0.1 s, the headers never complete: only the server can end this.
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline and not select.select([trickle], [], [], 0.1)[0]:
        try:
            trickle.sendall(b"a")
        except OSError:
            break
    received, _ = _read_until_closed(trickle, timeout=PATIENCE)
    assert received.startswith(b"HTTP/1.1 408 ")

    no_body = socket.create_connection(("127.0.0.1", server.port))
    no_body.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
    received, _ = _read_until_closed(no_body, timeout=PATIENCE)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert httpx.get(server.url + "/health").status_code == 200


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_no_off_schema_response_and_no_refused_valid_request(
    split_server: SplitServer, tmp_path: Path
) -> None:
    """Every check schemathesis has (server errors, status codes, content types, response
    schemas, valid data accepted, invalid data rejected, unsupported methods), driven by the
    server's own /openapi.json: the coverage phase (the boundaries of every limit: history
    length and values, horizon, instance count) and a bounded fuzzing phase. The seed is fixed
    so a CI failure replays exactly. The internal port's document lists every endpoint."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            split_server.internal + "/openapi.json",
            "--checks=all",
            "--phases=coverage,fuzzing",
            "--max-examples=20",
            "--seed=16",
            "--generation-database=none",
            "--request-timeout=10",
            "--workers=1",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert split_server.process.process.poll() is None, split_server.process.log()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout


# --- process lifecycle --------------------------------------------------------------------------


def test_missing_store_at_start_waits_then_fails_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "not-mounted"
    result = run_app("serve", store_root=missing, STORE_WAIT_SECONDS="1", PORT="1")
    assert result.returncode == 1
    assert result.stderr.count("retrying") >= 1
    assert f"error: store directory {missing} does not exist after waiting 1s" in result.stderr
    assert "Traceback" not in result.stderr


def _open_sockets(pid: int) -> int:
    """How many sockets the process holds open (its listening and accepted ones)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed between the listing and the readlink
            count += os.readlink(fd).startswith("socket:")
    return count


def test_sigterm_lets_in_flight_requests_finish(server: ServerProcess) -> None:
    body = orjson.dumps(predict_body(horizon=6))
    head = (
        f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    before = _open_sockets(server.process.pid)
    clients = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
    for client in clients:
        client.sendall(head + body[: len(body) // 2])  # the request is in flight, half sent
    # The server has accepted all three (three more sockets in its fd table), then SIGTERM.
    wait_for(lambda: _open_sockets(server.process.pid) >= before + 3)
    server.terminate()
    wait_for(lambda: not _accepts(server.port))  # no longer accepting new connections
    for client in clients:
        client.sendall(body[len(body) // 2 :])
    for client in clients:
        client.settimeout(10)
        response = b""
        while b"\r\n\r\n" not in response or not response.endswith(b"}"):
            chunk = client.recv(65536)
            if not chunk:
                break
            response += chunk
        client.close()
        assert response.startswith(b"HTTP/1.1 200"), response
        payload = orjson.loads(response.split(b"\r\n\r\n", 1)[1])
        assert len(payload["predictions"][0]["forecast"]) == 6
    # uvicorn drains, then re-raises the captured SIGTERM: the usual exit status of a stopped task.
    assert server.process.wait(timeout=PATIENCE) == -signal.SIGTERM
    assert "Finished server process" in server.log()
