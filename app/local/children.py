"""Child processes for `python -m app local`: prefixed output and stopping whole process groups.

Every child starts in its own session, so it leads a process group that also holds anything it
forks (gunicorn workers, for example). Stopping a child signals the whole group: SIGTERM first,
SIGKILL for whatever is still running after the timeout. Ctrl-C in a terminal reaches only the
supervisor's own group; the supervisor then decides the order and the timeouts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

_PROC = Path("/proc")


class LinePrinter:
    """Writes whole prefixed lines from several threads without interleaving them."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()

    def line(self, name: str, text: str) -> None:
        with self._lock:
            self._stream.write(f"[{name}] {text}\n")
            self._stream.flush()


def group_alive(pgid: int) -> bool:
    """True while any live (non-zombie) process belongs to process group `pgid`."""
    if _PROC.is_dir():
        return any(True for _ in _group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_members(pgid: int) -> Iterable[int]:
    # An orphaned zombie stays in its group until something reaps it, and in a container PID 1
    # may never do that, so zombies count as gone: they hold no resources but a table slot.
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Format: "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            yield int(entry.name)


class Child:
    """One child process, leader of its own process group, whose output is prefixed with `name`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        printer: LinePrinter,
    ) -> None:
        self.name = name
        self._printer = printer
        self.process = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
            errors="replace",
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._pump, name=f"{name}-output", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._printer.line(self.name, line.rstrip("\n"))

    def poll(self) -> int | None:
        return self.process.poll()

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def finished(self) -> bool:
        """The leader has exited and no process of its group is left."""
        return self.process.poll() is not None and not group_alive(self.pid)

    def flush_output(self, timeout: float = 2.0) -> None:
        self._reader.join(timeout)


def stop_all(children: Sequence[Child], timeout: float, printer: LinePrinter) -> None:
    """SIGTERM every child's group, wait up to `timeout`, then SIGKILL what is left."""
    running = [child for child in children if not child.finished()]
    for child in running:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running and time.monotonic() < deadline:
        time.sleep(0.05)
        running = [child for child in running if not child.finished()]
    for child in running:
        printer.line("local", f"{child.name} did not stop within {timeout:g}s; killing it")
        child.signal_group(signal.SIGKILL)
    kill_deadline = time.monotonic() + 5.0
    while running and time.monotonic() < kill_deadline:
        time.sleep(0.05)
        running = [child for child in running if not child.finished()]
    for child in children:
        child.flush_output()
