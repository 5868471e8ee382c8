"""The staging commands and their dispatch. Each reads its inputs from the environment, does one
thing, and on failure prints one line naming the problem on stderr and exits non-zero.

The SageMaker layout they fill and read (the root is MLOPS_ML_ROOT, default /opt/ml):
  training  https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo.html
    input/data/<channel>/                  the channel's files (File mode)
    input/config/hyperparameters.json      every value a string
    input/config/inputdataconfig.json      one entry per channel
    input/config/resourceconfig.json       current_host, hosts
    model/                                 what training leaves there is the model
    output/failure                         why training failed (non-zero exit = failed)
  serving   https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html
    model/                                 the model's files, staged before the server starts

The store (STORE_DIR, the EFS mount):
  models/<RUN_ID>/         the model files, report.json (collect-training, record-failure),
                           decision.json (gate, finish-rollout)
  models/CURRENT           the run whose model serves: the only truth about it
  outputs/<RUN_ID>/data/   what the training left in output/data
  capture/<name>/AllTraffic/yyyy/mm/dd/hh/*.jsonl
                           sampled invocations, SageMaker's data capture format (capture-proxy)

A run's way: stage-training -> the workload's train -> collect-training -> gate (exit 0 promoted,
3 kept) -> with a rollout, stage-serving (MLOPS_SERVE_RUN) in the new tasks -> finish-rollout;
a task that failed on the way -> record-failure.

S3 (docs/s3.md): a channel `s3://bucket/prefix/` is staged by stage-training (s3.py); a model that
becomes current (gate without a rollout, finish-rollout after one) is exported to the stack's
artifact bucket as models/<RUN_ID>/model.tar.gz (artifacts.py); `export-model` exports the
current run again.

A sweep's way: the trials' runs `<RUN_ID>-t01`, ... each as above up to collect-training (or
record-failure) -> pick-trial (sweep.py: the best by the objective, models/<RUN_ID>/sweep.json,
the chosen run handed back to the state machine) -> gate on the chosen run.

`monitor` is the model monitor's scheduled check (monitor.py): capture/ since its last check
against the current model's baseline, monitoring/model/ written, the drift event put.

One command is a server: capture-proxy sits in front of the model server and writes a sample of
its invocations to capture/ in the store (capture.py); it runs until SIGTERM and prints its final
counts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from .artifacts import export_model
from .checkpoints import sync_checkpoints
from .failures import record_failure
from .gate import gate
from .inputs import Outcome, Refused, one_line
from .rollout import finish_rollout
from .serving import stage_serving
from .training import collect_training, stage_training

COMMANDS: dict[str, Callable[[], str | Outcome]] = {
    "stage-training": stage_training,
    "collect-training": collect_training,
    "gate": gate,
    "finish-rollout": finish_rollout,
    "record-failure": record_failure,
    "stage-serving": stage_serving,
    "export-model": export_model,
    "capture-proxy": lambda: _capture_proxy(),
    "page": lambda: __import__("mlops_platform.page", fromlist=["page"]).page(),
    "monitor": lambda: _monitor(),
    "sync-checkpoints": sync_checkpoints,
    "pick-trial": lambda: _pick_trial(),
}


def _capture_proxy() -> str:
    # Imported on use: asyncio adds about 0.1 s to the start of every other command.
    from .capture import capture_proxy

    return capture_proxy()


def _pick_trial() -> Outcome:
    from .sweep import pick_trial

    return pick_trial()


def _monitor() -> Outcome:
    from .monitor import monitor

    return monitor()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in COMMANDS:
        print(f"usage: python -m mlops_platform {{{','.join(COMMANDS)}}}", file=sys.stderr)
        return 2
    # Every line is made one printable line here too: messages carry names and text a workload
    # chose (file names, failure text), which must not reach a terminal or a log as escapes.
    try:
        result = COMMANDS[argv[0]]()
    except Refused as exc:
        print(f"{argv[0]}: {one_line(str(exc))}", file=sys.stderr, flush=True)
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{argv[0]}: {one_line(where + (exc.strerror or str(exc)))}", file=sys.stderr)
        return 1
    outcome = result if isinstance(result, Outcome) else Outcome(result)
    print(one_line(outcome.line), flush=True)
    return outcome.exit_code
