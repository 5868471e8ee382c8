"""`python -m benchmarks.image [--flavour cpu|gpu ...] [--starts N]`: the container image's figures.

Measured on this machine, with the real Docker daemon and the real `app/Dockerfile`, built the
way `preflight.run_local` (and so `ImageRepo`) builds it:

1. build time, per flavour: cold (`--no-cache`: every layer rebuilt, every package downloaded),
   cached (the same context again) and after an app change (a copy of the context with one
   source file touched: only the layers after `COPY . /srv/app` rebuild);
2. size, per flavour: uncompressed (`docker image inspect` Size) and compressed as ECR stores it:
   every layer of `docker save` gzip-compressed (level 6, what `docker push` sends) plus the
   config, the figure ECR bills and `preflight.costs` prices;
3. container start to `/ready`: the stack's api container definition run as Fargate runs it
   (`run_local`), with a trained model in the store, from `docker run` to the first 200
   (median of N).

Writes `benchmarks/results/image.json`. The base image comes from `--base-image` (default: the
Debian stand-in `preflight.base_image` builds; pass `""` to build from the Dockerfile's own
`FROM` defaults where a registry is reachable).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.load import machine
from components.image_repo import ship_contract
from preflight import base_image
from preflight.offline import ROOT, run_stack
from preflight.run_local import (
    LocalTask,
    Session,
    builder_env,
    read_stack,
    remove_session,
    walk_state_machine,
)

RESULTS = ROOT / "benchmarks" / "results" / "image.json"
MB = 1024 * 1024


def log(text: str) -> None:
    print(f"[image] {text}", flush=True)


def timed_build(context: Path, flavour: str, base: str, tag: str, no_cache: bool) -> float:
    command = ["docker", "build", "-q", "-t", tag, "--build-arg", f"FLAVOUR={flavour}"]
    if base:
        command += ["--build-arg", f"PYTHON_IMAGE={base}", "--build-arg", f"CUDA_IMAGE={base}"]
    if no_cache:
        command.append("--no-cache")
    command += ["--platform", "linux/amd64", str(context)]
    started = time.monotonic()
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **builder_env()}, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{flavour} build failed:\n{result.stderr[-3000:]}")
    return round(time.monotonic() - started, 1)


def compressed_size(tag: str) -> int:
    """Bytes ECR stores: each layer tarball gzip-compressed, plus the image config."""
    saved = subprocess.run(["docker", "save", tag], capture_output=True, check=True).stdout
    total = 0
    with tarfile.open(fileobj=io.BytesIO(saved)) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))[0]
        total += archive.getmember(manifest["Config"]).size
        for layer in manifest["Layers"]:
            data = archive.extractfile(layer).read()
            total += len(gzip.compress(data, compresslevel=6))
    return total


def uncompressed_size(tag: str) -> int:
    out = subprocess.check_output(["docker", "image", "inspect", tag, "--format", "{{.Size}}"])
    return int(out)


def build_figures(flavour: str, base: str) -> dict[str, Any]:
    tag = f"mlops-bench:{flavour}"
    context = ROOT / "app"
    ship_contract(context)  # the copy below carries it too
    log(f"{flavour}: cold build (--no-cache)")
    cold = timed_build(context, flavour, base, tag, no_cache=True)
    log(f"{flavour}: cold {cold} s; cached build")
    cached = timed_build(context, flavour, base, tag, no_cache=False)
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "app"
        shutil.copytree(context, copy, ignore=shutil.ignore_patterns("__pycache__"))
        with (copy / "serve.py").open("a") as source:
            source.write("\n# benchmark: an app change\n")
        changed = timed_build(copy, flavour, base, f"{tag}-changed", no_cache=False)
    subprocess.run(["docker", "rmi", f"{tag}-changed"], capture_output=True, check=False)
    figures = {
        "build_cold_s": cold,
        "build_cached_s": cached,
        "build_app_change_s": changed,
        "uncompressed_bytes": uncompressed_size(tag),
        "compressed_bytes": compressed_size(tag),
    }
    log(
        f"{flavour}: cached {cached} s, app change {changed} s; "
        f"{figures['uncompressed_bytes'] / MB:.0f} MB, "
        f"{figures['compressed_bytes'] / MB:.0f} MB compressed"
    )
    return figures


def start_to_ready(base: str, starts: int) -> dict[str, Any]:
    """The dev api container, run as declared, from `docker run` to the first 200 on /ready."""
    view = read_stack(run_stack("dev"))
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(scratch)
        session = Session(view=view, store=store, base_image=base or None, publish_ephemeral=True,
                          out=lambda line: None)  # fmt: skip
        try:
            if walk_state_machine(session) != 0:
                raise SystemExit("the pipeline failed; no model to serve")
            spec = view.tasks[view.inference_family]
            api = [c for c in spec.containers if c["name"] == "api"]
            image = session.image_for("cpu")
            seconds = []
            for _ in range(starts):
                one = type(spec)(spec.family, spec.cpu, spec.memory, api, spec.volumes, "cpu")
                task = LocalTask(one, image, store, view.access_point, session.id, True,
                                 out=lambda line: None)  # fmt: skip
                started = time.monotonic()
                task.start()
                url = f"http://127.0.0.1:{task.ports[8080]}/ready"
                while True:
                    try:
                        with urllib.request.urlopen(url, timeout=2) as response:
                            if response.status == 200:
                                break
                    except (OSError, urllib.error.URLError):
                        pass
                    if time.monotonic() - started > 120:
                        raise SystemExit("api never ready")
                    time.sleep(0.05)
                seconds.append(round(time.monotonic() - started, 2))
                task.stop()
        finally:
            remove_session(session.id)
    log(f"start to /ready: median {statistics.median(seconds)} s over {seconds}")
    return {"median_s": statistics.median(seconds), "runs_s": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.image", description=__doc__)
    parser.add_argument("--flavour", action="append", choices=("cpu", "gpu"))
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--base-image", default=None)
    args = parser.parse_args(argv)
    base = base_image.build() if args.base_image is None else args.base_image
    flavours = args.flavour or ["cpu", "gpu"]
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"flavours": {}}
    result: dict[str, Any] = {
        "measured": datetime.now(UTC).strftime("%Y-%m-%d"),
        "base_image": base or "Dockerfile defaults",
        "flavours": dict(previous.get("flavours", {})),
    }
    for flavour in flavours:
        result["flavours"][flavour] = build_figures(flavour, base)
    result["start_to_ready"] = start_to_ready(base, args.starts)
    result["machine"] = machine()
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(
        f"{'flavour':8} {'cold s':>7} {'cached s':>9} {'app change s':>13} {'MB':>6} {'MB gz':>6}"
    )
    for flavour, f in result["flavours"].items():
        print(
            f"{flavour:8} {f['build_cold_s']:>7} {f['build_cached_s']:>9} "
            f"{f['build_app_change_s']:>13} {f['uncompressed_bytes'] / MB:>6.0f} "
            f"{f['compressed_bytes'] / MB:>6.0f}"
        )
    print(f"start to /ready (api, as declared): {result['start_to_ready']['median_s']} s median")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
