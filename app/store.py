"""The shared store: one directory (EFS in AWS, a local folder on a laptop) that every command uses.

Layout::

    datasets/<name>.csv                the training series (the app's own copied in when empty)
    datasets/<name>.series.json        its descriptor: column, units, bounds (`app.series`)
    datasets/accepted_stats.json       statistics of the last dataset that passed validation
    reports/<run_id>/validation.json   one validation report per run
    models/<run_id>/                   model.ubj or model.json, metrics.json, card.md, decision.json
    models/<run_id>/checkpoint/        a booster saved when a Spot task is interrupted
    models/CURRENT                     the promoted run id
    models/.<run_id>.<random>.tmp/     a run being written by train, renamed whole when complete
    datasets/ingest.pending.json       ingest's journal: the records of a dataset being replaced
    replay/schedule.json               a replay's shift week, fixed when it started
    forecasts/                         the forecast ticker's output

Every write goes to a temp file in the same directory, is fsynced and then renamed over the target
(`mlops_contract.atomic_write`), so readers (the server, the dashboard, other tasks) never see a
torn file; the run-id rule and reading and replacing models/CURRENT are the contract's too, shared
with the platform's image. Reads are bounded (`read_limited`): a file damaged from outside
(undecodable, empty, oversized) is a DamagedFileError, and a write that finds no space a
StoreFullError naming the path and the space it needed. `clean_stale` removes what killed
writers left.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

import mlops_contract
from app import series as series_module
from mlops_contract import CURRENT, DECISION_FILE, MODELS, check_run_id, is_run_id

log = logging.getLogger(__name__)

SHIPPED_DATASET = series_module.shipped_dataset()
SHIPPED_DESCRIPTOR = series_module.shipped_descriptor()


INGEST_STATE_NAME = "ingest.json"
"""`datasets/ingest.json`: ingest's record of its last run (the forecast ticker reads it)."""
INGEST_PENDING_NAME = "ingest.pending.json"
"""`datasets/ingest.pending.json`: ingest's journal while it replaces the dataset."""
MAX_JSON_BYTES = 16 * 1024 * 1024
"""The store's JSON files (metrics, decisions, reports) are kilobytes; far larger is damage."""


class StoreUnavailableError(RuntimeError):
    """The store directory did not become available and writable in time."""


STALE_TEMP_SECONDS = 15 * 60
"""A temp file of an atomic write older than this was left by a killed writer (one write of a
store file takes well under a second)."""
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class StoreFullError(OSError):
    """A write to the store failed for lack of space: one line naming the path and the space
    it needed, never a traceback (`python -m app` prints it and exits 1)."""

    def __init__(self, path: Path, needed: int, cause: OSError) -> None:
        try:
            free = shutil.disk_usage(path.parent).free
            have = f", {_size(free)} free there"
        except OSError:
            have = ""
        super().__init__(
            cause.errno,
            f"no space left to write {path}: it needs {_size(needed)} free{have} "
            f"({cause.strerror or cause}); free space in the store and run the command again",
        )
        self.path = path
        self.needed = needed

    def __str__(self) -> str:
        return str(self.strerror)


def _size(count: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} bytes"


def is_full(exc: BaseException) -> bool:
    """True for an OSError that means the file system (or this process's file size limit) is
    full: ENOSPC, EDQUOT, EFBIG."""
    return isinstance(exc, OSError) and exc.errno in _FULL


