"""Local stand-ins for the task definitions' `secrets`: run_local never reads AWS."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from preflight.offline import ROOT
from preflight.run_local.docker import RunLocalError
from preflight.run_local.task import SECRET_ENV_PREFIX, SECRETS_FILE

DEFAULT_SECRETS = ROOT / SECRETS_FILE
"""`NAME=value` per line, at the repository root (git ignores it)."""


def load_secrets(path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The local stand-ins for the `secrets` ECS would fetch from Secrets Manager or SSM: the
    file's `NAME=value` lines (blank lines and `#` comments skipped; one pair of surrounding
    quotes removed), then `RUN_LOCAL_SECRET_<NAME>` variables over them. run_local never asks
    AWS, never prints a value and never writes one anywhere: Docker reads each from its own
    environment (`docker run --env NAME`), so the values stay off command lines too."""
    values: dict[str, str] = {}
    if path.is_file():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            name, sep, value = text.partition("=")
            name = name.strip().removeprefix("export ").strip()
            if not sep or not name.isidentifier():
                raise RunLocalError(f"{path}:{number}: not a NAME=value line (value not shown)")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[name] = value
    for key, value in environ.items():
        if key.startswith(SECRET_ENV_PREFIX) and key != SECRET_ENV_PREFIX:
            values[key.removeprefix(SECRET_ENV_PREFIX)] = value
    return values
