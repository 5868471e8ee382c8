"""`python -m app.slim`: what the image keeps of its installed dependencies.

The image carries what the product runs and nothing a developer's machine would want on top:

- `prune ROOT…`: deletes, under each root (a venv or a `pip install --target` directory),
  the packages' test suites, type stubs and Cython sources, JavaScript source maps, the
  development builds Dash serves only in debug mode (`X.js` / `X.dev.js` next to `X.min.js`),
  plotly's Jupyter extensions, and botocore's models of the AWS services the app never calls
  (`BOTOCORE_SERVICES`). Licences, data and every production bundle stay.
- `strip ROOT…`: removes debug symbols from the packages' own compiled extension modules. Each
  stripped copy must still load (`dlopen`, in a child process) before it replaces the original;
  the libraries auditwheel vendored into `<package>.libs/` are never touched, because patchelf
  rewrote them and `strip` leaves them unloadable ("ELF load command address/offset not
  page-aligned").
- `warm`: writes the bytecode of every module `python -m app serve` imports, so the api starts
  from `.pyc` on a read-only root filesystem; the other commands compile in memory when they
  start (0.5-1.5 s, once per task or sidecar), and the image carries 10 MB of bytecode instead
  of the 76 MB byte-compiling everything costs.

Used by `app/Dockerfile` (prune and strip in the builder stage, warm in the runtime stage) and by
`benchmarks/load.py`, which measures the same tree. Standard library only: the builder stage runs
it as a plain script before the app's own packages are importable.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

PRUNED_DIRS = frozenset({"tests", "__pycache__"})
"""Directories deleted wherever they are: test suites, and stale bytecode (`warm` writes the
bytecode the image keeps after pruning)."""

PRUNED_SUFFIXES = (".js.map", ".pyi", ".pyx", ".pxd")
"""Source maps (fetched only by a browser's developer tools), type stubs (read by type checkers)
and Cython sources (read by a compiler)."""

JUPYTER_PATHS = (
    "share/jupyter",
    "etc/jupyter",
    "plotly/labextension",
    "plotly/package_data/widgetbundle.js",
)
"""JupyterLab and notebook extensions, relative to an install root or to site-packages: `dash`
and `plotly.graph_objects` never load them (`plotly/package_data/plotly.min.js`, which Dash
serves to the browser, stays)."""

BOTOCORE_SERVICES = frozenset({"events"})
"""The AWS service models the app uses (`app.loop.monitor` publishes to EventBridge): botocore ships
the models of every AWS service (28 MB of its 31 MB) and needs only these, next to its
endpoint and partition files."""

SERVE_MODULES = (
    "app.serving.server",
    # Imported by uvicorn.Config.load() for the options app.serving.server passes to it.
    "uvicorn.loops.asyncio",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.lifespan.on",
)
"""What `python -m app serve` imports before it answers `/ready`."""


@dataclass
class Report:
    removed_files: int = 0
    removed_bytes: int = 0
    stripped_files: int = 0
    stripped_bytes: int = 0
    kept_unstripped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        mb = 1024 * 1024
        parts = []
        if self.removed_files:
            parts.append(f"pruned {self.removed_files} files ({self.removed_bytes / mb:.1f} MB)")
        if self.stripped_files:
            parts.append(
                f"stripped {self.stripped_files} extension modules "
                f"(-{self.stripped_bytes / mb:.1f} MB)"
            )
        if self.kept_unstripped:
            parts.append(
                f"kept {len(self.kept_unstripped)} unstripped (no proof the stripped copy loads)"
            )
        return ", ".join(parts) or "nothing to do"


def _size(path: Path) -> tuple[int, int]:
    """(files, bytes) under `path`, symlinks not followed."""
    if path.is_symlink() or path.is_file():
        return 1, path.lstat().st_size
    files = total = 0
    for parent, _, names in os.walk(path):
        for name in names:
            files += 1
            total += (Path(parent) / name).lstat().st_size
    return files, total


def _dev_build(path: Path) -> bool:
    """`X.js` or `X.dev.js` whose minified production build `X.min.js` sits next to it."""
    name = path.name
    if not name.endswith(".js") or name.endswith(".min.js"):
        return False
    stem = name.removesuffix(".js").removesuffix(".dev")
    return (path.parent / f"{stem}.min.js").is_file()


def removable(path: Path) -> bool:
    """Whether `prune` deletes this file or directory (jupyter paths are matched separately)."""
    if path.is_dir() and not path.is_symlink():
        if path.parent.name == "data" and path.parent.parent.name == "botocore":
            return path.name not in BOTOCORE_SERVICES
        return path.name in PRUNED_DIRS
    return path.name.endswith(PRUNED_SUFFIXES) or _dev_build(path)


def site_packages(root: Path) -> list[Path]:
    """The site-packages directories of a venv, or the root itself for a --target directory."""
    found = sorted(root.glob("lib/python3*/site-packages"))
    return found or [root]


def _candidates(root: Path) -> Iterator[Path]:
    for base in {root, *site_packages(root)}:
        for relative in JUPYTER_PATHS:
            if (base / relative).exists():
                yield base / relative
    for packages in site_packages(root):
        for parent, dirs, names in os.walk(packages):
            here = Path(parent)
            for name in list(dirs):
                if removable(here / name):
                    dirs.remove(name)
                    yield here / name
            for name in names:
                if removable(here / name):
                    yield here / name


def prune(roots: Iterable[Path]) -> Report:
    report = Report()
    for root in roots:
        for path in list(_candidates(root)):
            files, total = _size(path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            report.removed_files += files
            report.removed_bytes += total
    return report


def _extension_modules(root: Path) -> Iterator[Path]:
    for packages in site_packages(root):
        for parent, dirs, names in os.walk(packages):
            dirs[:] = [name for name in dirs if not name.endswith(".libs")]
            for name in names:
                path = Path(parent) / name
                if path.suffix == ".so" and path.is_file() and not path.is_symlink():
                    yield path


LOAD_CHECK = "import ctypes, sys\nfor path in sys.argv[1:]:\n    ctypes.CDLL(path)\n"


def _loads(path: Path) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", LOAD_CHECK, str(path)], capture_output=True, timeout=60
    )
    return done.returncode == 0


def strip(roots: Iterable[Path], strip_tool: str = "strip") -> Report:
    if shutil.which(strip_tool) is None:
        raise SystemExit(f"error: `{strip_tool}` not found (Debian: apt-get install binutils)")
    report = Report()
    for root in roots:
        for path in list(_extension_modules(root)):
            # A stripped copy next to the original, so $ORIGIN-relative RPATHs resolve the same.
            with tempfile.NamedTemporaryFile(
                dir=path.parent, prefix=".strip-", suffix=".so", delete=False
            ) as handle:
                copy = Path(handle.name)
            try:
                shutil.copy2(path, copy)
                done = subprocess.run(
                    [strip_tool, "--strip-unneeded", str(copy)], capture_output=True, timeout=120
                )
                before, after = path.stat().st_size, copy.stat().st_size
                if done.returncode != 0 or after >= before:
                    continue
                if not _loads(copy):
                    report.kept_unstripped.append(str(path))
                    continue
                os.replace(copy, path)
                report.stripped_files += 1
                report.stripped_bytes += before - after
            finally:
                copy.unlink(missing_ok=True)
    return report


def warm(modules: Iterable[str] = SERVE_MODULES) -> list[str]:
    """Import `modules` with bytecode writing on; returns the modules now loaded."""
    sys.dont_write_bytecode = False
    for module in modules:
        importlib.import_module(module)
    return sorted(sys.modules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.slim", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("prune", "strip"):
        command = commands.add_parser(name)
        command.add_argument("roots", nargs="+", type=Path)
    commands.add_parser("warm")
    args = parser.parse_args(argv)
    if args.command == "warm":
        loaded = warm()
        print(f"bytecode written for {len(loaded)} modules loaded by {', '.join(SERVE_MODULES)}")
        return 0
    missing = [str(root) for root in args.roots if not root.is_dir()]
    if missing:
        print(f"error: not a directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    report = prune(args.roots) if args.command == "prune" else strip(args.roots)
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
