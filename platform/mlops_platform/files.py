"""Files in the store and under /opt/ml: copying without following a link out, owners, the
platform's JSON records and models/CURRENT."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlops_contract import CURRENT, GATE_LOCK, MODELS, DamagedCurrent, atomic_write, gate_lock
from mlops_contract import read_current as read_current_file

from .inputs import Refused, parse_json, size_text

RECORD_MAX_BYTES = 1 << 20
"""The most the platform reads of a record or a metrics file."""


def inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def clear(directory: Path) -> None:
    """Empty `directory` (creating it if absent) without following symlinks out of it."""
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def walk_files(root: Path, what: str, allowed: Path | None = None) -> Iterator[Path]:
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
                if allowed is None or not inside(target, allowed) or not target.is_file():
                    raise Refused(f"{what} contains a symlink the platform will not follow: {path}")
            elif not stat.S_ISREG(path.lstat().st_mode):
                raise Refused(f"{what} contains something that is not a regular file: {path}")
            yield path


def copy_tree(
    src: Path,
    dst: Path,
    what: str,
    allowed: Path | None = None,
    skip: Callable[[Path], bool] = lambda _: False,
) -> dict[str, str]:
    """Copy the regular files of `src` into `dst`; return {relative posix name: sha256}."""
    digests: dict[str, str] = {}
    dst.mkdir(parents=True, exist_ok=True)
    for path in walk_files(src, what, allowed):
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


def chown_tree(root: Path, uid: int, gid: int) -> None:
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


def apparent_size(root: Path, what: str) -> int:
    """The bytes the regular files under `root` hold by their length (`st_size`), not by the
    blocks they use: a copy writes a sparse file in full, so 8 KiB on disk can be 2 GiB in the
    store. Refused as `walk_files` refuses."""
    return sum(path.lstat().st_size for path in walk_files(root, what))


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


# ------------------------------------------------------------------------------ the store's runs
def give_to_store_owner(path: Path, store: Path) -> None:
    """Run as root, hand `path` (and what is under it) to the store's owner: the gate and the
    forecaster, running as that uid, write next to it."""
    if os.geteuid() == 0:
        owner = store.stat()
        if path.is_dir():
            chown_tree(path, owner.st_uid, owner.st_gid)
        else:
            os.chown(path, owner.st_uid, owner.st_gid)


@contextlib.contextmanager
def store_gate_lock(store: Path, models: Path) -> Iterator[None]:
    """`mlops_contract.gate_lock` on models/, its lock file owned by the store's owner: a
    command running as root must not leave a lock file the gate (uid 10001) cannot open."""
    lock = models / GATE_LOCK
    if not lock.exists():
        models.mkdir(exist_ok=True)
        os.close(os.open(lock, os.O_RDWR | os.O_CREAT, 0o644))
        give_to_store_owner(lock, store)
    with gate_lock(models):
        yield


def store_directory(store: Path, name: str) -> Path:
    """`store/name` (models/, outputs/), created owned by the store's owner when absent."""
    directory = store / name
    if not directory.is_dir():
        directory.mkdir()
        give_to_store_owner(directory, store)
    return directory


def new_run_directory(models: Path, rid: str) -> Path:
    """A temporary directory beside models/<rid>, to fill and then `install_run_directory`."""
    tmp = models / f".{rid}.{secrets.token_hex(4)}.tmp"
    tmp.mkdir()
    return tmp


def install_run_directory(models: Path, rid: str, tmp: Path) -> None:
    """Make the filled `tmp` models/<rid> by renames, replacing an earlier attempt's directory:
    a reader sees the old run or the new one, never half of either."""
    final = models / rid
    if final.exists():
        old = models / f".{rid}.{secrets.token_hex(4)}.old"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)


def read_bounded(path: Path, what: str, limit: int, within: Path | None = None) -> bytes:
    """The content of the regular file `path`, which may hold at most `limit` bytes (reading
    `limit + 1` at most). Refused, naming `what`, for a symlink (also any directory between
    `within` and the file), anything but a regular file, or more bytes; FileNotFoundError when
    there is nothing there."""
    if within is not None:
        for parent in reversed(path.relative_to(within).parents[:-1]):
            if (within / parent).is_symlink():
                raise Refused(f"{what}: {parent} is a symlink, which the platform does not follow")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused(f"{what} is a symlink; only a regular file is read") from None
        if exc.errno == errno.ENOTDIR:
            raise FileNotFoundError(errno.ENOENT, "no such file", str(path)) from None
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise Refused(f"{what} is not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise Refused(f"{what} is larger than {size_text(limit)}, the limit")
    return data


def read_record(path: Path, what: str) -> dict[str, Any] | None:
    """A platform record (report.json, decision.json): None when absent, Refused when it is not a
    JSON object within the bounds the platform reads."""
    try:
        data = read_bounded(path, what, RECORD_MAX_BYTES)
    except FileNotFoundError:
        return None
    record = parse_json(data, what)
    if not isinstance(record, dict):
        raise Refused(f"{what} is not a JSON object")
    return record


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


def still_current(models: Path) -> str:
    """What models/CURRENT names, for a line saying a run did not replace it."""
    try:
        current = read_current(models)
    except Refused as exc:
        return str(exc)
    return f"{MODELS}/{CURRENT} still names {current}" if current else "nothing is promoted yet"
