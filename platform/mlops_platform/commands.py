"""The four staging commands. Each reads its inputs from the environment, does one thing, and on
failure prints one line naming the problem on stderr and exits non-zero.

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
  models/<RUN_ID>/         the model files, report.json (collect-training), decision.json (gate)
  models/CURRENT           the promoted run id: the only truth about which model serves
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlops_contract import (
    CURRENT,
    DECISION_FILE,
    MODELS,
    OUTPUTS,
    RECORDS,
    REPORT_FILE,
    DamagedCurrent,
    Env,
    MlLayout,
    atomic_write,
    gate_lock,
    is_run_id,
    write_current,
)
from mlops_contract import read_current as read_current_file

# SageMaker's channel names: [A-Za-z0-9\.\-_]+ (API_Channel.html); no leading dot here, since
# the name becomes a directory.
CHANNEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FAILURE_LIMIT = 64 * 1024
DEFAULT_UID = 10001


class Refused(Exception):
    """A problem with the inputs or the store: its message is the one line the user sees."""


# ------------------------------------------------------------------------------ environment
def ml_root() -> Path:
    return Path(os.environ.get(Env.ML_ROOT) or MlLayout().root)


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise Refused(f"{name} is not set")
    return value


def store_dir() -> Path:
    path = Path(_env(Env.STORE_DIR))
    if not path.is_dir():
        raise Refused(f"{Env.STORE_DIR}={path} is not a directory (is the store mounted?)")
    return path


def run_id() -> str:
    value = _env(Env.RUN_ID)
    if not is_run_id(value):
        raise Refused(
            f"{Env.RUN_ID}={value!r} is not a run id: use letters, digits, '.', '_' and '-' "
            "(at most 128 characters, not starting with '.')"
        )
    return value


def workload_uid() -> int:
    raw = os.environ.get(Env.WORKLOAD_UID, "") or str(DEFAULT_UID)
    try:
        uid = int(raw)
    except ValueError:
        uid = -1
    if uid < 0 or uid > 2**31 - 1:
        raise Refused(
            f"{Env.WORKLOAD_UID}={raw!r} is not a numeric uid (0 for root, default 10001)"
        )
    return uid


def _json_object(name: str, default: str = "{}") -> dict[str, Any]:
    raw = os.environ.get(name, "") or default
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise Refused(f"{name} is not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise Refused(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


# ------------------------------------------------------------------------------ file helpers
def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _clear(directory: Path) -> None:
    """Empty `directory` (creating it if absent) without following symlinks out of it."""
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _walk_files(root: Path, what: str, allowed: Path | None = None) -> Iterator[Path]:
    """Regular files under `root`, sorted. A symlink is refused unless it resolves to a regular
    file inside `allowed` (the store: a link must not pull /etc/shadow into a model)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in list(dirnames):
            if (base / name).is_symlink():
                raise Refused(f"{what} contains a symlinked directory: {base / name}")
        for name in sorted(filenames):
            path = base / name
            if path.is_symlink():
                target = path.resolve()
                if allowed is None or not _inside(target, allowed) or not target.is_file():
                    raise Refused(f"{what} contains a symlink the platform will not follow: {path}")
            elif not stat.S_ISREG(path.lstat().st_mode):
                raise Refused(f"{what} contains something that is not a regular file: {path}")
            yield path


def _copy_tree(
    src: Path,
    dst: Path,
    what: str,
    allowed: Path | None = None,
    skip: Callable[[Path], bool] = lambda _: False,
) -> dict[str, str]:
    """Copy the regular files of `src` into `dst`; return {relative posix name: sha256}."""
    digests: dict[str, str] = {}
    dst.mkdir(parents=True, exist_ok=True)
    for path in _walk_files(src, what, allowed):
        rel = path.relative_to(src)
        if skip(rel):
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with open(path, "rb") as fin, open(target, "wb") as fout:
            while chunk := fin.read(1 << 20):
                digest.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        os.chmod(target, 0o644)
        digests[rel.as_posix()] = digest.hexdigest()
    return digests


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    if os.geteuid() == 0:
        for dirpath, _, filenames in os.walk(root):
            os.chown(dirpath, uid, gid)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), uid, gid)
    elif uid != os.geteuid():
        raise Refused(
            f"cannot give {root} to uid {uid}: this command runs as uid {os.geteuid()}, "
            "not root (run the staging container as root, or MLOPS_WORKLOAD_UID as its own uid)"
        )


