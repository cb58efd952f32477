"""The secrets' public development defaults are refused outside a development setup."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from infra.settings import ConfigurationError, Settings, get_settings

POSTGRES = "postgresql://clientele:pw@127.0.0.1:1/clientele"
SECRETS = ("CLIENTELE_MASTER_KEYS", "CLIENTELE_SEAL_KEY", "CLIENTELE_INDEX_KEY")
OWN = {
    "CLIENTELE_MASTER_KEYS": "k1:" + base64.b64encode(b"m" * 32).decode(),
    "CLIENTELE_SEAL_KEY": "our-own-seal-key-7f3a",
    "CLIENTELE_INDEX_KEY": "our-own-index-key-91c2",
}


@pytest.fixture
def undeclared(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No CLIENTELE_ENV (the tests' conftest declares dev), settings read afresh."""
    monkeypatch.delenv("CLIENTELE_ENV")
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_the_embedded_default_is_a_development_setup(
    undeclared: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}")
    assert settings.dev_mode and settings.env is None


@pytest.mark.parametrize(
    "where", [{"database_url": POSTGRES}, {"kafka_bootstrap": "127.0.0.1:9092"}]
)
def test_full_mode_without_dev_refuses_every_default_secret_by_name(
    undeclared: pytest.MonkeyPatch, where: dict[str, str]
) -> None:
    for name, value in where.items():
        undeclared.setenv(f"CLIENTELE_{name.upper()}", value)
    with pytest.raises(ConfigurationError) as refused:
        get_settings()
    for name in SECRETS:
        assert name in str(refused.value)
    assert "CLIENTELE_ENV=dev" in str(refused.value)


def test_only_the_secrets_left_at_their_default_are_named_never_a_value(
    undeclared: pytest.MonkeyPatch,
) -> None:
    undeclared.setenv("CLIENTELE_DATABASE_URL", POSTGRES)
    undeclared.setenv("CLIENTELE_MASTER_KEYS", OWN["CLIENTELE_MASTER_KEYS"])
    with pytest.raises(ConfigurationError) as refused:
        get_settings()
    message = str(refused.value)
    assert "CLIENTELE_SEAL_KEY" in message and "CLIENTELE_INDEX_KEY" in message
    assert "CLIENTELE_MASTER_KEYS" not in message
    assert OWN["CLIENTELE_MASTER_KEYS"] not in message and "pw@" not in message


def test_declared_production_refuses_defaults_even_on_sqlite(
    undeclared: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    undeclared.setenv("CLIENTELE_ENV", "production")
    undeclared.setenv("CLIENTELE_DATABASE_URL", f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(ConfigurationError, match="CLIENTELE_MASTER_KEYS"):
        get_settings()


def test_own_secrets_or_declared_dev_are_accepted(undeclared: pytest.MonkeyPatch) -> None:
    undeclared.setenv("CLIENTELE_DATABASE_URL", POSTGRES)
    for name, value in OWN.items():
        undeclared.setenv(name, value)
    assert not get_settings().dev_mode
    assert Settings(env="dev", master_keys=Settings.model_fields["master_keys"].default)


def test_the_cli_says_which_setting_and_exits_2_without_a_traceback(
    undeclared: pytest.MonkeyPatch,
) -> None:
    undeclared.setenv("CLIENTELE_DATABASE_URL", POSTGRES)
    undeclared.setenv("CLIENTELE_SEAL_KEY", OWN["CLIENTELE_SEAL_KEY"])
    result = CliRunner().invoke(app, ["projections", "status"])
    assert result.exit_code == 2
    assert "configuration error: CLIENTELE_MASTER_KEYS, CLIENTELE_INDEX_KEY" in result.output
    assert "Traceback" not in result.output and OWN["CLIENTELE_SEAL_KEY"] not in result.output


def test_a_newcomer_migrates_the_embedded_default_without_declaring_anything(
    undeclared: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    undeclared.setenv("CLIENTELE_DATABASE_URL", f"sqlite:///{tmp_path / 'c.db'}")
    undeclared.setenv("CLIENTELE_LOG_JSON", "false")
    result = CliRunner().invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
