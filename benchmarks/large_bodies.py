"""`python -m benchmarks.large_bodies`: `/health` latency while maximum-size `/predict` bodies
arrive on 8 connections.

`/health` is the container's liveness check: if parsing request bodies stalls the event loop,
ECS sees a dead task. This measures `/health` with wrk on one connection, first on an idle server,
then while a second wrk keeps 8 connections busy posting the largest body the api accepts:
64 instances of 10,000 values, padded to just under the 8 MiB body limit. Target: `/health` p99
of 50 ms or less under that load.

`--repo DIR` serves from another checkout (e.g. an older commit unpacked with `git archive`), to
compare before and after on the same machine. The server runs from this venv (not the slimmed
image tree `benchmarks.load` uses): what is measured is the event loop, not start-up.
Needs `wrk`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.load import REPO_ROOT, WRK_SCRIPT, free_port, log, wait_for

TARGET_P99_MS = 50.0
CONNECTIONS = 8
INSTANCES = 64
HISTORY = 10_000
MAX_BODY_BYTES = 8 * 1024 * 1024


def max_body(path: Path) -> int:
    """The largest accepted body: 64 x 10,000 plausible values with enough digits to approach
    the 8 MiB limit (each history distinct, so nothing is shared while parsing)."""
    instances = []
    for i in range(INSTANCES):
        history = ",".join(f"{340 + (j % 520) / 13 + i / 1000:.8f}" for j in range(HISTORY))
        instances.append(f'{{"history":[{history}],"horizon":52}}')
    body = ('{"instances":[' + ",".join(instances) + "]}").encode()
    if len(body) > MAX_BODY_BYTES:
        raise SystemExit(f"body of {len(body)} bytes is over the limit")
    path.write_bytes(body)
    return len(body)


def run_wrk(url: str, body: Path | None, seconds: int, connections: int) -> subprocess.Popen:
    env = {**os.environ, "WRK_BODY": str(body) if body else ""}
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    return subprocess.Popen(
        [*args, "-s", str(WRK_SCRIPT), url], env=env, stdout=subprocess.PIPE, text=True
    )


def result(process: subprocess.Popen) -> dict[str, Any]:
    out, _ = process.communicate(timeout=120)
    line = next(line for line in out.splitlines() if line.startswith("WRK_RESULT "))
    raw = json.loads(line.removeprefix("WRK_RESULT "))
    return {
        "requests": raw["requests"],
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "errors": sum(raw[k] for k in ("non2xx", "connect", "read", "write", "timeout")),
    }


def train(store: Path, repo: Path) -> None:
    env = {**os.environ, "STORE_DIR": str(store), "RUN_ID": "bench", "TRAIN_ROUNDS": "60"}
    for command in ("validate", "train", "gate"):
        subprocess.run(
            [sys.executable, "-m", "app", command], cwd=repo, env=env, check=True, timeout=600
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="length of each run (15)")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="checkout to serve from")
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    with tempfile.TemporaryDirectory(prefix="mlops-large-") as tmp:
        root = Path(tmp)
        store = root / "store"
        store.mkdir()
        log(f"training a model with {repo}")
        train(store, repo)
        body = root / "max.json"
        size = max_body(body)
        log(f"body: {INSTANCES} instances x {HISTORY} values, {size} bytes")
        port = free_port()
        env = {
            **os.environ,
            "STORE_DIR": str(store),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "PYTHONPATH": str(repo),
            "PYTHONUNBUFFERED": "1",
        }
        base = f"http://127.0.0.1:{port}"
        with open(root / "api.log", "wb") as api_log:
            api = subprocess.Popen(
                [sys.executable, "-m", "app", "serve"],
                cwd=repo,
                env=env,
                stdout=api_log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(base + "/ready", api, root / "api.log")
            result(run_wrk(base + "/health", None, 2, 1))  # warm-up
            idle = result(run_wrk(base + "/health", None, args.seconds, 1))
            log(f"/health idle: p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms")
            predict = run_wrk(base + "/predict", body, args.seconds + 2, CONNECTIONS)
            health = run_wrk(base + "/health", None, args.seconds, 1)
            loaded, big = result(health), result(predict)
        finally:
            api.terminate()
            api.wait(timeout=30)
    figures = {"idle_health": idle, "health_under_large_bodies": loaded, "large_predict": big}
    print(json.dumps(figures, indent=2))
    verdict = "met" if loaded["p99_ms"] <= TARGET_P99_MS else "MISSED"
    print(
        f"\n/health p99: {idle['p99_ms']} ms idle, {loaded['p99_ms']} ms (max {loaded['max_ms']} "
        f"ms) with {CONNECTIONS} connections posting {size / 2**20:.1f} MiB bodies "
        f"({big['rps']} req/s, p50 {big['p50_ms']} ms, {big['errors']} errors); "
        f"target <= {TARGET_P99_MS:g} ms: {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