def _write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _as_string(value: Any) -> str:
    # SageMaker passes every hyperparameter as a string; the SageMaker Python SDK encodes
    # non-strings with json.dumps, so 0.1 -> "0.1", true -> "true", [1, 2] -> "[1, 2]".
    return value if isinstance(value, str) else json.dumps(value)


# ------------------------------------------------------------------------------ stage-training
def task_host() -> tuple[str, str]:
    """The name `resourceconfig.json` gives this host, and a note when it had to fall back.

    The task's own hostname, as SageMaker's training toolkit names the host when it lays out
    /opt/ml itself (`environment.py`: `socket.gethostname()`): every container of an awsvpc task
    shares the task's network namespace and its hostname, which resolves there. The toolkit
    resolves every host before it runs the user script and retries for 15 minutes, so a name that
    does not resolve is replaced by `localhost`, which always does."""
    name = socket.gethostname()
    try:
        socket.gethostbyname(name)
    except OSError as exc:
        return "localhost", f"the task's hostname {name!r} does not resolve ({exc})"
    return name, ""


def stage_training() -> str:
    store = store_dir().resolve()
    rid = run_id()
    uid = workload_uid()
    channels = _json_object(Env.CHANNELS)
    hyper = _json_object(Env.HYPERPARAMETERS)
    sources: dict[str, Path] = {}
    for name, rel in channels.items():
        if not CHANNEL.match(name):
            raise Refused(
                f"{Env.CHANNELS}: channel name {name!r} is not allowed "
                "(letters, digits, '.', '_', '-'; not starting with '.')"
            )
        if not isinstance(rel, str) or not rel or rel.startswith("/"):
            raise Refused(
                f"{Env.CHANNELS}: channel {name!r} -> {rel!r}: "
                "give a directory relative to the store"
            )
        source = (store / rel).resolve()
        if not _inside(source, store):
            raise Refused(f"{Env.CHANNELS}: channel {name!r} -> {rel!r} escapes the store {store}")
        if not source.is_dir():
            raise Refused(
                f"{Env.CHANNELS}: channel {name!r} -> {rel!r}: "
                f"no such directory in the store {store}"
            )
        sources[name] = source

    layout = MlLayout(ml_root())
    # Each of /opt/ml/input, model, output and checkpoints is a task volume of its own; the rest
    # of /opt/ml (the image's code/) is the image's and is left alone. A re-staged volume must not
    # hand training an earlier attempt's inputs, model or failure.
    for directory in (layout.input_data, layout.config, layout.model, layout.output):
        _clear(directory)
    layout.output_data.mkdir()
    layout.checkpoints.mkdir(parents=True, exist_ok=True)
    files = 0
    for name, source in sources.items():
        files += len(_copy_tree(source, layout.channel(name), f"channel {name!r}", allowed=store))
    _write_json(layout.hyperparameters, {k: _as_string(v) for k, v in hyper.items()})
    _write_json(
        layout.input_data_config,
        {
            name: {
                "ContentType": "application/octet-stream",
                "TrainingInputMode": "File",
                "S3DistributionType": "FullyReplicated",
                "RecordWrapperType": "None",
            }
            for name in sources
        },
    )
    host, fallback = task_host()
    _write_json(
        layout.resource_config,
        {"current_host": host, "hosts": [host], "network_interface_name": "eth0"},
    )
    for path in (
        layout.root / "input",
        layout.input_data,
        layout.config,
        *layout.input_data.iterdir(),
    ):
        os.chmod(path, 0o755)
    # The workload's own writable directories, whatever uid it runs as.
    for directory in (layout.model, layout.output, layout.checkpoints):
        _chown_tree(directory, uid, uid)
    note = f"; {fallback}, so resourceconfig.json names localhost" if fallback else ""
    return (
        f"staged run {rid}: {len(sources)} channel(s), {files} file(s), "
        f"{len(hyper)} hyperparameter(s) into {layout.root}; host {host}{note}; model, output "
        f"and checkpoints for uid {uid}"
    )


