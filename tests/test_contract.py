"""mlops_contract.py, the container contract's one home: the store protocol every image and the
program share, checked on real files and real processes; and its trip into the images' build
contexts (components/image_repo.py `ship_contract`)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import mlops_contract as contract
from components import image_repo
from components.image_repo import CONTRACT, context_tag, ship_contract


def test_atomic_write_replaces_whole_and_leaves_no_temp_file(tmp_path: Path):
    target = tmp_path / "models" / "CURRENT"
    contract.atomic_write(target, b"r1\n")
    contract.atomic_write(target, b"r2\n")
    assert target.read_bytes() == b"r2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["CURRENT"]


def test_a_failed_atomic_write_keeps_the_old_content(tmp_path: Path, monkeypatch):
    target = tmp_path / "decision.json"
    target.write_bytes(b"old")

    def refuse(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        contract.atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["decision.json"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b"../etc\n", "not a run id"),
        (b"\xff\xfe", "undecodable"),
        (b"r" * 300, "larger than"),
    ],
)
def test_a_damaged_current_is_named(tmp_path: Path, content: bytes, problem: str):
    (tmp_path / contract.CURRENT).write_bytes(content)
    with pytest.raises(contract.DamagedCurrent, match=problem):
        contract.read_current(tmp_path)


def test_current_reads_what_write_current_wrote(tmp_path: Path):
    assert contract.read_current(tmp_path) is None
    contract.write_current(tmp_path, "20261207T101500Z-abc")
    assert contract.read_current(tmp_path) == "20261207T101500Z-abc"
    with pytest.raises(ValueError, match="invalid run id"):
        contract.write_current(tmp_path, ".hidden")
    (tmp_path / contract.CURRENT).unlink()
    (tmp_path / contract.CURRENT).mkdir()
    with pytest.raises(contract.DamagedCurrent, match="not a regular file"):
        contract.read_current(tmp_path)


def test_the_gate_lock_excludes_another_process(tmp_path: Path):
    """Another process asking for the same POSIX record lock (as the platform's gate and the
    app's gate do) is refused while one gate holds it, and gets it once released."""
    probe = (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(tmp_path / contract.GATE_LOCK)!r}, os.O_RDWR)\n"
        "try:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except OSError:\n    sys.exit(3)\n"
    )
    with contract.gate_lock(tmp_path):
        held = subprocess.run([sys.executable, "-c", probe], check=False)
    free = subprocess.run([sys.executable, "-c", probe], check=False)
    assert (held.returncode, free.returncode) == (3, 0)


def test_sagemaker_environment_names_the_layout():
    assert contract.sagemaker_environment() == {"SM_MODEL_DIR": "/opt/ml/model"}
    assert contract.sagemaker_environment({"train": "x", "test": "y"}) == {
        "SM_MODEL_DIR": "/opt/ml/model",
        "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
        "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
        "SM_CHANNEL_TEST": "/opt/ml/input/data/test",
    }


# --- into the images ------------------------------------------------------------------------------


def test_the_contract_is_shipped_into_the_projects_own_contexts_only(tmp_path: Path, monkeypatch):
    app, platform, user = (tmp_path / name for name in ("app", "platform", "examples"))
    for directory in (app, platform, user):
        directory.mkdir()
    monkeypatch.setattr(image_repo, "CONTRACT_CONTEXTS", (app, platform))
    for directory in (app, platform, user):
        ship_contract(directory)
    assert (app / CONTRACT.name).read_bytes() == CONTRACT.read_bytes()
    assert (platform / CONTRACT.name).read_bytes() == CONTRACT.read_bytes()
    assert not (user / CONTRACT.name).exists()


def test_the_release_tag_follows_the_contract(tmp_path: Path, monkeypatch):
    """The contract is part of what the app image runs: a change to it is a new image."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text("FROM scratch\n")
    source = tmp_path / "mlops_contract.py"
    source.write_text("A = 1\n")
    monkeypatch.setattr(image_repo, "CONTRACT_CONTEXTS", (app,))
    monkeypatch.setattr(image_repo, "CONTRACT", source)
    before = context_tag(app, "cpu")
    source.write_text("A = 2\n")
    assert context_tag(app, "cpu") != before
    assert (app / "mlops_contract.py").read_text() == "A = 2\n"
