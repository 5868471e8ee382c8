"""Model files are verified, then loaded where a crash cannot hurt
(`app.forecasting.model_check`)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from app.forecasting import model_check
from app.forecasting.model import Forecaster, ModelLoadError
from app.forecasting.model_check import (
    PROBE_FILE,
    check_run,
    library_versions,
    load_checked,
    plausible_range,
)
from app.pipeline.train import train
from app.store import Store
from tests.app.conftest import FIRST_RUN
from tests.app.helpers import PATIENCE, REPO_ROOT, replace_model


@pytest.fixture
def run_dir(trained_store: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run-copy"
    shutil.copytree(Store(trained_store).run_dir(FIRST_RUN), target)
    return target


def load_in_a_subprocess(run_dir: Path) -> subprocess.CompletedProcess:
    """`Forecaster.load` in a process of its own, as every loader did before the check."""
    code = "import sys; from app.forecasting.model import Forecaster; Forecaster.load(sys.argv[1])"
    return subprocess.run(
        [sys.executable, "-c", code, str(run_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=PATIENCE,
    )


def test_train_records_the_model_files_sha256_size_and_history_range(run_dir: Path) -> None:
    metrics = orjson.loads((run_dir / "metrics.json").read_bytes())
    raw = (run_dir / "model.ubj").read_bytes()
    assert metrics["model_file"] == {
        "name": "model.ubj",
        "bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
    # The shipped series spans 313..374 ppm: half its lowest to twice its highest value, within
    # its descriptor's physical bounds, 250..500 ppm (app/data/co2_weekly.series.json).
    low, high = plausible_range(metrics)
    assert (low, high) == (250.0, 500.0)


def test_an_empty_model_file_aborts_the_process_that_loads_it(run_dir: Path) -> None:
    """The defect: XGBoost aborts inside the library, so no try/except can catch it."""
    replace_model(run_dir, b"")
    assert load_in_a_subprocess(run_dir).returncode < 0


def test_an_empty_model_file_only_costs_the_probe_process(run_dir: Path) -> None:
    replace_model(run_dir, b"")
    with pytest.raises(ModelLoadError, match=r"model\.ubj: loading it killed the probe process"):
        check_run(run_dir)


def test_a_model_file_changed_after_training_is_refused_before_xgboost_reads_it(
    run_dir: Path,
) -> None:
    raw = bytearray((run_dir / "model.ubj").read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit, same size: XGBoost might load it silently
    replace_model(run_dir, bytes(raw), record=False)
    with pytest.raises(ModelLoadError, match="does not match the sha256 recorded by train"):
        Forecaster.load(run_dir)
    with pytest.raises(ModelLoadError, match="does not match the sha256 recorded by train"):
        check_run(run_dir)


def test_a_truncated_model_file_is_refused_by_size(run_dir: Path) -> None:
    (run_dir / "model.ubj").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"model\.ubj is 0 bytes, \d+ were recorded"):
        check_run(run_dir)


def test_a_run_without_a_recorded_checksum_is_refused(run_dir: Path) -> None:
    metrics = orjson.loads((run_dir / "metrics.json").read_bytes())
    del metrics["model_file"]
    (run_dir / "metrics.json").write_bytes(orjson.dumps(metrics))
    with pytest.raises(ModelLoadError, match="records no model_file sha256 and size"):
        load_checked(run_dir)


def test_a_good_run_loads_after_its_probe(run_dir: Path) -> None:
    forecaster = load_checked(run_dir)
    assert forecaster.run_id == run_dir.name


@pytest.fixture
def harmonic_run(store_copy: Store) -> Path:
    """A run of the harmonic family (`model.json`), trained on the shipped data."""
    train(store_copy, "harmonic", rounds=1, log_every=1, threads=2, family="harmonic")
    return store_copy.run_dir("harmonic")


def test_a_harmonic_run_records_its_model_json_and_range_and_loads_after_its_probe(
    harmonic_run: Path,
) -> None:
    metrics = orjson.loads((harmonic_run / "metrics.json").read_bytes())
    raw = (harmonic_run / "model.json").read_bytes()
    assert metrics["family"] == "harmonic"
    assert metrics["model_file"] == {
        "name": "model.json",
        "bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
    low, high = plausible_range(metrics)
    assert (low, high) == (250.0, 500.0)
    assert load_checked(harmonic_run).family == "harmonic"


def test_a_harmonic_model_json_changed_after_training_is_refused(harmonic_run: Path) -> None:
    """Valid JSON with other settings would load and silently change every forecast."""
    model = orjson.loads((harmonic_run / "model.json").read_bytes())
    model["params"]["level_weeks"] += 1
    replace_model(harmonic_run, orjson.dumps(model), record=False)
    with pytest.raises(ModelLoadError, match=r"model\.json does not match the sha256"):
        check_run(harmonic_run)
    with pytest.raises(ModelLoadError, match=r"model\.json does not match the sha256"):
        Forecaster.load(harmonic_run)


def test_a_record_naming_another_familys_file_is_refused(harmonic_run: Path) -> None:
    metrics = orjson.loads((harmonic_run / "metrics.json").read_bytes())
    metrics["model_file"]["name"] = "model.ubj"
    (harmonic_run / "metrics.json").write_bytes(orjson.dumps(metrics))
    with pytest.raises(ModelLoadError, match=r"records the model file 'model\.ubj'"):
        check_run(harmonic_run)


def _no_child(*args: object, **kwargs: object) -> None:
    raise AssertionError("a probe process was started")


def test_the_gate_records_the_probe_it_passed(run_dir: Path) -> None:
    """trained_store's run-a was promoted by `decide`, whose probe wrote probe.json."""
    record = orjson.loads((run_dir / PROBE_FILE).read_bytes())
    raw = (run_dir / "model.ubj").read_bytes()
    assert record["model_file"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert record["model_file"]["bytes"] == len(raw)
    assert record["versions"]["xgboost"] == __import__("xgboost").__version__
    assert record["versions"] == library_versions()


def test_a_proven_file_loads_without_a_probe_process(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_check, "check_run", _no_child)
    checks: list[str] = []
    forecaster = load_checked(run_dir, on_check=checks.append)
    assert checks == ["recorded"]
    assert forecaster.run_id == run_dir.name


def test_a_file_changed_after_its_probe_is_probed_again(run_dir: Path) -> None:
    """Damaged before hashing (metrics.json agrees with the new bytes): only the bytes differ
    from probe.json's, and the probe process takes the abort, not this one."""
    replace_model(run_dir, b"")
    checks: list[str] = []
    with pytest.raises(ModelLoadError, match="killed the probe process"):
        load_checked(run_dir, on_check=checks.append)
    assert checks == ["probe"]


def test_a_probe_from_other_library_versions_is_probed_again(run_dir: Path) -> None:
    record = orjson.loads((run_dir / PROBE_FILE).read_bytes())
    record["versions"]["xgboost"] = "1.0.0"
    (run_dir / PROBE_FILE).write_bytes(orjson.dumps(record))
    checks: list[str] = []
    load_checked(run_dir, on_check=checks.append)
    assert checks == ["probe"]
