"""stage-training and collect-training: a run's channels into SageMaker's /opt/ml, and what the
training left there back into the store.

The baseline of the training data (baseline.py) is computed by stage-training from the channels
it staged, exactly what the training reads: collect-training has no /opt/ml/input (the training
task mounts only the model and output volumes into it). stage-training leaves it in the store as
`models/.<RUN_ID>.baseline/` (`baseline/<channel>/{statistics,constraints}.json` and its
summary), hidden beside the run directories; collect-training moves it into the run directory as
`models/<RUN_ID>/baseline/` when the run trained, and the summary into report.json. Neither
command fails for it: what went wrong is the summary's `problem` or a channel's `skipped`.

AWS: https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo.html
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import urllib.request
from pathlib import Path
from typing import Any

from mlops_contract import (
    BASELINE_DIR,
    DECISION_FILE,
    MODELS,
    OUTPUTS,
    RECORDS,
    REPORT_FILE,
    Env,
    MlLayout,
)

from . import baseline, s3
from .checkpoints import forget as forget_checkpoints
from .checkpoints import restore as restore_checkpoints
from .files import (
    apparent_size,
    chown_tree,
    clear,
    copy_tree,
    give_to_store_owner,
    inside,
    install_run_directory,
    new_run_directory,
    read_current_quietly,
    read_record,
    store_directory,
    write_json,
)
from .inputs import (
    Refused,
    json_object,
    ml_root,
    one_line,
    parse_json,
    printable,
    run_id,
    size_text,
    store_dir,
    workload_uid,
)

# SageMaker's channel names: [A-Za-z0-9\.\-_]+ (API_Channel.html); no leading dot here, since
# the name becomes a directory.
CHANNEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FAILURE_LIMIT = 64 * 1024
BASELINE_SUMMARY = "summary.json"


def as_string(value: Any) -> str:
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
    channels = json_object(Env.CHANNELS)
    hyper = json_object(Env.HYPERPARAMETERS)
    sources: dict[str, Path] = {}
    remote: dict[str, str] = {}
    for name, rel in channels.items():
        if not CHANNEL.match(name):
            raise Refused(
                f"{Env.CHANNELS}: channel name {name!r} is not allowed "
                "(letters, digits, '.', '_', '-'; not starting with '.')"
            )
        if s3.is_s3(rel):
            remote[name] = rel
            continue
        if not isinstance(rel, str) or not rel or rel.startswith("/"):
            raise Refused(
                f"{Env.CHANNELS}: channel {name!r} -> {rel!r}: "
                "give a directory relative to the store"
            )
        source = (store / rel).resolve()
        if not inside(source, store):
            raise Refused(f"{Env.CHANNELS}: channel {name!r} -> {rel!r} escapes the store {store}")
        if not source.is_dir():
            raise Refused(
                f"{Env.CHANNELS}: channel {name!r} -> {rel!r}: "
                f"no such directory in the store {store}"
            )
        sources[name] = source
    # Listed before anything is cleared: a missing prefix or a denied read fails here.
    listings = s3.list_channels(remote, s3.channel_max_bytes()) if remote else []

    layout = MlLayout(ml_root())
    # Each of /opt/ml/input, model, output and checkpoints is a task volume of its own; the rest
    # of /opt/ml (the image's code/) is the image's and is left alone. A re-staged volume must not
    # hand training an earlier attempt's inputs, model or failure.
    for directory in (layout.input_data, layout.config, layout.model, layout.output):
        clear(directory)
    layout.output_data.mkdir()
    layout.checkpoints.mkdir(parents=True, exist_ok=True)
    files = 0
    for name, source in sources.items():
        files += len(copy_tree(source, layout.channel(name), f"channel {name!r}", allowed=store))
    files += s3.download(listings, layout) if listings else 0
    write_json(layout.hyperparameters, {k: as_string(v) for k, v in hyper.items()})
    write_json(
        layout.input_data_config,
        {
            name: s3.INPUT_CONFIG
            if name in remote
            else {
                "ContentType": "application/octet-stream",
                "TrainingInputMode": "File",
                "S3DistributionType": "FullyReplicated",
                "RecordWrapperType": "None",
            }
            for name in channels
        },
    )
    host, fallback = task_host()
    write_json(
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
        chown_tree(directory, uid, uid)
    note = f"; {fallback}, so resourceconfig.json names localhost" if fallback else ""
    note += "; " + restore_checkpoints(store, rid, layout.checkpoints, uid)
    described = _stage_baseline(store, rid, {name: layout.channel(name) for name in channels})
    return (
        f"staged run {rid}: {len(channels)} channel(s), {files} file(s), "
        f"{len(hyper)} hyperparameter(s) into {layout.root}; host {host}{note}; model, output "
        f"and checkpoints for uid {uid}; {described}"
    )


def _staged_baseline(models: Path, rid: str) -> Path:
    return models / f".{rid}.baseline"


def _stage_baseline(store: Path, rid: str, channels: dict[str, Path]) -> str:
    """The run's baseline into `models/.<RUN_ID>.baseline/`, replacing an earlier attempt's;
    what the stage line says of it. Never raises for it: a store that refuses the write leaves no
    baseline, which collect-training then reports."""
    models = store / MODELS
    building = models / f".{rid}.baseline.{secrets.token_hex(4)}.tmp"
    try:
        store_directory(store, MODELS)
        try:
            limit = baseline.max_rows()
        except Refused as exc:
            summary: dict[str, Any] = {"problem": str(exc)}
        else:
            described = baseline.write_baseline(channels, building / BASELINE_DIR, limit)
            summary = {"max_rows": limit, "channels": described}
        write_json(building / BASELINE_SUMMARY, summary)
        give_to_store_owner(building, store)
        staged = _staged_baseline(models, rid)
        shutil.rmtree(staged, ignore_errors=True)
        os.rename(building, staged)
    except OSError as exc:
        shutil.rmtree(building, ignore_errors=True)
        return f"no baseline: {one_line(str(exc))}"
    if "problem" in summary:
        return f"no baseline: {summary['problem']}"
    kept = {name: s for name, s in summary["channels"].items() if "skipped" not in s}
    rows = sum(s["rows"] for s in kept.values())
    skipped = len(summary["channels"]) - len(kept)
    return f"baseline of {len(kept)} channel(s), {rows} row(s), {skipped} skipped"


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
            task = parse_json(response.read(1 << 20), "the task metadata")
    except (OSError, Refused) as exc:
        return None, f"the task metadata endpoint did not answer ({exc})"
    for entry in task.get("Containers", []) if isinstance(task, dict) else []:
        if isinstance(entry, dict) and entry.get("Name") == container:
            code = entry.get("ExitCode")
            if isinstance(code, int) and not isinstance(code, bool):
                return code, "the task metadata endpoint"
            return None, f"the task metadata endpoint gives {container} no exit code yet"
    return None, f"the task metadata endpoint names no container {container!r}"


DEFAULT_MODEL_MAX_BYTES = 10 << 30


def _model_max_bytes() -> int:
    raw = os.environ.get(Env.MODEL_MAX_BYTES, "")
    if not raw:
        return DEFAULT_MODEL_MAX_BYTES
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20 and int(raw) > 0):
        raise Refused(
            f"{Env.MODEL_MAX_BYTES}={raw[:40]!r} must be a positive whole number of bytes "
            f"(default {DEFAULT_MODEL_MAX_BYTES}, 10 GiB)"
        )
    return int(raw)


def _failure_text(path: Path) -> str | None:
    """The start of what the training wrote to output/failure, printable; None without one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        return printable(handle.read(FAILURE_LIMIT).decode("utf-8", errors="replace"))


