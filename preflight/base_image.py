"""Base images without a registry: Debian bookworm from Debian's own packages, as a Docker image.

    python -m preflight.base_image              # builds mlops-base:bookworm unless it exists
    python -m preflight.base_image --rebuild

`app/Dockerfile` starts from `python:3.12-slim-bookworm` (cpu) and `nvidia/cuda:…` (gpu). Where no
container registry is reachable (this project's CI), those cannot be pulled; this module makes a
stand-in with `debootstrap` (bookworm, `minbase`, plus `python3`, `python3-venv`,
`python-is-python3` for the `python` command the Dockerfile runs, and `ca-certificates`) and
`docker import`s it. Both flavours then build with `--build-arg PYTHON_IMAGE=mlops-base:bookworm
--build-arg CUDA_IMAGE=mlops-base:bookworm`. The gpu flavour's CUDA libraries come from the
CUDA-enabled xgboost wheel's dependencies, not from the base, so it builds and runs on the CPU.

The host's own extra CA certificates (`/usr/local/share/ca-certificates/*.crt`, where a proxy or
a company CA is installed) are added to the image's bundle, and pip is pointed at that bundle (pip
otherwise trusts only its vendored certifi): the image build downloads packages through whatever
the host trusts.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BASE_IMAGE = "mlops-base:bookworm"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
PIP_CONF = "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"


class BaseImageError(RuntimeError):
    """The base image could not be built; the message names the missing tool or failed step."""


def image_exists(tag: str) -> bool:
    result = subprocess.run(
        ["docker", "image", "inspect", tag], capture_output=True, text=True, check=False
    )
    return result.returncode == 0


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise BaseImageError(f"{what} failed (exit {result.returncode}):\n{tail}")


def build(tag: str = BASE_IMAGE, rebuild: bool = False) -> str:
    """Build `tag` from Debian packages unless it exists; return the tag."""
    if not rebuild and image_exists(tag):
        return tag
    for tool, package in (("debootstrap", "debootstrap"), ("docker", "docker.io")):
        if shutil.which(tool) is None:
            raise BaseImageError(f"{tool} not found: apt-get install {package}")
    with tempfile.TemporaryDirectory(prefix="mlops-base-") as scratch:
        root = Path(scratch) / "rootfs"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                MIRROR,
            ],
            f"debootstrap {SUITE}",
        )
        extra = sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []
        if extra:
            target = root / HOST_CA_DIR.relative_to("/")
            target.mkdir(parents=True, exist_ok=True)
            for certificate in extra:
                shutil.copy2(certificate, target / certificate.name)
            _run(["chroot", str(root), "update-ca-certificates"], "update-ca-certificates")
        (root / "etc/pip.conf").write_text(PIP_CONF)
        # No apt caches or lists in the image; the Dockerfile runs `apt-get update` itself.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (root / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [
                "docker",
                "import",
                "-c",
                "ENV LANG=C.UTF-8",
                "-c",
                'CMD ["/bin/bash"]',
                "-",
                tag,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        tar.wait()
        if tar.returncode or imported.returncode:
            raise BaseImageError(f"docker import failed: {imported.stderr.strip()}")
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m preflight.base_image", description=__doc__)
    parser.add_argument("--tag", default=BASE_IMAGE)
    parser.add_argument("--rebuild", action="store_true", help="build even if the tag exists")
    args = parser.parse_args(argv)
    try:
        print(build(args.tag, args.rebuild))
    except BaseImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
