"""The sender's and sandboxes' settings: parsed, validated, and refused with the variable's name."""

from __future__ import annotations

import pytest

from base.exceptions import SettingsError
from base.settings import Settings
from connectors.sandbox.run import configs


def test_sender_defaults_follow_the_documented_limits() -> None:
    settings = Settings.from_env({})
    assert settings.sender_metrics_port == 6068
    assert (settings.sender_rate_per_s, settings.sender_burst) == (80.0, 20)
    assert settings.sender_fallback_template == "whatsup_update"
    assert (settings.sandbox_meta_port, settings.sandbox_twilio_port) == (6070, 6071)


def test_twilio_content_sids_and_callback_urls_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "WHATSUP_TWILIO_CONTENT_SIDS": "eta_changed:pt_BR=HX1, whatsup_update=HX2",
            "WHATSUP_TWILIO_STATUS_CALLBACK_URL": "https://ops.example/webhooks/twilio",
        }
    )
    assert settings.twilio_content_sids == {"eta_changed:pt_BR": "HX1", "whatsup_update": "HX2"}
    assert settings.twilio_status_callback_url == "https://ops.example/webhooks/twilio"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WHATSUP_TWILIO_CONTENT_SIDS", "eta_changed=XX1"),
        ("WHATSUP_SANDBOX_CALLBACK_URL", "ftp://x"),
        ("WHATSUP_SENDER_RATE_PER_S", "0"),
        ("WHATSUP_SENDER_MAX_ATTEMPTS", "0"),
        ("WHATSUP_SENDER_METRICS_PORT", "70000"),
        ("WHATSUP_SANDBOX_CALLBACKS", "sometimes"),
    ],
)
def test_bad_sender_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_the_confirmation_wait_must_outlast_a_request() -> None:
    with pytest.raises(SettingsError, match="WHATSUP_SENDER_CONFIRM_WAIT_S"):
        Settings.from_env({"WHATSUP_SENDER_CONFIRM_WAIT_S": "5", "WHATSUP_SENDER_TIMEOUT_S": "10"})


def test_the_sandbox_needs_the_credentials_the_sender_uses() -> None:
    with pytest.raises(SettingsError, match="WHATSUP_WHATSAPP_APP_SECRET"):
        configs(Settings.from_env({"WHATSUP_WHATSAPP_TOKEN": "t", "WHATSUP_WHATSAPP_PHONE_NUMBER_ID": "1"}))
    env = {
        "WHATSUP_WHATSAPP_TOKEN": "t",
        "WHATSUP_WHATSAPP_PHONE_NUMBER_ID": "1",
        "WHATSUP_WHATSAPP_APP_SECRET": "s",
        "WHATSUP_WEB_PORT": "7000",
    }
    meta, _ = configs(Settings.from_env(env))
    assert meta.callback_url == "http://127.0.0.1:7000/webhooks/whatsapp"
    meta, _ = configs(Settings.from_env({**env, "WHATSUP_SANDBOX_CALLBACKS": "off"}))
    assert meta.callback_url is None
