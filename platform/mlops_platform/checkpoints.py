"""Checkpoints that survive a Spot interruption, as SageMaker keeps them for managed Spot training
("Use checkpoints in Amazon SageMaker AI": the training writes /opt/ml/checkpoints, SageMaker
copies it to S3 while the job runs and copies it back into a restarted job's /opt/ml/checkpoints:
https://docs.aws.amazon.com/sagemaker/latest/dg/model-checkpoints.html), with the store in S3's
place: `checkpoints/<RUN_ID>/`.

- `sync-checkpoints`, a container of the training task beside the workload's (non-essential, from
  the platform's image): every MLOPS_CHECKPOINT_SYNC_SECONDS (default 10) it copies each file of
  /opt/ml/checkpoints that is new or changed (size or mtime) to the store, each atomically (a
  temp file renamed into place: a reader sees a whole file or the earlier one), never following
  a symlink and never deleting (a restarted container's empty directory must not wipe the copy).
  The training container depends on it (START), and ECS stops containers in the reverse of their
  start dependencies (API reference, ContainerDependency: "for container shutdown it is
  reversed"): on a Spot interruption the training gets SIGTERM first and its stopTimeout to write
  a last checkpoint, then this one gets SIGTERM and copies what it wrote. Once the run is
  collected (models/<RUN_ID>/report.json) it copies nothing more.
- stage-training restores `checkpoints/<RUN_ID>/` into /opt/ml/checkpoints: a retried task of
  the same run (the state machine retries a Spot interruption with the same RUN_ID) starts from
  the last checkpoint. It also deletes the checkpoints of runs already collected.
- collect-training deletes `checkpoints/<RUN_ID>/` once the run trained: nothing resumes it.

Why the store and not S3: the store is already mounted in the training task, encrypted, backed up
per the stack's setting, and reachable without NAT or an endpoint; a checkpoint is read back only
by the same run's next task. Its size counts in the store's bill (EFS, per GB-month) only until
the run is collected.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import threading
from pathlib import Path

from mlops_contract import CHECKPOINTS, MODELS, REPORT_FILE, Env, MlLayout

from .files import chown_tree, copy_tree, give_to_store_owner, store_directory
from .inputs import Outcome, Refused, ml_root, run_id, store_dir

DEFAULT_INTERVAL = 10.0


def _interval() -> float:
    raw = os.environ.get(Env.CHECKPOINT_SYNC_SECONDS, "")
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.5 <= value <= 3600:
        raise Refused(f"{Env.CHECKPOINT_SYNC_SECONDS}={raw[:40]!r}: seconds from 0.5 to 3600")
    return value


def restore(store: Path, rid: str, target: Path, uid: int) -> str:
    """Copy the run's kept checkpoints into `target` (for `uid`); drop those of collected runs.
    What it did, for stage-training's line."""
    root = store / CHECKPOINTS
    if not root.is_dir():
        return "no checkpoints kept"
    for kept in root.iterdir():
        if kept.name != rid and (store / MODELS / kept.name / REPORT_FILE).exists():
            shutil.rmtree(kept, ignore_errors=True)
    source = root / rid
    if not source.is_dir():
        return "no checkpoints kept for this run"
    copied = copy_tree(source, target, f"{CHECKPOINTS}/{rid}", allowed=store)
    chown_tree(target, uid, uid)
    return f"{len(copied)} checkpoint file(s) restored from {CHECKPOINTS}/{rid}"


def forget(store: Path, rid: str) -> None:
    """The run trained: its checkpoints are not needed again."""
    shutil.rmtree(store / CHECKPOINTS / rid, ignore_errors=True)


class Mirror:
    """Copies what changed in `source` to `target`, file by file."""

    def __init__(self, source: Path, target: Path, store: Path) -> None:
        self.source, self.target, self.store = source, target, store
        self.seen: dict[str, tuple[int, int]] = {}
        self.copied = 0

    def once(self) -> int:
        copied = 0
        for directory, names, files in os.walk(self.source, followlinks=False):
            for name in sorted(files):
                path = Path(directory) / name
                try:
                    info = path.lstat()
                except FileNotFoundError:
                    continue  # the training replaced it meanwhile: the next round copies it
                if not stat.S_ISREG(info.st_mode):
                    continue
                rel = str(path.relative_to(self.source))
                mark = (info.st_size, info.st_mtime_ns)
                if self.seen.get(rel) == mark:
                    continue
                destination = self.target / rel
                destination.parent.mkdir(parents=True, exist_ok=True)
                temporary = destination.with_name(f".{destination.name}.sync")
                try:
                    shutil.copyfile(path, temporary, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                os.replace(temporary, destination)
                self.seen[rel] = mark
                copied += 1
            names[:] = [n for n in names if not (Path(directory) / n).is_symlink()]
        self.copied += copied
        return copied


def sync_checkpoints() -> Outcome:
    store = store_dir()
    rid = run_id()
    interval = _interval()
    layout = MlLayout(ml_root())
    target = store_directory(store, CHECKPOINTS) / rid
    mirror = Mirror(layout.checkpoints, target, store)
    collected = store / MODELS / rid / REPORT_FILE
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(
        f"sync-checkpoints: {layout.checkpoints} -> {CHECKPOINTS}/{rid} every {interval:g} s",
        flush=True,
    )
    while True:
        stopping = stop.wait(interval)
        if collected.exists():
            break
        if mirror.once():
            give_to_store_owner(target, store)
        if stopping:
            break
    return Outcome(f"sync-checkpoints: {mirror.copied} file copy(ies) to {CHECKPOINTS}/{rid}")
