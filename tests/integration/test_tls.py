"""The pipeline encrypted in transit: every HTTP server on HTTPS, every Kafka client on SSL or SASL_SSL,
Redis over TLS, against a broker and a Redis of this test's own with a throw-away CA.

Over SSL, a ping posted over HTTPS to the intake goes through the worker (Faust on SSL) to a row the sink
(librdkafka on SSL) wrote, read back through the sink's HTTPS query endpoint; the console serves HTTPS and
keeps its sign-in throttle in Redis over TLS. Over SASL_SSL, the worker (Faust SASL) judges a ping, and the
sender (aiokafka SASL) delivers a message to the Meta sandbox and reports its status. A plain-HTTP request,
a client that does not trust the CA and a wrong SASL password are each refused.
"""

from __future__ import annotations

import secrets
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from base import topics
from base.kafka import client_config, create_topics
from base.settings import Settings
from base.tokens import issue_driver_token
from loadtest.certs import Authority, make_authority
from loadtest.processes import Process
from sinks.query import run_query
from tests.integration.sender_stack import outbound, produce_outbound, sender_env
from tests.integration.stack import free_port, read_topic, wait_until
from tests.integration.tls_stack import SASL_USER, TlsBroker, tls_broker, tls_redis


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return make_authority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, authority: Authority) -> Iterator[TlsBroker]:
    with tls_broker(tmp_path_factory.mktemp("kafka-tls"), authority, secrets.token_hex(12)) as running:
        yield running


@pytest.fixture(scope="module")
def redis_tls(tmp_path_factory: pytest.TempPathFactory, authority: Authority) -> Iterator[str]:
    with tls_redis(tmp_path_factory.mktemp("redis-tls"), authority) as url:
        yield url


def encrypted_env(stack_env: dict[str, str], authority: Authority, redis_url: str) -> dict[str, str]:
    """The test's environment with HTTPS servers, Redis over TLS and every port its own."""
    return {
        **stack_env,
        "WHATSUP_REDIS_URL": redis_url,
        "WHATSUP_KAFKA_SSL_CA_FILE": str(authority.ca),
        "WHATSUP_TLS_CERT_FILE": str(authority.cert),
        "WHATSUP_TLS_KEY_FILE": str(authority.key),
        "WHATSUP_TLS_CA_FILE": str(authority.ca),
        "WHATSUP_INGEST_PORT": str(free_port()),
        "WHATSUP_SINK_PORT": str(free_port()),
        "WHATSUP_CONSOLE_PORT": str(free_port()),
        "WHATSUP_SENDER_METRICS_PORT": str(free_port()),
        "WHATSUP_LOG_LEVEL": "INFO",
    }


def started(
    roles: list[tuple[str, str]], env: dict[str, str], authority: Authority, where: Path
) -> list[Process]:
    """Start ``(role, port setting)`` processes on ``env`` and wait for each one's HTTPS health check."""
    processes = []
    try:
        for role, port in roles:
            url = f"https://127.0.0.1:{env[port]}/health"
            process = Process(role, role, env, url, where, verify=authority.context())
            processes.append(process)
            process.start()
            process.wait_healthy(120)
    except BaseException:
        for process in processes:
            process.stop()
        raise
    return processes


def post_pings(
    url: str, secret: str, driver: str, verify: ssl.SSLContext | bool, n: int = 5
) -> httpx.Response:
    now = int(time.time() * 1000)
    pings = [
        {"ping_id": f"{driver}-{i}", "ts": now - (n - i) * 5000, "lat": -23.55 + i * 1e-4, "lon": -46.63}
        for i in range(n)
    ]
    token = issue_driver_token(secret, driver, 600)
    return httpx.post(
        f"{url}/v1/pings",
        json={"pings": pings},
        headers={"Authorization": f"Bearer {token}"},
        verify=verify,
        timeout=10,
    )


