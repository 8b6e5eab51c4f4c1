"""Every Kafka topic of the pipeline (its name, its value schema, its key) and consumer group, in one place.

Driver-scoped topics are keyed by ``driver_id`` and all have ``settings.partitions`` partitions, so a
driver's pings, deliveries and alerts land on the same partition number and one worker owns all of a
driver's state (co-partitioning). Faust handles (``*_topic``) are declared in ``streams.app``.
"""

from __future__ import annotations

from dataclasses import dataclass

GPS_PINGS_RAW = "gps.pings.raw"
GPS_PINGS_CLEAN = "gps.pings.clean"
GPS_PINGS_REJECTED = "gps.pings.rejected"
DELIVERIES_EVENTS = "deliveries.events"
DELIVERIES_ETA = "deliveries.eta"
ALERTS = "alerts"
WHATSAPP_EVENTS_RAW = "whatsapp.events.raw"
WHATSAPP_OUTBOUND = "whatsapp.outbound"
WHATSAPP_STATUS = "whatsapp.status"
WHATSAPP_OUTBOUND_DEAD = "whatsapp.outbound.dead"
API_ACCESS = "api.access"
SINK_DEADLETTER = "sink.deadletter"
DELIVERIES_REJECTED = "deliveries.rejected"
DELIVERIES_APPLIED = "deliveries.applied"
ALERT_ACTIONS = "alerts.actions"
PRIVACY_ERASURES = "privacy.erasures"
CONVERSATIONS_GUARDRAILS = "conversations.guardrails"


@dataclass(frozen=True)
class TopicSpec:
    """What flows on a topic: its Avro value schema and what the key is."""

    name: str
    schema: str
    key: str
    driver_scoped: bool


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(GPS_PINGS_RAW, "GpsPing", "driver_id", True),
    TopicSpec(GPS_PINGS_CLEAN, "CleanPing", "driver_id", True),
    TopicSpec(GPS_PINGS_REJECTED, "RejectedPing", "driver_id", True),
    TopicSpec(DELIVERIES_EVENTS, "DeliveryEvent", "driver_id", True),
    # Dead letters of the delivery state machine: events that were not applied, with their reason.
    TopicSpec(DELIVERIES_REJECTED, "RejectedDeliveryEvent", "driver_id", True),
    # The events the state machine applied, with the delivery as it then stood (customer, addresses, ETA):
    # what drivers' offers and customers' messages follow, so a refused step tells nobody anything.
    TopicSpec(DELIVERIES_APPLIED, "DeliveryEvent", "driver_id", True),
    TopicSpec(DELIVERIES_ETA, "EtaUpdate", "driver_id", True),
    TopicSpec(ALERTS, "Alert", "driver_id", True),
    # Dispatchers acknowledging and resolving incidents, keyed by the incident's alert id.
    TopicSpec(ALERT_ACTIONS, "AlertAction", "alert_id", False),
    TopicSpec(WHATSAPP_EVENTS_RAW, "WhatsAppEvent", "from_hash", False),
    # Guardrail hits around the chat's language model, graded; for the audit (ClickHouse guardrail_events).
    TopicSpec(CONVERSATIONS_GUARDRAILS, "GuardrailEvent", "driver_id", True),
    TopicSpec(WHATSAPP_OUTBOUND, "OutboundMessage", "to_hash", False),
    TopicSpec(WHATSAPP_STATUS, "MessageStatus", "message_key", False),
    # Messages the sender gave up on: their final MessageStatus, with the provider's error code.
    TopicSpec(WHATSAPP_OUTBOUND_DEAD, "MessageStatus", "message_key", False),
    # The audit trail of the HTTP API: every authenticated read of a driver's data, keyed by principal.
    TopicSpec(API_ACCESS, "ApiAccess", "principal", False),
    # Records the ClickHouse sink could not write, with the error; keyed by their source topic.
    TopicSpec(SINK_DEADLETTER, "SinkDeadLetter", "source_topic", False),
    # LGPD erasure requests (whatsup erase), keyed by the driver (or the subject's hash for a non-driver), so
    # the worker owning the driver's state gets them; kept one day (ERASURE_RETENTION_MS).
    TopicSpec(PRIVACY_ERASURES, "Erasure", "driver_id", True),
)

# An erasure request names the person in clear; it lives on its topic only as long as the consumers need.
ERASURE_RETENTION_MS = 24 * 3_600_000
TOPIC_CONFIGS = {PRIVACY_ERASURES: {"retention.ms": str(ERASURE_RETENTION_MS)}}

TOPICS_BY_NAME = {spec.name: spec for spec in TOPICS}


def qualified(name: str, prefix: str = "") -> str:
    """Return the Kafka name of a topic, with the deployment's prefix (tests give each run its own)."""
    return f"{prefix}{name}"


# The consumer group of each consuming role. The worker's is Faust's, the app id itself; the role, never the
# group id (it carries the deployment's app id), is what metrics label a group with.
# Workers split by WHATSUP_WORKER_ROLE have a group per role, so that each role's partitions are shared
# among its own processes only.
GROUP_SUFFIXES = {
    "worker": "",
    "worker-clean": "-clean",
    "worker-deliveries": "-deliveries",
    "sink": "-clickhouse-sink",
    "sink-erasures": "-clickhouse-erasures",
    "sender": "-sender",
}


def consumer_group(role: str, app_id: str) -> str:
    """Return the consumer group id of a role's processes in the deployment ``app_id``."""
    return f"{app_id}{GROUP_SUFFIXES[role]}"


def worker_group_role(worker_role: str) -> str:
    """Return the group role of workers running ``worker_role`` (``all``: Faust's group, the app id)."""
    return "worker" if worker_role == "all" else f"worker-{worker_role}"
