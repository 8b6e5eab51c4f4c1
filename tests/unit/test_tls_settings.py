"""Encryption settings: validated at start-up, and turned into each Kafka client's own configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from base.exceptions import SettingsError
from base.settings import Settings
from base.tls import aiokafka_config, client_verify, librdkafka_config, scheme, server_context


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    settings = Settings.from_env({})
    assert librdkafka_config(settings) == {} and aiokafka_config(settings) == {}
    assert scheme(settings) == "http" and server_context(settings) is None and client_verify(settings) is True


def test_sasl_ssl_reaches_both_kafka_clients(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")  # read by the clients when they connect, not here
    settings = Settings.from_env(
        {
            "WHATSUP_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "WHATSUP_KAFKA_SASL_MECHANISM": "plain",
            "WHATSUP_KAFKA_SASL_USERNAME": "whatsup",
            "WHATSUP_KAFKA_SASL_PASSWORD": "s3cret",
        }
    )
    assert librdkafka_config(settings) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "whatsup",
        "sasl.password": "s3cret",
    }
    aio = aiokafka_config(settings)
    assert (aio["security_protocol"], aio["sasl_mechanism"], aio["sasl_plain_password"]) == (
        "SASL_SSL",
        "PLAIN",
        "s3cret",
    )
    assert aio["ssl_context"] is not None
    assert settings.redacted()["kafka_sasl_password"] == "<set>"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WHATSUP_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "must be one of PLAINTEXT, SSL, SASL_SSL"),
        ({"WHATSUP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs WHATSUP_KAFKA_SASL_USERNAME"),
        ({"WHATSUP_KAFKA_SASL_MECHANISM": "GSSAPI"}, "must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
        ({"WHATSUP_TLS_CERT_FILE": "/etc/hosts"}, "go together"),
        ({"WHATSUP_TLS_CA_FILE": "/nonexistent/ca.pem"}, "is not a file"),
    ],
)
def test_a_bad_encryption_setting_stops_the_process_with_the_reason(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)