def _over_limit(directory: Path, limit: int) -> str | None:
    """Why `directory` may not be copied for its size, measured before anything is copied."""
    size = apparent_size(directory, str(directory))
    if size <= limit:
        return None
    return (
        f"{directory} holds {size_text(size)}, more than {Env.MODEL_MAX_BYTES}={limit} "
        f"({size_text(limit)}); a sparse file counts at its full size, since a copy writes it "
        "in full: nothing of it was kept"
    )


def _collect_model(model: Path, tmp: Path, limit: int) -> tuple[dict[str, str], str | None]:
    """The model's files copied into `tmp` ({relative name: sha256}), or none and why not."""
    if not model.is_dir():
        return {}, None
    planted = sorted(name for name in RECORDS if os.path.lexists(model / name))
    if planted:
        return {}, "; ".join(
            f"{model / name}: a name the platform keeps for its own records "
            f"({', '.join(sorted(RECORDS))}), so the model was not kept"
            for name in planted
        )
    try:
        why = _over_limit(model, limit)
        return ({}, why) if why else (copy_tree(model, tmp, str(model)), None)
    except Refused as exc:
        clear(tmp)
        return {}, str(exc)


def _keep_output_data(
    store: Path, rid: str, source: Path, limit: int
) -> tuple[dict[str, str], str | None]:
    """What the training left in /opt/ml/output/data, into `outputs/<RUN_ID>/data/` (replacing
    an earlier attempt's): {relative name: sha256}, or none and why not."""
    target = store / OUTPUTS / rid
    shutil.rmtree(target, ignore_errors=True)
    if not source.is_dir() or not any(source.iterdir()):
        return {}, None
    staging = store / OUTPUTS / f".{rid}.{secrets.token_hex(4)}.tmp"
    try:
        why = _over_limit(source, limit)
        if why:
            return {}, why
        files = copy_tree(source, staging / "data", str(source))
        give_to_store_owner(staging, store)
        os.rename(staging, target)
    except Refused as exc:
        return {}, str(exc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files, None


def collect_training() -> str:
    store = store_dir()
    rid = run_id()
    limit = _model_max_bytes()
    code, code_source = _training_exit()
    layout = MlLayout(ml_root())
    models = store_directory(store, MODELS)
    store_directory(store, OUTPUTS)
    final = models / rid
    previous = _previous_report(final)
    if (
        previous is not None
        and previous.get("status") == "trained"
        and (read_current_quietly(models) == rid or (final / DECISION_FILE).exists())
    ):
        raise Refused(f"models/{rid} is already trained and gated: a run id is collected once")
    failure_file = _failure_text(layout.failure)
    tmp = new_run_directory(models, rid)
    try:
        files, model_problem = _collect_model(layout.model, tmp, limit)
        outputs, output_problem = _keep_output_data(store, rid, layout.output_data, limit)
        parts = [] if failure_file is None else [failure_file]
        if failure_file is None and code not in (None, 0):
            parts.append(f"training exited with code {code} and wrote no {layout.failure}")
        parts += [problem for problem in (model_problem, output_problem) if problem]
        if not parts and not files:
            parts.append(f"training wrote no files to {layout.model}")
        # Printable: file names in the problems are the workload's too.
        failure = printable("\n".join(parts)) if parts else None
        kept_baseline = _collect_baseline(models, rid, tmp, trained=failure is None)
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
            "baseline": kept_baseline,
        }
        write_json(tmp / REPORT_FILE, report)
        give_to_store_owner(tmp, store)
        # A retried task (a Spot interruption, a step retry) collects the same run id again:
        # the new attempt replaces the earlier one, which no gate has decided on.
        install_run_directory(models, rid, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if failure is not None:
        print(f"collected failed run {rid} into models/{rid}/{REPORT_FILE}", file=sys.stderr)
        raise Refused(one_line(failure) or "training failed with an empty failure file")
    forget_checkpoints(store, rid)
    extra = f", {len(outputs)} output file(s) into {OUTPUTS}/{rid}" if outputs else ""
    return f"collected run {rid}: {len(files)} file(s) into models/{rid}{extra} (exit code {code})"


def _collect_baseline(
    models: Path, rid: str, run_dir: Path, trained: bool
) -> dict[str, Any] | None:
    """What stage-training staged of the baseline, moved into the run directory being filled
    when the run trained; its summary for report.json, None for a failed run (nothing of it is
    kept). Never raises for it: what went wrong is the summary's `problem`."""
    staged = _staged_baseline(models, rid)
    where = f"{MODELS}/{staged.name}"
    try:
        if not trained:
            return None
        if not staged.is_dir():
            return {"directory": None, "problem": f"stage-training left no baseline ({where}/)"}
        summary = read_record(staged / BASELINE_SUMMARY, f"{where}/{BASELINE_SUMMARY}")
        if summary is None:
            return {"directory": None, "problem": f"{where}/ holds no {BASELINE_SUMMARY}"}
        kept = (staged / BASELINE_DIR).is_dir()
        if kept:
            os.rename(staged / BASELINE_DIR, run_dir / BASELINE_DIR)
        return {**summary, "directory": BASELINE_DIR if kept else None}
    except (OSError, Refused) as exc:
        return {"directory": None, "problem": f"the baseline was not kept: {one_line(str(exc))}"}
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _previous_report(run_dir: Path) -> dict[str, Any] | None:
    """The report of an earlier collection of this run id, {} when unreadable, None if none."""
    if not run_dir.exists():
        return None
    try:
        return read_record(run_dir / REPORT_FILE, f"{MODELS}/{run_dir.name}/{REPORT_FILE}") or {}
    except (OSError, Refused):
        return {}