class DamagedFileError(ValueError):
    """A store file exists but its content is not what its writer writes (undecodable, empty,
    oversized, or not a regular file): damage from outside, never a crash of the reader."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path} is damaged: {problem}")
        self.path = path
        self.problem = problem


def read_limited(path: Path, limit: int) -> bytes:
    """The bytes of the regular file `path`, read through `limit` (never more is read).

    FileNotFoundError when it does not exist; DamagedFileError when it is not a regular file or
    is larger than `limit` bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise DamagedFileError(path, "not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise DamagedFileError(path, f"larger than {limit} bytes")
    return data


@contextlib.contextmanager
def _full_as_store_error(path: Path, needed: int) -> Iterator[None]:
    """Inside: an OSError that means no space (`is_full`) becomes a StoreFullError naming `path`
    and the `needed` bytes; any other error propagates as it was raised."""
    try:
        yield
    except OSError as exc:
        if is_full(exc):
            raise StoreFullError(path, needed, exc) from None
        raise


def write_file(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (`mlops_contract.atomic_write`: readers see the old
    or the new content, never a mix); StoreFullError when the store has no space for it."""
    with _full_as_store_error(path, len(data)):
        mlops_contract.atomic_write(path, data)


def _probe_writable(root: Path) -> str | None:
    """None when `root` is a writable directory, else the reason it is not."""
    if not root.exists():
        return "does not exist"
    if not root.is_dir():
        return "is not a directory"
    try:
        fd, probe = tempfile.mkstemp(dir=root, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"is not writable ({exc.strerror or exc})"
    return None


def _unheld(lock_path: Path) -> bool:
    """True when no live process holds the lockf lock on `lock_path` (or there is none)."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


@dataclass(frozen=True)
class Store:
    """Paths and atomic file operations of the shared store rooted at `root`."""

    root: Path

    @classmethod
    def wait(cls, root: Path, timeout_s: float, poll_s: float = 1.0) -> Store:
        """Wait until `root` exists and is writable (an EFS mount can lag a task's start).

        Logs every retry; raises StoreUnavailableError after `timeout_s` seconds.
        """
        root = Path(root)
        deadline = time.monotonic() + timeout_s
        attempt = 0
        while True:
            attempt += 1
            reason = _probe_writable(root)
            if reason is None:
                if attempt > 1:
                    log.info("store %s is ready after %d attempts", root, attempt)
                return cls(root)
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreUnavailableError(
                    f"store directory {root} {reason} after waiting {timeout_s:g}s "
                    "(STORE_WAIT_SECONDS); check that the shared volume is mounted there "
                    "and writable by this user"
                )
            log.warning(
                "store directory %s %s; retrying in %.1fs (%.0fs left)",
                root,
                reason,
                min(poll_s, left),
                left,
            )
            time.sleep(min(poll_s, left))

    # --- layout -------------------------------------------------------------------------------

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def series_name(self) -> str:
        """Which series the store holds: `SERIES_NAME` when set; else the one descriptor in
        `datasets/`; else the one CSV there; else the series shipped with the app.
        SeriesError when several could be meant and `SERIES_NAME` does not say which."""
        chosen = os.environ.get("SERIES_NAME", "").strip()
        if chosen:
            return series_module.check_name(chosen, "SERIES_NAME")
        shipped = series_module.shipped_name()
        try:
            names = [entry.name for entry in os.scandir(self.datasets_dir)]
        except (FileNotFoundError, NotADirectoryError):
            return shipped
        names = [name for name in names if not name.startswith(".")]
        suffix = series_module.DESCRIPTOR_SUFFIX
        for candidates in (
            sorted(name[: -len(suffix)] for name in names if name.endswith(suffix)),
            sorted(name[:-4] for name in names if name.endswith(".csv")),
        ):
            if len(candidates) == 1:
                return series_module.check_name(candidates[0], f"dataset {candidates[0]!r}")
            if len(candidates) > 1:
                if shipped in candidates:
                    return shipped
                raise series_module.SeriesError(
                    f"{self.datasets_dir} holds several series ({', '.join(candidates)}); "
                    "set SERIES_NAME to the one to use"
                )
        return shipped

    @property
    def dataset_path(self) -> Path:
        return self.datasets_dir / f"{self.series_name}.csv"

    @property
    def descriptor_path(self) -> Path:
        return self.datasets_dir / f"{self.series_name}{series_module.DESCRIPTOR_SUFFIX}"

    def series(self) -> series_module.Series:
        """The descriptor of the store's series (SeriesError when it is unusable); the shipped
        series keeps its shipped descriptor in a store made before descriptors existed."""
        path = self.dataset_path
        if path.name == SHIPPED_DATASET.name and not self.descriptor_path.exists():
            return series_module.load(SHIPPED_DATASET)
        return series_module.load(path)

    @property
    def accepted_stats_path(self) -> Path:
        return self.datasets_dir / "accepted_stats.json"

    @property
    def models_dir(self) -> Path:
        return self.root / MODELS

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def forecasts_dir(self) -> Path:
        return self.root / "forecasts"

    @property
    def current_path(self) -> Path:
        return self.models_dir / CURRENT

    def run_dir(self, run_id: str) -> Path:
        return self.models_dir / check_run_id(run_id)

    def checkpoint_dir(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "checkpoint"

    def report_path(self, run_id: str) -> Path:
        return self.reports_dir / check_run_id(run_id) / "validation.json"

    # --- dataset ------------------------------------------------------------------------------

    def ensure_dataset(self) -> Path:
        """The dataset path, after copying the series shipped with the app if there is none."""
        path = self.dataset_path
        if path.name != SHIPPED_DATASET.name:
            return path
        if not self.descriptor_path.exists():  # also a store made before descriptors existed
            self.write_bytes(self.descriptor_path, SHIPPED_DESCRIPTOR.read_bytes())
        if not path.exists():
            log.info("no dataset in the store; copying the shipped series to %s", path)
            self.write_bytes(path, SHIPPED_DATASET.read_bytes())
        return path

    # --- runs ---------------------------------------------------------------------------------

    def current_run_id(self) -> str | None:
        """The promoted run id from models/CURRENT, or None when nothing is promoted yet.

        DamagedFileError when it exists but does not hold one valid run id (a store mutated from
        outside: `promote RUN_ID` repairs it)."""
        try:
            return mlops_contract.read_current(self.models_dir)
        except mlops_contract.DamagedCurrent as exc:
            raise DamagedFileError(exc.path, exc.problem) from None

    def promoted_runs(self, exclude: str | None = None) -> list[str]:
        """Runs that were promoted (their decision.json says so), newest decision first: where
        a reader falls back to when CURRENT is damaged or names a run that does not load."""
        decided = []
        for run_id in self.list_runs():
            if run_id == exclude:
                continue
            try:
                decision = self.read_json(self.run_dir(run_id) / DECISION_FILE)
            except (OSError, ValueError):
                continue
            if isinstance(decision, dict) and decision.get("promoted") is True:
                decided.append((str(decision.get("decided_at", "")), run_id))
        return [run_id for _, run_id in sorted(decided, reverse=True)]

    def set_current(self, run_id: str) -> None:
        """Point models/CURRENT at `run_id` (atomically; servers pick it up on their next poll)."""
        with _full_as_store_error(self.current_path, len(run_id) + 1):
            mlops_contract.write_current(self.models_dir, run_id)

    def list_runs(self) -> list[str]:
        """Ids of every run directory under models/, sorted (timestamp ids sort by time)."""
        if not self.models_dir.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.models_dir.iterdir()
            if entry.is_dir() and is_run_id(entry.name)
        )

    def has_model(self, run_id: str) -> bool:
        # Either family's model file (app.forecasting.model.MODEL_FILES; not imported: it pulls
        # in xgboost).
        return any((self.run_dir(run_id) / name).is_file() for name in ("model.ubj", "model.json"))

    @contextlib.contextmanager
    def staging_dir(self, run_id: str) -> Iterator[Path]:
        """A fresh `models/.<run_id>.<random>.tmp/` to write a whole run into, then
        `install_run` it. Its `.lock` is held while inside, so `clean_stale` removes only the
        staging directories of writers that died; left over on any error, it is removed."""
        check_run_id(run_id)
        with _full_as_store_error(self.models_dir / f".{run_id}.tmp", 4096):
            self.models_dir.mkdir(parents=True, exist_ok=True)
            path = Path(tempfile.mkdtemp(dir=self.models_dir, prefix=f".{run_id}.", suffix=".tmp"))
            path.chmod(0o755)  # what mkdir gave run directories; mkdtemp makes 0700
            fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            yield path
        finally:
            os.close(fd)
            shutil.rmtree(path, ignore_errors=True)

    def install_run(self, staging: Path, run_id: str) -> None:
        """Rename the complete run in `staging` to `models/<run_id>/` whole. A run directory
        already there holds only a checkpoint (a finished run is never trained again); it is
        renamed aside first and removed after."""
        target = self.run_dir(run_id)
        aside = None
        if target.exists():
            aside = staging.with_name(f"{staging.name[:-4]}.old")
            os.rename(target, aside)
        os.rename(staging, target)
        (target / ".lock").unlink(missing_ok=True)  # held until now: clean_stale keeps off
        mlops_contract.fsync_dir(self.models_dir)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)

    def clean_stale(self, now: float | None = None) -> list[Path]:
        """Remove what killed writers left: staging directories no live writer holds (one
        with a complete run whose run directory is missing is installed instead: the kill came
        between install_run's two renames), renamed-aside run directories, and temp files of
        atomic writes older than STALE_TEMP_SECONDS. Returns what it removed."""
        now = time.time() if now is None else now
        removed: list[Path] = []
        try:
            entries = list(self.models_dir.iterdir())
        except OSError:
            entries = []
        for entry in entries:
            name = entry.name
            if name.startswith(".") and name.endswith(".tmp") and entry.is_dir():
                if not _unheld(entry / ".lock"):
                    continue
                run_id = name[1:].rsplit(".", 2)[0]
                if (entry / "metrics.json").is_file() and not (self.models_dir / run_id).exists():
                    log.warning("finishing the install of run %s that a killed train left", run_id)
                    self.install_run(entry, run_id)
                    continue
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
            elif name.startswith(".") and name.endswith(".old") and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        folders = [self.datasets_dir, self.models_dir, self.reports_dir, *entries]
        with contextlib.suppress(OSError):
            folders += list(self.reports_dir.iterdir())
        for folder in folders:
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            for tmp in folder.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    if tmp.is_file() and now - tmp.stat().st_mtime > STALE_TEMP_SECONDS:
                        tmp.unlink()
                        removed.append(tmp)
        for path in removed:
            log.info("removed %s, left by a killed writer", path)
        return removed

    # --- atomic file operations ---------------------------------------------------------------

    def write_bytes(self, path: Path, data: bytes) -> None:
        write_file(path, data)

    def write_text(self, path: Path, text: str) -> None:
        write_file(path, text.encode())

    def write_json(self, path: Path, obj: Any) -> None:
        write_file(
            path, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        )

    def read_json(self, path: Path, limit: int = MAX_JSON_BYTES) -> Any:
        """The parsed JSON file; FileNotFoundError when missing, DamagedFileError (a ValueError)
        when empty, oversized, not a regular file or not JSON."""
        data = read_limited(path, limit)
        if not data.strip():
            raise DamagedFileError(path, "empty")
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DamagedFileError(path, f"not JSON ({exc})") from None


@dataclass
class CurrentWatch:
    """models/CURRENT for a process that polls it for as long as it runs (the api, the ticker):
    a damaged CURRENT is logged once when the damage appears or changes, and once when it reads
    again, in the caller's logger."""

    store: Store
    log: logging.Logger
    damaged: str | None = None
    """Why models/CURRENT is damaged, while it is."""

    def read(self, keeping: str) -> tuple[bool, str | None]:
        """(whether CURRENT reads, the run id it names or None); `keeping` says what the caller
        does while it is damaged."""
        try:
            run_id = self.store.current_run_id()
        except DamagedFileError as exc:
            if self.damaged != str(exc):
                self.damaged = str(exc)
                self.log.error("%s; %s", exc, keeping)
            return False, None
        if self.damaged is not None:
            self.damaged = None
            self.log.info("models/CURRENT is readable again (run %s)", run_id or "none")
        return True, run_id
