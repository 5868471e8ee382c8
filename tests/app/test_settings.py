"""Settings from the environment, and the `python -m app` command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.__main__ import main as app_main
from app.settings import AppSettings, SettingsError, load_settings
from tests.app.helpers import run_app


def test_defaults_match_the_documented_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STORE_DIR", "PORT", "RUN_ID", "PROMOTE_MARGIN", "TRAIN_ROUNDS"):
        monkeypatch.delenv(name, raising=False)
    settings = AppSettings()
    assert settings.store_dir == Path(".mlops-store")
    assert settings.port == 8080
    assert settings.dashboard_port == 8050
    assert settings.store_wait_seconds == 60
    assert settings.promote_margin == 0.0
    assert settings.forecast_horizon == 26
    assert settings.run_id is None
    assert len(settings.run_id_or_new()) == len("20261122T010203Z")


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("RUN_ID", "nightly-42")
    monkeypatch.setenv("RUN_DATE", "2001-06-30")
    settings = load_settings()
    assert settings.port == 9000
    assert settings.run_id_or_new() == "nightly-42"
    assert settings.run_date.isoformat() == "2001-06-30"


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("PORT", "eighty", "valid integer"),
        ("PORT", "70000", "less than or equal to 65535"),
        ("LOG_LEVEL", "LOUD", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ("PROMOTE_MARGIN", "-0.1", "greater than or equal to 0"),
        ("RUN_ID", "../escape", "should match pattern"),
        ("RUN_DATE", "yesterday", "valid date"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    name: str,
    value: str,
    allowed: str,
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{name}={value!r}" in err
    assert allowed in err


def test_bad_setting_exits_2_without_traceback(tmp_path: Path) -> None:
    result = run_app("validate", store_root=tmp_path, PORT="abc")
    assert result.returncode == 2
    assert "invalid environment variable PORT='abc'" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_command_prints_usage_and_exits_2(capsys: pytest.CaptureFixture) -> None:
    assert app_main(["fly"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'fly'" in err
    assert "usage: python -m app <command>" in err
    assert app_main([]) == 2
