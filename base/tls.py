"""Encryption in transit, from the settings: HTTPS for the project's servers and its calls between them,
SSL or SASL_SSL for every Kafka client (librdkafka, aiokafka, Faust). Redis takes TLS from its URL
(``rediss://host:port/0?ssl_ca_certs=/path/ca.pem``), which redis-py reads itself.
"""

from __future__ import annotations

import ssl
from typing import Any

from base.settings import Settings


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """Return the TLS context the process's HTTP servers serve with, or None for plain HTTP."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


def scheme(settings: Settings) -> str:
    """Return ``https`` when the project's servers serve TLS, else ``http``."""
    return "https" if settings.tls_cert_file else "http"


def client_verify(settings: Settings) -> ssl.SSLContext | bool:
    """Return what an HTTP client calling the project's own servers verifies them with (httpx ``verify``)."""
    if settings.tls_ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(settings.tls_ca_file))


def kafka_context(settings: Settings) -> ssl.SSLContext | None:
    """Return the TLS context of an aiokafka or Faust client, or None on PLAINTEXT."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    cafile = str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None
    context = ssl.create_default_context(cafile=cafile)
    if settings.kafka_ssl_cert_file and settings.kafka_ssl_key_file:
        context.load_cert_chain(settings.kafka_ssl_cert_file, settings.kafka_ssl_key_file)
    return context


def librdkafka_config(settings: Settings) -> dict[str, Any]:
    """Return the security part of a confluent-kafka (librdkafka) client config."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    config: dict[str, Any] = {"security.protocol": protocol}
    if settings.kafka_ssl_ca_file:
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
    if settings.kafka_ssl_cert_file and settings.kafka_ssl_key_file:
        config["ssl.certificate.location"] = str(settings.kafka_ssl_cert_file)
        config["ssl.key.location"] = str(settings.kafka_ssl_key_file)
    if protocol == "SASL_SSL":
        config.update(
            {
                "sasl.mechanism": settings.kafka_sasl_mechanism,
                "sasl.username": settings.kafka_sasl_username,
                "sasl.password": settings.kafka_sasl_password,
            }
        )
    return config


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    """Return the security keyword arguments of an aiokafka client."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    config: dict[str, Any] = {"security_protocol": protocol, "ssl_context": kafka_context(settings)}
    if protocol == "SASL_SSL":
        config.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return config