# ------------------------------------------------------------------------------ collect-training
def _training_exit() -> tuple[int | None, str]:
    """The training container's exit code and where it was read: `MLOPS_TRAINING_EXIT` when
    set, else the task metadata endpoint (v4 `/task`: the container's `ExitCode`, present once it
    stopped), which ECS gives every container of a task; (None, why) when neither says."""
    raw = os.environ.get(Env.TRAINING_EXIT, "")
    if raw:
        try:
            return int(raw), Env.TRAINING_EXIT
        except ValueError:
            raise Refused(f"{Env.TRAINING_EXIT}={raw!r} is not an exit code") from None
    uri = os.environ.get(Env.ECS_METADATA, "")
    if not uri:
        return None, f"no {Env.ECS_METADATA} and no {Env.TRAINING_EXIT}"
    container = os.environ.get(Env.TRAINING_CONTAINER, "") or "train"
    try:
        with urllib.request.urlopen(f"{uri}/task", timeout=10) as response:
            task = json.loads(response.read(1 << 20))
    except (OSError, ValueError) as exc:
        return None, f"the task metadata endpoint did not answer ({exc})"
    for entry in task.get("Containers", []) if isinstance(task, dict) else []:
        if isinstance(entry, dict) and entry.get("Name") == container:
            code = entry.get("ExitCode")
            if isinstance(code, int) and not isinstance(code, bool):
                return code, "the task metadata endpoint"
            return None, f"the task metadata endpoint gives {container} no exit code yet"
    return None, f"the task metadata endpoint names no container {container!r}"


def _failure_text(path: Path) -> str | None:
    if not path.is_file() or path.is_symlink():
        return None
    with open(path, "rb") as handle:
        return handle.read(FAILURE_LIMIT).decode("utf-8", errors="replace")


def _keep_output_data(store: Path, rid: str, source: Path) -> dict[str, str]:
    """What the training left in /opt/ml/output/data, into `outputs/<RUN_ID>/data/` (replacing
    an earlier attempt's); {relative name: sha256}."""
    target = store / OUTPUTS / rid
    if not source.is_dir() or not any(source.iterdir()):
        shutil.rmtree(target, ignore_errors=True)
        return {}
    staging = store / OUTPUTS / f".{rid}.{secrets.token_hex(4)}.tmp"
    try:
        files = _copy_tree(source, staging / "data", str(source))
        if os.geteuid() == 0:
            owner = store.stat()
            _chown_tree(staging, owner.st_uid, owner.st_gid)
        shutil.rmtree(target, ignore_errors=True)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return files


def collect_training() -> str:
    store = store_dir()
    rid = run_id()
    code, code_source = _training_exit()
    layout = MlLayout(ml_root())
    models = store / MODELS
    for directory in (models, store / OUTPUTS):
        if not directory.is_dir():
            directory.mkdir()
            if os.geteuid() == 0:  # the store's owner (the gate, the forecaster) writes here next
                owner = store.stat()
                os.chown(directory, owner.st_uid, owner.st_gid)
    final = models / rid
    previous = _previous_report(final)
    if (
        previous is not None
        and previous.get("status") == "trained"
        and (read_current_quietly(models) == rid or (final / DECISION_FILE).exists())
    ):
        raise Refused(f"models/{rid} is already trained and gated: a run id is collected once")
    failure = _failure_text(layout.failure)
    tmp = models / f".{rid}.{secrets.token_hex(4)}.tmp"
    try:
        files: dict[str, str] = {}
        if layout.model.is_dir():
            try:
                files = _copy_tree(layout.model, tmp, str(layout.model))
            except Refused as exc:
                failure = (failure + "\n" if failure else "") + str(exc)
                files = {}
                shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(exist_ok=True)
        if failure is None and code not in (None, 0):
            failure = f"training exited with code {code} and wrote no {layout.failure}"
        if failure is None and not files:
            failure = f"training wrote no files to {layout.model}"
        outputs = _keep_output_data(store, rid, layout.output_data)
        report = {
            "run_id": rid,
            "status": "failed" if failure is not None else "trained",
            "failure": failure,
            "files": files,
            "exit_code": code,
            "exit_code_from": code_source,
            "output_data": {
                f"{OUTPUTS}/{rid}/data/{name}": digest for name, digest in outputs.items()
            },
        }
        _write_json(tmp / REPORT_FILE, report)
        if os.geteuid() == 0:
            owner = store.stat()
            _chown_tree(tmp, owner.st_uid, owner.st_gid)
        if final.exists():
            # A retried task (a Spot interruption, a step retry) collects the same run id again:
            # the new attempt replaces the earlier one, which no gate has decided on.
            old = models / f".{rid}.{secrets.token_hex(4)}.old"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if failure is not None:
        print(f"collected failed run {rid} into models/{rid}/{REPORT_FILE}", file=sys.stderr)
        raise Refused(
            " / ".join(line for line in failure.strip().splitlines() if line.strip())
            or "training failed with an empty failure file"
        )
    extra = f", {len(outputs)} output file(s) into {OUTPUTS}/{rid}" if outputs else ""
    return f"collected run {rid}: {len(files)} file(s) into models/{rid}{extra} (exit code {code})"


