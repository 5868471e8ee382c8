"""`python -m benchmarks.fuzz [--examples N] [--url URL]`: hypothesis sends raw JSON to /predict.

Bodies: arbitrary JSON documents; `/predict`-shaped ones whose numbers run from ordinary CO2
values to integers of hundreds of digits, ±1e308, NaN and Infinity literals; booleans, nulls,
strings and nested values where numbers belong; unknown fields; and raw bytes. Every response
must be 200, 413 or 422 with a JSON body; a 200 must hold one finite forecast of `horizon`
values per instance, and a 422 a `detail` string. Any other answer (a 5xx, a text body, a null
in a forecast) fails the run, shrunk to a minimal body.

Without `--url`, trains a model into a temp store and serves it from this checkout. Prints the
count per status, the rate and the time taken.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.large_bodies import train
from benchmarks.load import REPO_ROOT, free_port, log, wait_for

SCALARS = (
    st.none()
    | st.booleans()
    | st.text(max_size=10)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**400), max_value=10**400)
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
NUMBERS = st.one_of(
    st.floats(min_value=300, max_value=450),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([1e305, -1e305, 1e300, -5000.0, 0.0, -0.0, 1.7976931348623157e308]),
)
HISTORY = st.one_of(
    st.lists(st.floats(min_value=300, max_value=450), min_size=50, max_size=80),
    st.lists(NUMBERS, min_size=50, max_size=80),
    st.lists(NUMBERS | ANY_JSON, max_size=80),
    ANY_JSON,
)
HORIZON = st.one_of(
    st.integers(min_value=-3, max_value=60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([4.0, 52.0, 1e300, True]),
    ANY_JSON,
)
PLAUSIBLE = st.lists(st.floats(min_value=300, max_value=450), min_size=56, max_size=70)


@st.composite
def valid_or_one_value_off(draw: st.DrawFn) -> dict[str, Any]:
    """A valid instance, or one whose history holds a single odd value somewhere."""
    history = draw(PLAUSIBLE)
    if draw(st.integers(0, 3)) == 0:
        history[draw(st.integers(0, len(history) - 1))] = draw(NUMBERS | SCALARS)
    horizon = draw(st.integers(1, 52) | st.integers(1, 52).map(float))
    if draw(st.integers(0, 7)) == 0:
        horizon = draw(HORIZON)
    return {"history": history, "horizon": horizon}


INSTANCE = valid_or_one_value_off() | st.fixed_dictionaries(
    {"history": HISTORY, "horizon": HORIZON}, optional={"extra": ANY_JSON, "level": ANY_JSON}
)
SHAPED = st.fixed_dictionaries(
    {"instances": st.lists(INSTANCE, max_size=4) | ANY_JSON}, optional={"levels": ANY_JSON}
)
NEARLY_VALID = st.fixed_dictionaries(
    {"instances": st.lists(valid_or_one_value_off(), min_size=1, max_size=4)}
)
BODIES = st.one_of(
    NEARLY_VALID.map(lambda body: json.dumps(body, allow_nan=True).encode()),
    NEARLY_VALID.map(lambda body: json.dumps(body, allow_nan=True).encode()),
    SHAPED.map(lambda body: json.dumps(body, allow_nan=True).encode()),
    ANY_JSON.map(lambda body: json.dumps(body, allow_nan=True).encode()),
    st.binary(max_size=200),
)


def check(response: httpx.Response, body: bytes) -> None:
    """Raises AssertionError when the answer breaks the contract."""
    status = response.status_code
    assert status in (200, 413, 422), f"status {status}: {response.text[:300]}"
    assert response.headers.get("content-type") == "application/json", response.headers
    payload = response.json()
    if status != 200:
        assert isinstance(payload.get("detail"), str), payload
        return
    instances = json.loads(body)["instances"]
    predictions = payload["predictions"]
    assert len(predictions) == len(instances)
    for instance, prediction in zip(instances, predictions, strict=True):
        forecast = prediction["forecast"]
        assert len(forecast) == int(instance["horizon"]), (instance["horizon"], len(forecast))
        assert all(isinstance(v, float) and math.isfinite(v) for v in forecast), forecast


def fuzz(url: str, examples: int) -> dict[str, Any]:
    statuses: collections.Counter[int] = collections.Counter()
    client = httpx.Client(base_url=url, timeout=30)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(BODIES)
    def post(body: bytes) -> None:
        response = client.post("/predict", content=body)
        statuses[response.status_code] += 1
        check(response, body)

    started = time.perf_counter()
    post()
    elapsed = time.perf_counter() - started
    health = client.get("/health").status_code
    return {
        "requests": sum(statuses.values()),
        "by_status": dict(sorted(statuses.items())),
        "seconds": round(elapsed, 1),
        "health_after": health,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="bodies to send (2000)")
    parser.add_argument("--url", help="a running api (default: train and start one)")
    args = parser.parse_args(argv)
    if args.url:
        figures = fuzz(args.url, args.examples)
    else:
        with tempfile.TemporaryDirectory(prefix="mlops-fuzz-") as tmp:
            root = Path(tmp)
            store = root / "store"
            store.mkdir()
            log("training a model")
            train(store, REPO_ROOT)
            port = free_port()
            env = {**os.environ, "STORE_DIR": str(store), "HOST": "127.0.0.1", "PORT": str(port)}
            with open(root / "api.log", "wb") as api_log:
                api = subprocess.Popen(
                    [sys.executable, "-m", "app", "serve"],
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=api_log,
                    stderr=subprocess.STDOUT,
                )
            try:
                wait_for(f"http://127.0.0.1:{port}/ready", api, root / "api.log")
                figures = fuzz(f"http://127.0.0.1:{port}", args.examples)
            finally:
                api.terminate()
                api.wait(timeout=30)
    print(json.dumps(figures))
    rate = figures["requests"] / max(figures["seconds"], 0.1)
    print(
        f"fuzz: {figures['requests']} bodies in {figures['seconds']} s ({rate:.0f}/s), "
        f"statuses {figures['by_status']}, /health after: {figures['health_after']}; "
        "no 5xx, no off-contract answer"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