def test_over_ssl_a_ping_crosses_https_kafka_and_the_sink_and_redis_speaks_tls(
    stack_env: dict[str, str], broker: TlsBroker, redis_tls: str, authority: Authority, tmp_path: Path
) -> None:
    env = {
        **encrypted_env(stack_env, authority, redis_tls),
        "WHATSUP_KAFKA_BOOTSTRAP": broker.ssl,
        "WHATSUP_KAFKA_SECURITY_PROTOCOL": "SSL",
        "WHATSUP_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
        "WHATSUP_SINK_FLUSH_INTERVAL_S": "0.2",
    }
    settings = Settings.from_env(env)
    assert create_topics(settings)  # the admin client over SSL
    roles = [
        ("sink", "WHATSUP_SINK_PORT"),
        ("worker", "WHATSUP_WEB_PORT"),
        ("ingest", "WHATSUP_INGEST_PORT"),
        ("console", "WHATSUP_CONSOLE_PORT"),
    ]
    processes = started(roles, env, authority, tmp_path)
    try:
        ingest = f"https://127.0.0.1:{env['WHATSUP_INGEST_PORT']}"
        assert settings.token_secret is not None
        answer = post_pings(ingest, settings.token_secret, "tls-driver", authority.context())
        assert answer.status_code == 202, answer.text
        sql = "SELECT count() AS n FROM gps_pings WHERE driver_id = 'tls-driver'"
        wait_until(lambda: int(run_query(settings, sql)[0]["n"]) == 5, "five rows through the HTTPS query")

        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            post_pings(
                ingest, settings.token_secret, "tls-driver", True
            )  # a client that does not trust the CA
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{env['WHATSUP_INGEST_PORT']}/health", timeout=5)  # plain HTTP

        console = f"https://127.0.0.1:{env['WHATSUP_CONSOLE_PORT']}"
        login = {"name": "nobody", "password": "wrong-password", "code": "000000"}
        refused = httpx.post(f"{console}/auth/login", json=login, verify=authority.context(), timeout=10)
        assert refused.status_code == 401, refused.text
        client = redis.Redis.from_url(redis_tls)
        assert list(client.scan_iter(match=f"{settings.topic_prefix}*failures*"))  # the throttle, over TLS
        client.close()
    finally:
        for process in reversed(processes):
            process.stop()


def test_over_sasl_ssl_the_worker_judges_a_ping_and_the_sender_delivers(
    stack_env: dict[str, str], broker: TlsBroker, redis_tls: str, authority: Authority, tmp_path: Path
) -> None:
    env = sender_env(
        {
            **encrypted_env(stack_env, authority, redis_tls),
            "WHATSUP_KAFKA_BOOTSTRAP": broker.sasl_ssl,
            "WHATSUP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "WHATSUP_KAFKA_SASL_MECHANISM": "PLAIN",
            "WHATSUP_KAFKA_SASL_USERNAME": SASL_USER,
            "WHATSUP_KAFKA_SASL_PASSWORD": broker.password,
        }
    )
    settings = Settings.from_env(env)
    create_topics(settings)
    wrong = Settings.from_env({**env, "WHATSUP_KAFKA_SASL_PASSWORD": "not-the-password"})
    with pytest.raises(KafkaException):
        AdminClient(client_config(wrong)).list_topics(timeout=10)

    sandbox = Process(
        "sandbox", "sandbox", env, f"http://127.0.0.1:{env['WHATSUP_SANDBOX_META_PORT']}/health", tmp_path
    )
    sandbox.start()
    processes = [sandbox]
    try:
        sandbox.wait_healthy(60)
        processes += started(
            [("worker", "WHATSUP_WEB_PORT"), ("sender", "WHATSUP_SENDER_METRICS_PORT")],
            env,
            authority,
            tmp_path,
        )
        worker = f"https://127.0.0.1:{env['WHATSUP_WEB_PORT']}"
        assert settings.token_secret is not None
        assert (
            post_pings(worker, settings.token_secret, "sasl-driver", authority.context()).status_code == 202
        )
        clean = topics.qualified(topics.GPS_PINGS_CLEAN, settings.topic_prefix)
        judged = read_topic(settings, clean, "CleanPing", until=lambda records: len(records) >= 5)
        assert {record.value["driver_id"] for record in judged} == {"sasl-driver"}

        produce_outbound(settings, [outbound("sasl-msg-1", "+5511987650001")])
        wait_until(lambda: len(sandbox_messages_of(env)) == 1, "the message at the Meta sandbox")
        status = topics.qualified(topics.WHATSAPP_STATUS, settings.topic_prefix)
        statuses = read_topic(settings, status, "MessageStatus", until=lambda records: len(records) >= 1)
        assert statuses[0].value["message_key"] == "sasl-msg-1"
    finally:
        for process in reversed(processes):
            process.stop()


def sandbox_messages_of(env: dict[str, str]) -> list[dict[str, Any]]:
    answer = httpx.get(f"http://127.0.0.1:{env['WHATSUP_SANDBOX_META_PORT']}/_sandbox/messages", timeout=5)
    messages: list[dict[str, Any]] = answer.json()["messages"]
    return messages
