"""Settings come from SUBC_* variables, once; secrets never print."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from subconscious import services as services_module
from subconscious.settings import Settings, load_settings

SECRET = "test-secret-never-logged"  # set by the autouse fixture in tests/conftest.py


def test_presign_expiry_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBC_PRESIGN_EXPIRY_S", "120")
    assert load_settings().presign_expiry_s == 120


def test_defaults() -> None:
    settings = Settings()
    assert settings.presign_expiry_s == 3600
    assert settings.margin_percent == 30
    assert settings.max_live_runs == 4
    assert settings.max_spend_usd_per_hour == 20
    assert settings.providers == ("fake",)  # SUBC_PROVIDERS='["fake"]'
    assert settings.idle_polls_before_teardown == 1


@pytest.mark.parametrize("value", ["59", "604801", "soon"])
def test_presign_expiry_bounds(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SUBC_PRESIGN_EXPIRY_S", value)
    with pytest.raises(ValidationError) as excinfo:
        Settings()
    assert [e["loc"] for e in excinfo.value.errors()] == [("presign_expiry_s",)]


def test_settings_are_read_once_per_cold_start(monkeypatch: pytest.MonkeyPatch) -> None:
    first = services_module.services().settings
    monkeypatch.setenv("SUBC_PRESIGN_EXPIRY_S", "300")
    assert services_module.services().settings is first
    assert services_module.services().settings.presign_expiry_s == 3600
    services_module.reset()  # a new cold start
    assert services_module.services().settings.presign_expiry_s == 300


def test_machine_auth_secret_is_a_secret() -> None:
    settings = load_settings()
    assert isinstance(settings.machine_auth_secret, SecretStr)
    assert settings.machine_auth_secret.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert SECRET not in repr(settings.machine_auth_secret)
    assert SECRET not in settings.model_dump_json()


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.presign_expiry_s = 61  # type: ignore[misc]


def test_settings_refuse_a_slice_that_cannot_end_inside_the_lambda() -> None:
    with pytest.raises(ValueError, match="exceeds the render step"):
        Settings(render_slice_s=800, renderer_request_timeout_s=60)
    assert Settings(render_slice_s=540, renderer_request_timeout_s=75).render_slice_s == 540
