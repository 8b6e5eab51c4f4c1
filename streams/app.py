"""The one Faust app of the pipeline, its topic handles, and its health page.

Agents live next to their pure core (``streams/pings/agents.py`` ...) and are found by autodiscovery.
Every agent runs with concurrency 1: with more, faust-streaming can commit an offset past a message that
another actor of the same agent has not finished (faust-streaming issue 606).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import faust
import mode
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from base import tls, topics
from base.logs import logging_config, secret_values
from base.settings import Settings, get_settings
from streams import acks, shutdown
from streams.faust_codecs import faust_codec_name, register_faust_codecs

settings = get_settings()
register_faust_codecs()
acks.install()

AGENT_PACKAGES = [
    "streams.pings",
    "streams.deliveries",
    "streams.conversations",
    "streams.notify",
    "streams.web",
    "streams.telemetry",
]
# The packages each worker role discovers (WHATSUP_WORKER_ROLE): the agents, tables, timers and pages it
# runs. A split role's processes form a consumer group of their own (base.topics.worker_group_role).
ROLE_PACKAGES = {
    "all": AGENT_PACKAGES,
    "clean": ["streams.pings", "streams.telemetry"],
    "deliveries": [package for package in AGENT_PACKAGES if package != "streams.pings"],
}


# Coroutine functions started with the app, before table recovery (see App.on_start).
TASKS_FROM_START: list[Callable[[], Awaitable[None]]] = []


class Table(faust.Table):
    """A Faust table whose changelog is named after the deployment (the app id), not the process's group:
    every worker role, and the all-in-one worker, reads and writes the same changelog."""

    def _changelog_topic_name(self) -> str:
        return f"{settings.app_id}-{self.name}-changelog"


class App(faust.App):
    """The pipeline's Faust app: discovers the packages of its worker role only.

    Faust adds the app's origin (the ``streams`` package, detected from the command line when not set) to
    every discovery, which would import, and so register, every agent of every role.
    """

    def _discovery_modules(self) -> list[str]:
        return list(ROLE_PACKAGES[settings.worker_role])

    async def on_start(self) -> None:
        """Start the tasks that must run from the start, table recovery included (Faust starts its timers
        and tasks only once the first recovery has completed)."""
        await super().on_start()
        for task in TASKS_FROM_START:
            self.add_future(task())


def broker_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """Return Faust's credentials for WHATSUP_KAFKA_SECURITY_PROTOCOL (None on PLAINTEXT)."""
    protocol, context = settings.kafka_security_protocol, tls.kafka_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if protocol == "SASL_SSL":
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    return None


app = App(
    topics.consumer_group(topics.worker_group_role(settings.worker_role), settings.app_id),
    broker=[f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
    autodiscover=ROLE_PACKAGES[settings.worker_role],
    Table=Table,
    origin="streams",
    datadir=str(settings.data_dir / "faust"),
    store="memory://",
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    # Topics are created by `whatsup create-topics` with the partition counts co-partitioning needs.
    topic_allow_declare=True,
    broker_credentials=broker_credentials(settings),
    web_host=settings.web_host,
    web_port=settings.web_port,
    # HTTPS when a certificate is set; other workers forward dispatcher requests to this URL.
    web_ssl_context=tls.server_context(settings),
    canonical_url=f"{tls.scheme(settings)}://{settings.web_host}:{settings.web_port}",
    web_in_thread=False,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    producer_linger_ms=5,
    broker_commit_interval=1.0,
    # Bigger fetches and stream buffers: the clean stage takes thousands of pings per batch.
    broker_max_poll_records=5000,
    consumer_max_fetch_size=8 * 2**20,
    stream_buffer_maxsize=20_000,
    # At-least-once, made exact by the agents (docs/CLEANING.md, "Crash safety"): faust-streaming's
    # exactly_once leaves sends to topics the app does not consume outside the transaction.
    processing_guarantee="at_least_once",
    # A crashed agent takes the worker down: restarted in-process it would resume past batches it never
    # made durable, while a new process resumes from the committed offsets and the changelog.
    agent_supervisor=mode.CrashingSupervisor,
    # JSON lines or text, phone numbers and secrets masked (streams/telemetry/logs.py).
    logging_config=logging_config(settings.log_level, settings.log_format, secret_values(settings)),
)

# A stop waits for unacknowledged records at most WHATSUP_STOP_WAIT_S (streams/shutdown.py).
shutdown.install(settings.stop_wait_s)


def _avro_topic(name: str, *, raw_values: bool = False) -> faust.TopicT:
    """Declare a topic handle; ``raw_values`` leaves decoding to the agent, so bad bytes dead-letter."""
    spec = topics.TOPICS_BY_NAME[name]
    return app.topic(
        topics.qualified(name, settings.topic_prefix),
        # Raw agents decode keys themselves, so a key that is not UTF-8 is dead-lettered, not a crash.
        key_type=bytes if raw_values else str,
        key_serializer="raw",
        value_type=bytes if raw_values else None,
        value_serializer="raw" if raw_values else faust_codec_name(spec.schema),
        partitions=settings.partitions,
    )


gps_pings_raw_topic = _avro_topic(topics.GPS_PINGS_RAW, raw_values=True)
gps_pings_clean_topic = _avro_topic(topics.GPS_PINGS_CLEAN)
gps_pings_rejected_topic = _avro_topic(topics.GPS_PINGS_REJECTED)
deliveries_events_topic = _avro_topic(topics.DELIVERIES_EVENTS)
deliveries_rejected_topic = _avro_topic(topics.DELIVERIES_REJECTED)
deliveries_eta_topic = _avro_topic(topics.DELIVERIES_ETA)
alerts_topic = _avro_topic(topics.ALERTS)
api_access_topic = _avro_topic(topics.API_ACCESS)
# The conversation and notify agents decode their records themselves: a bad record is counted, not fatal.
whatsapp_events_raw_topic = _avro_topic(topics.WHATSAPP_EVENTS_RAW, raw_values=True)
notify_alerts_topic = _avro_topic(topics.ALERTS, raw_values=True)
notify_eta_topic = _avro_topic(topics.DELIVERIES_ETA, raw_values=True)
deliveries_applied_topic = _avro_topic(topics.DELIVERIES_APPLIED)
notify_delivery_events_topic = _avro_topic(topics.DELIVERIES_APPLIED, raw_values=True)


@app.page("/metrics")
class MetricsView(View):
    """Expose this process's Prometheus metrics."""

    async def get(self, request: Request) -> Response:
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/health")
class HealthView(View):
    """Answer load balancers: 200 while the worker runs and owns its partitions."""

    async def get(self, request: Request) -> Response:
        return self.json({"status": "ok", "app": settings.app_id, "rebalancing": app.rebalancing})
