"""Settings: defaults for the local stack, and a clear error naming any bad variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from base.exceptions import SettingsError
from base.settings import PROJECT_ROOT, Settings
from streams.cli import main


def test_defaults_point_at_the_local_stack_and_embedded_clickhouse() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.redis_url == "redis://127.0.0.1:6390/0"
    assert settings.clickhouse_url == f"chdb://{PROJECT_ROOT / 'var' / 'clickhouse'}"
    assert settings.data_dir == PROJECT_ROOT / "var"
    assert settings.token_secret is None


def test_values_are_parsed_by_type() -> None:
    settings = Settings.from_env(
        {
            "WHATSUP_KAFKA_BOOTSTRAP": "k1:9092, k2:9093",
            "WHATSUP_PARTITIONS": "12",
            "WHATSUP_STALL_RADIUS_M": "75.5",
            "WHATSUP_METRICS_ENABLED": "off",
            "WHATSUP_DATA_DIR": "/srv/whatsup",
            "WHATSUP_API_KEYS": "k" * 16 + ":dispatcher|partner," + "z" * 20 + ":partner",
            "WHATSUP_CLICKHOUSE_URL": "https://ch.example:8443/whatsup",
        }
    )
    assert settings.kafka_bootstrap == "k1:9092,k2:9093"
    assert settings.partitions == 12
    assert settings.stall_radius_m == 75.5
    assert settings.metrics_enabled is False
    assert settings.data_dir == Path("/srv/whatsup")
    assert settings.api_keys == {
        "k" * 16: frozenset({"dispatcher", "partner"}),
        "z" * 20: frozenset({"partner"}),
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WHATSUP_PARTITIONS", "six"),
        ("WHATSUP_PARTITIONS", "0"),
        ("WHATSUP_WEB_PORT", "70000"),
        ("WHATSUP_KAFKA_BOOTSTRAP", "localhost"),
        ("WHATSUP_CLICKHOUSE_URL", "mysql://x"),
        ("WHATSUP_REDIS_URL", "http://x"),
        ("WHATSUP_STALL_MINUTES", "nan"),
        ("WHATSUP_METRICS_ENABLED", "maybe"),
        ("WHATSUP_LOG_LEVEL", "chatty"),
        ("WHATSUP_TOKEN_SECRET", "too-short-to-resist-brute-force"),
    ],
)
def test_a_malformed_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_an_unknown_variable_is_refused_so_typos_do_not_pass_silently() -> None:
    with pytest.raises(SettingsError, match="WHATSUP_KAFKA_BOOTSTRP"):
        Settings.from_env({"WHATSUP_KAFKA_BOOTSTRP": "x:1"})


def test_secrets_never_appear_in_errors_or_redacted_output() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"WHATSUP_API_KEYS": "short-secret-key"})
    assert "short-secret-key" not in str(caught.value)
    shown = Settings.from_env({"WHATSUP_TOKEN_SECRET": "s3cr3t-value-" + "x" * 32}).redacted()
    assert shown["token_secret"] == "<set>"
    assert "s3cr3t-value" not in repr(shown)


def test_the_command_stops_with_the_variables_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WHATSUP_PARTITIONS", "lots")
    monkeypatch.setattr("base.settings._current", None)
    assert main(["settings"]) == 78
    assert "WHATSUP_PARTITIONS='lots' is malformed" in capsys.readouterr().err


def test_the_sender_without_credentials_names_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WHATSUP_WHATSAPP_TOKEN", raising=False)
    monkeypatch.setenv("WHATSUP_METRICS_ENABLED", "0")
    monkeypatch.setattr("base.settings._current", None)
    assert main(["sender"]) == 78
    assert "WHATSUP_WHATSAPP_TOKEN" in capsys.readouterr().err


def test_passwords_inside_urls_are_masked() -> None:
    shown = Settings.from_env(
        {"WHATSUP_CLICKHOUSE_URL": "http://whatsup:pa55word@ch:8123/whatsup"}
    ).redacted()
    assert shown["clickhouse_url"] == "http://whatsup:<set>@ch:8123/whatsup"
