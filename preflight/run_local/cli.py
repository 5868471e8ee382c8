"""`python -m preflight.run_local STACK --task ...`: the command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from preflight import asl
from preflight.offline import ROOT, run_stack
from preflight.run_local.docker import RunLocalError, remove_session
from preflight.run_local.local_secrets import DEFAULT_SECRETS, load_secrets
from preflight.run_local.pipeline import walk_state_machine
from preflight.run_local.service import serve_inference
from preflight.run_local.session import Session
from preflight.run_local.stack import read_stack
from preflight.run_local.task import SECRET_ENV_PREFIX, TaskOutcome

TASK_CHOICES = ("inference", "validate", "train", "gate", "pipeline", "job")
DEFAULT_STORE = ROOT / ".run-local-store"


@contextlib.contextmanager
def cleanup_on_exit(session: Session) -> Iterator[None]:
    """Remove the session's containers and volumes however the run ends: Ctrl-C, SIGINT from a
    script (a shell starts background jobs with SIGINT ignored, and Python keeps an ignored
    SIGINT ignored: the handler is installed explicitly) or SIGTERM."""

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        session.close()
        remove_session(session.id)


def _spot(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds, comma-separated") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds >= 0, comma-separated")
    return values


def run_job(session: Session, name: str | None) -> int:
    """One run of a scheduled task, as its EventBridge schedule starts it: 0 when its essential
    containers exited 0."""
    jobs = session.view.scheduled
    if name is None and len(jobs) == 1:
        name = next(iter(jobs))
    if name not in jobs:
        have = ", ".join(sorted(jobs)) or "none"
        raise RunLocalError(f"--job {name}: the stack's scheduled tasks are: {have}")
    task = session.task(jobs[name])
    task.start()
    outcome: TaskOutcome = task.wait()
    session.out(f"[run-local] {name}: exit codes {outcome.exit_codes}, {outcome.stopped_reason}")
    return 1 if outcome.failed else 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m preflight.run_local",
        description="Run the stack's ECS task definitions in Docker with Fargate's semantics.",
    )
    parser.add_argument("stack", help="the stack file to read: Pulumi.<stack>.yaml")
    parser.add_argument("--task", choices=TASK_CHOICES, required=True)
    parser.add_argument("--store", type=Path, default=None, help=f"default {DEFAULT_STORE}/<stack>")
    parser.add_argument(
        "--base-image",
        help="build on this local image as PYTHON_IMAGE, CUDA_IMAGE and BASE_IMAGE "
        "(python -m preflight.base_image makes one from Debian packages)",
    )
    parser.add_argument(
        "--image",
        help="run this local image as the workload's instead of building one (needed when the "
        "stack deploys a pushed digest or an image by location that this machine lacks)",
    )
    parser.add_argument("--rebuild", action="store_true", help="build even if the image exists")
    parser.add_argument(
        "--for", dest="duration", type=float, help="inference: stop after this many seconds"
    )
    parser.add_argument(
        "--input",
        type=json.loads,
        default=None,
        help='pipeline: the execution input, e.g. \'{"reason": "schedule"}\' (default {})',
    )
    parser.add_argument(
        "--job",
        help="job: which scheduled task (`monitoring`: the workload's job, `model-monitor`: the "
        "platform's model monitor); default the stack's only one",
    )
    parser.add_argument(
        "--ephemeral-ports", action="store_true", help="publish on free host ports, not the same"
    )
    parser.add_argument(
        "--secrets",
        type=Path,
        default=DEFAULT_SECRETS,
        help=f"NAME=value lines standing in for the task definitions' secrets "
        f"(default {DEFAULT_SECRETS.name}; {SECRET_ENV_PREFIX}<NAME> variables win)",
    )
    parser.add_argument(
        "--retry-scale",
        type=float,
        default=1.0,
        help="pipeline: wait Step Functions' retry intervals this many times over (default 1)",
    )
    parser.add_argument(
        "--spot-interruption",
        type=_spot,
        default=(),
        metavar="SECONDS[,SECONDS...]",
        help="pipeline: interrupt the first Fargate Spot task this long after its workload's "
        "first container started (then the next, per value), as Fargate Spot does: SIGTERM, "
        "SIGKILL after stopTimeout",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        view = read_stack(run_stack(args.stack))
        secrets = load_secrets(args.secrets, os.environ)
    except Exception as exc:  # a config error, a missing stack file, a bad secrets file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.task == "inference" and view.inference_family is None:
        print(
            f"error: stack {args.stack} serves nothing (mlops:workload.serving is null)",
            file=sys.stderr,
        )
        return 2
    store = (args.store or DEFAULT_STORE / args.stack).resolve()
    store.mkdir(parents=True, exist_ok=True)
    session = Session(
        view=view,
        store=store,
        base_image=args.base_image,
        image=args.image,
        publish_ephemeral=args.ephemeral_ports,
        rebuild=args.rebuild,
        out=lambda line: print(line, flush=True),
        secrets=secrets,
        retry_scale=args.retry_scale,
        spot_interruptions=args.spot_interruption,
    )
    print(f"[run-local] stack {args.stack}, store {store}, session {session.id}", flush=True)
    try:
        with cleanup_on_exit(session):
            if args.task == "inference":
                return serve_inference(session, args.duration)
            if args.task == "job":
                return run_job(session, args.job)
            only = None if args.task == "pipeline" else args.task
            return walk_state_machine(session, only, args.input)
    except KeyboardInterrupt:
        print("[run-local] interrupted: everything it started is removed", flush=True)
        return 130
    except (RunLocalError, asl.AslError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
