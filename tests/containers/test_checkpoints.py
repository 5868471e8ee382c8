"""Checkpoints survive a Fargate Spot interruption, as SageMaker's managed Spot training keeps
them: a user's training that checkpoints each epoch to /opt/ml/checkpoints is interrupted under
run_local as Fargate Spot interrupts (ECS stops the task: SIGTERM, SIGKILL after stopTimeout),
and the retried task of the same run resumes from its last checkpoint and finishes with the same
model an uninterrupted training makes.

The training is the user's: a standard-library softmax regression over the iris-like channel of
tests/containers/byoc_sample.py, run by the stack's `training.command` in that sample's image
(nothing in either knows the platform). Each epoch is one pass of SGD in a seeded order, then a
pause standing in for the rest of a real epoch's work (`epoch_seconds`), then its checkpoint
(`state.json`, replaced atomically). On SIGTERM it finishes the epoch, checkpoints and exits 143.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.containers import byoc_sample
from tests.containers.conftest import Lines, channel_dir, store_root

pytestmark = pytest.mark.containers

EPOCHS = 8
TRAIN = """\
import json, math, os, random, signal, sys, time
ml = os.environ.get("ML_ROOT", "/opt/ml")
state_file = os.path.join(ml, "checkpoints", "state.json")
params = json.load(open(os.path.join(ml, "input/config/hyperparameters.json")))
epochs, pause = int(params["epochs"]), float(params["epoch_seconds"])
channel = os.path.join(ml, "input/data/training")
rows = [line.strip().split(",") for name in sorted(os.listdir(channel))
        for line in open(os.path.join(channel, name)) if line.strip()]
classes = sorted({row[0] for row in rows})
data = [(classes.index(row[0]), [1.0] + [float(x) for x in row[1:]]) for row in rows]
weights, first = [[0.0] * len(data[0][1]) for _ in classes], 1
if os.path.exists(state_file):
    state = json.load(open(state_file))
    weights, first = state["weights"], state["epoch"] + 1
    print("resumed from epoch", state["epoch"], flush=True)
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
for epoch in range(first, epochs + 1):
    order = list(range(len(data)))
    random.Random(epoch).shuffle(order)
    for i in order:
        label, x = data[i]
        scores = [sum(w * v for w, v in zip(row, x)) for row in weights]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        total = sum(exps)
        for k, row in enumerate(weights):
            gradient = exps[k] / total - (k == label)
            for j in range(len(row)):
                row[j] -= 0.05 * gradient * x[j]
    time.sleep(pause)
    with open(state_file + ".tmp", "w") as handle:
        json.dump({"epoch": epoch, "weights": weights}, handle)
    os.replace(state_file + ".tmp", state_file)
    print("epoch", epoch, "checkpointed", flush=True)
    if stopping:
        print("SIGTERM: stopped after epoch", epoch, flush=True)
        sys.exit(143)
with open(os.path.join(ml, "model", "model.json"), "w") as handle:
    json.dump({"classes": classes, "weights": weights}, handle)
print("trained", epochs, "epochs", flush=True)
"""


def _workload(epoch_seconds: float) -> dict:
    return {
        "contract": "sagemaker",
        "image": {"location": "registry.example.com/team/iris@sha256:" + "2" * 64},
        "training": {
            "command": ["python3", "-c", TRAIN],
            "channels": {byoc_sample.CHANNEL: "datasets/iris"},
            "hyperparameters": {"epochs": EPOCHS, "epoch_seconds": epoch_seconds},
            "timeout_minutes": 5,
        },
        "serving": {
            "command": ["serve"],
            "port": byoc_sample.PORT,
            "health_path": byoc_sample.HEALTH_PATH,
        },
        "promotion": byoc_sample.PROMOTION,
        "security": {"run_as_root": True},
    }


def _uninterrupted(channel: Path, tmp: Path) -> dict:
    """The same training on this machine, start to end: the model it makes."""
    ml = tmp / "ml"
    for part in ("input/config", "input/data", "model", "checkpoints"):
        (ml / part).mkdir(parents=True)
    (ml / "input/data/training").symlink_to(channel)
    hyper = {"epochs": str(EPOCHS), "epoch_seconds": "0"}
    (ml / "input/config/hyperparameters.json").write_text(json.dumps(hyper))
    subprocess.run(
        [sys.executable, "-c", TRAIN],
        env={**os.environ, "ML_ROOT": str(ml)},
        check=True,
        capture_output=True,
    )
    return json.loads((ml / "model" / "model.json").read_text())


def test_a_spot_interrupted_training_resumes_from_its_last_checkpoint(
    byoc_image: str, base: str, user_stack: Callable[..., str], tmp_path: Path
) -> None:
    from preflight.offline import run_stack
    from preflight.run_local import Session, read_stack, remove_session, walk_state_machine

    stack = user_stack(_workload(epoch_seconds=1.0))
    view = read_stack(run_stack(stack))
    store = tmp_path / "store"
    channel = channel_dir(view, store, "datasets/iris")
    byoc_sample.write_dataset(channel)
    out = Lines()
    # 3.5 s after the training started: inside its fourth epoch.
    session = Session(
        view=view,
        store=store,
        base_image=base,
        image=byoc_image,
        publish_ephemeral=True,
        out=out,
        spot_interruptions=(3.5,),
    )
    try:
        assert walk_state_machine(session) == 0, out.text()
    finally:
        remove_session(session.id)
    log = out.text()
    assert "Train: task stopped (SpotInterruption; exit codes" in log, log
    stopped = re.search(r"\[train\] SIGTERM: stopped after epoch (\d+)", log)
    assert stopped, log
    last = int(stopped.group(1))
    assert 1 <= last < EPOCHS
    before, after = log.split(stopped.group(0), 1)
    # Every epoch up to the interrupted one checkpointed, that one on SIGTERM.
    assert re.findall(r"\[train\] epoch (\d+) checkpointed", before) == [
        str(e) for e in range(1, last + 1)
    ]
    assert re.search(r"Train: task stopped \(SpotInterruption; exit codes .*train 143", log), log
    # The retried task (same RUN_ID, on demand) was handed the checkpoint of that epoch.
    assert f"[train] resumed from epoch {last}" in after, after
    assert re.findall(r"\[train\] epoch (\d+) checkpointed", after) == [
        str(e) for e in range(last + 1, EPOCHS + 1)
    ]
    assert "1 checkpoint file(s) restored from checkpoints/" in after, after
    root = store_root(view, store)
    run = (root / "models" / "CURRENT").read_text().strip()
    model = json.loads((root / "models" / run / "model.json").read_text())
    assert model == _uninterrupted(channel, tmp_path)
    # The run trained: nothing will resume it, so its checkpoints are gone from the store.
    assert not (root / "checkpoints" / run).exists()