def _previous_report(run_dir: Path) -> dict[str, Any] | None:
    """The report of an earlier collection of this run id, {} when unreadable, None if none."""
    if not run_dir.exists():
        return None
    try:
        report = json.loads((run_dir / REPORT_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


# ------------------------------------------------------------------------------ CURRENT
def read_current_quietly(models: Path) -> str | None:
    try:
        return read_current(models)
    except Refused:
        return None


def read_current(models: Path) -> str | None:
    """The promoted run id, None when nothing is promoted; Refused when CURRENT is damaged or
    names a run that is not in the store."""
    try:
        text = read_current_file(models)
    except DamagedCurrent as exc:
        raise Refused(
            f"{MODELS}/{CURRENT} is damaged: {exc.problem} "
            "(write a promoted run id into it, or remove it)"
        ) from None
    except OSError as exc:
        raise Refused(f"{MODELS}/{CURRENT} cannot be read: {exc.strerror}") from None
    if text is not None and not (models / text).is_dir():
        raise Refused(f"{MODELS}/{CURRENT} names run {text!r} but {MODELS}/{text}/ does not exist")
    return text


# ------------------------------------------------------------------------------ gate
def _objective(run_dir: Path, file: str, key: str) -> tuple[float | None, str]:
    """The run's objective, or None and why not."""
    path = run_dir / file
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, f"{path.name} is missing from models/{run_dir.name}"
    except (OSError, ValueError) as exc:
        return None, f"models/{run_dir.name}/{file} is not readable JSON ({exc})"
    if not isinstance(data, dict) or key not in data:
        return None, f"models/{run_dir.name}/{file} has no key {key!r}"
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None, f"models/{run_dir.name}/{file}: {key} = {value!r} is not a finite number"
    return float(value), ""


PROMOTIONS = ("objective", "every-trained-run")
"""`workload.promotion`: compare the objective, or promote every run that trained (for images
that write no metrics: the user chose it; the policy pack reports it)."""


def _promotion() -> str:
    value = os.environ.get(Env.PROMOTION, "") or "objective"
    if value not in PROMOTIONS:
        raise Refused(f"{Env.PROMOTION}={value!r}: use {' or '.join(PROMOTIONS)}")
    return value


def _gate_settings() -> tuple[str, str, str, float]:
    file = os.environ.get(Env.OBJECTIVE_FILE, "") or "metrics.json"
    parts = Path(file).parts
    if Path(file).is_absolute() or ".." in parts or not parts:
        raise Refused(f"{Env.OBJECTIVE_FILE}={file!r} must be a path inside the model directory")
    key = _env(Env.OBJECTIVE_KEY)
    direction = os.environ.get(Env.OBJECTIVE_DIRECTION, "")
    if direction not in ("maximize", "minimize"):
        raise Refused(f"{Env.OBJECTIVE_DIRECTION}={direction!r}: use 'maximize' or 'minimize'")
    raw = os.environ.get(Env.OBJECTIVE_MARGIN, "") or "0"
    try:
        margin = float(raw)
    except ValueError:
        margin = -1.0
    if not math.isfinite(margin) or margin < 0:
        raise Refused(f"{Env.OBJECTIVE_MARGIN}={raw!r} must be a number >= 0")
    return file, key, direction, margin


def _decide_every_trained_run(models: Path, rid: str, report: Any) -> dict[str, Any]:
    decision: dict[str, Any] = {"run_id": rid, "promoted": False, "promotion": "every-trained-run"}
    decision["current_run"] = read_current(models)
    if not isinstance(report, dict) or report.get("status") != "trained":
        status = report.get("status") if isinstance(report, dict) else None
        decision["reason"] = f"run {rid} did not train (its report says {status!r})"
        return decision
    decision.update(
        promoted=True,
        reason=f"run {rid} trained (exit code {report.get('exit_code')}); promotion is "
        "every-trained-run: no objective compared",
    )
    return decision


def _decide(models: Path, rid: str) -> dict[str, Any]:
    run_dir = models / rid
    if _promotion() == "every-trained-run":
        try:
            report = json.loads((run_dir / REPORT_FILE).read_bytes())
        except (OSError, ValueError):
            report = None
        return _decide_every_trained_run(models, rid, report)
    file, key, direction, margin = _gate_settings()
    decision: dict[str, Any] = {
        "run_id": rid,
        "promoted": False,
        "objective": None,
        "current_objective": None,
        "current_run": None,
        "key": key,
        "direction": direction,
        "margin": margin,
    }
    try:
        report = json.loads((run_dir / REPORT_FILE).read_bytes())
    except (OSError, ValueError):
        report = None
    if isinstance(report, dict) and report.get("status") == "failed":
        decision["reason"] = f"run {rid} failed training: {report.get('failure')}"
        return decision
    value, why = _objective(run_dir, file, key)
    decision["objective"] = value
    if value is None:
        decision["reason"] = f"no objective: {why}"
        return decision
    current = read_current(models)
    decision["current_run"] = current
    if current is None:
        decision.update(
            promoted=True, reason=f"first model: {key} = {value:g}, nothing promoted yet"
        )
        return decision
    if current == rid:  # a retried gate: the earlier decision stands
        decision.update(promoted=True, reason=f"run {rid} is already the promoted model")
        return decision
    current_value, why = _objective(models / current, file, key)
    decision["current_objective"] = current_value
    if current_value is None:
        decision.update(
            promoted=True, reason=f"current run {current} has no comparable objective ({why})"
        )
        return decision
    gain = value - current_value if direction == "maximize" else current_value - value
    better = "higher" if direction == "maximize" else "lower"
    if gain > margin:
        decision.update(
            promoted=True,
            reason=f"{key} {value:g} vs {current_value:g} of run {current}: {better} by {gain:g} "
            f"> margin {margin:g}",
        )
    else:
        decision["reason"] = (
            f"{key} {value:g} vs {current_value:g} of run {current}: not {better} by more than "
            f"margin {margin:g}"
        )
    return decision


def gate() -> str:
    store = store_dir()
    rid = run_id()
    models = store / MODELS
    if not (models / rid).is_dir():
        raise Refused(f"models/{rid}/ does not exist: collect-training has not stored this run")
    with gate_lock(models):
        decision = _decide(models, rid)
        # The decision is on disk before CURRENT moves: a crash in between leaves a record
        # saying "promoted" for a model that is not served, never a served model with no record.
        _write_json(models / rid / DECISION_FILE, decision)
        if decision["promoted"]:
            write_current(models, rid)
    verdict = "promoted" if decision["promoted"] else "refused"
    return f"{verdict} run {rid}: {decision['reason']}"


# ------------------------------------------------------------------------------ stage-serving
def stage_serving() -> str:
    store = store_dir()
    uid = workload_uid()
    models = store / MODELS
    current = read_current(models) if models.is_dir() else None
    if current is None:
        raise Refused("no promoted model yet: run the pipeline first (models/CURRENT is absent)")
    target = ml_root() / "model"
    _clear(target)
    files = _copy_tree(
        models / current,
        target,
        f"models/{current}",
        allowed=store.resolve(),
        skip=lambda rel: rel.as_posix() in RECORDS,
    )
    if not files:
        raise Refused(f"models/{current}/ (models/CURRENT) holds no model files")
    os.chmod(target, 0o755)
    _chown_tree(target, uid, uid)
    return f"staged model of run {current}: {len(files)} file(s) into {target} for uid {uid}"


COMMANDS: dict[str, Callable[[], str]] = {
    "stage-training": stage_training,
    "collect-training": collect_training,
    "gate": gate,
    "stage-serving": stage_serving,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in COMMANDS:
        print(f"usage: python -m mlops_platform {{{','.join(COMMANDS)}}}", file=sys.stderr)
        return 2
    try:
        print(COMMANDS[argv[0]](), flush=True)
    except Refused as exc:
        print(f"{argv[0]}: {exc}", file=sys.stderr, flush=True)
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{argv[0]}: {where}{exc.strerror or exc}", file=sys.stderr, flush=True)
        return 1
    return 0
