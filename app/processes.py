"""How the app's processes live and die: a child of `python -m app local`, or the probe child of a
model check, dies with its parent however the parent dies (`die_with`), and the fault suite kills
a command exactly between two of its writes (`crash_point`)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
"""The directory holding the `app` package and `mlops_contract.py`: what a child process of
`python -m app` needs on its PYTHONPATH."""
PARENT_ENV = "MLOPS_DIE_WITH_PARENT"
"""Set by `app local` to its pid in each child's environment: the child dies with it."""
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when `parent_pid`, its parent, dies in any way, even
    by SIGKILL (Linux `PR_SET_PDEATHSIG`; the signal follows the thread that forked us, so the
    parent must start its children from a thread that lives as long as it does)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before the kernel could watch it
        os.kill(os.getpid(), signal.SIGKILL)


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) for a child that calls `die_with_parent_if_asked`: the
    kernel kills it when this process dies, even by SIGKILL. Start it from a thread that waits
    for it (`subprocess.run`), since the signal follows the forking thread."""
    return {**(os.environ if env is None else env), PARENT_ENV: str(os.getpid())}


def die_with_parent_if_asked() -> None:
    """In a child of `app local` (`MLOPS_DIE_WITH_PARENT` set): die with the supervisor. The
    variable is removed, so the child's own children decide for themselves."""
    parent = os.environ.pop(PARENT_ENV, None)
    if parent and sys.platform == "linux":
        die_with(int(parent))


CRASH_ENV = "MLOPS_CRASH_AT"
"""Fault tests only: `python -m app` SIGKILLs itself at the crash point of this name."""


def crash_point(name: str) -> None:
    """Die by SIGKILL here when `MLOPS_CRASH_AT` names this point: how the fault suite (tests
    and `python -m benchmarks.faults`) kills a command between two of its writes, exactly."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
