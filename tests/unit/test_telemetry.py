"""Consumer lag arithmetic, and logs that never carry a phone number or a secret."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from base.histogram import BatchHistogram
from base.logs import (
    REDACTED,
    JsonFormatter,
    RedactingFilter,
    configure_logging,
    logging_config,
    record_context,
    redact,
    secret_values,
)
from base.settings import Settings
from streams.telemetry.lag import Partition, consumer_lag

KNOWN = {"gps.pings.raw", "gps.pings.clean"}
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkcml2ZXItNDIifQ.c2lnbmF0dXJlLWJ5dGVz"


def test_lag_is_highwater_minus_committed_per_source_partition() -> None:
    assigned = [
        ("t1.gps.pings.raw", 0),
        ("t1.gps.pings.raw", 1),
        ("t1.gps.pings.raw", 2),
        ("app-x-changelog", 0),
    ]
    highwaters = {("t1.gps.pings.raw", 0): 120, ("t1.gps.pings.raw", 1): 7, ("app-x-changelog", 0): 9}
    committed = {("t1.gps.pings.raw", 0): 100, ("t1.gps.pings.raw", 1): None}
    assert consumer_lag(assigned, highwaters, committed, KNOWN, prefix="t1.") == {
        Partition("gps.pings.raw", 0): 20,
        Partition("gps.pings.raw", 1): 7,  # nothing committed: the group reads from the start
        # partition 2 has no known highwater yet: left out, not reported as 0
    }


def test_lag_never_goes_negative() -> None:
    # A commit can be seen before the fetcher has refreshed the highwater.
    assert consumer_lag([("t", 0)], {("t", 0): 5}, {("t", 0): 9}, {"t"}) == {Partition("t", 0): 0}


@pytest.mark.parametrize(
    "text",
    [
        "sending to +5511912345678 now",
        "sending to +55 11 91234-5678 now",
        "sending to whatsapp:+5511912345678 now",
        'payload {"messaging_product": "whatsapp", "to": "5511912345678"}',
        "contact wa_id=5511912345678 replied",
    ],
)
def test_phone_numbers_are_masked(text: str) -> None:
    masked = redact(text)
    assert "91234" not in masked and "5678" not in masked, masked
    assert REDACTED in masked


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {JWT}",
        f"token rejected: {JWT}",
        "GET /webhooks/whatsapp?hub.verify_token=abc&access_token=EAAGm0PX4ZCpsBA",
        "api_key=kkkkkkkkkkkkkkkkkkkkk",
    ],
)
def test_tokens_are_masked(text: str) -> None:
    masked = redact(text)
    assert JWT not in masked and "EAAGm0PX4ZCpsBA" not in masked and "kkkkkkkk" not in masked, masked


def test_offsets_timestamps_and_ids_stay_readable() -> None:
    text = "offset 1234567890 of partition 3 at ts 1763870000000, driver sim-0042, ping sim-0042:17"
    assert redact(text) == text


def test_configured_secrets_are_masked_verbatim() -> None:
    settings = Settings.from_env(
        {
            "WHATSUP_TOKEN_SECRET": "s" * 40,
            "WHATSUP_WHATSAPP_TOKEN": "meta-access-token-value",
            "WHATSUP_API_KEYS": "partner-key-0123456789:partner",
        }
    )
    secrets = secret_values(settings)
    assert {"s" * 40, "meta-access-token-value", "partner-key-0123456789"} <= set(secrets)
    line = "retrying with meta-access-token-value for partner-key-0123456789"
    assert "meta-access" not in redact(line, secrets) and "partner-key" not in redact(line, secrets)


def _log_through(fmt: str, secrets: list[str], emit: object) -> str:
    stream = io.StringIO()
    config = logging_config("DEBUG", fmt, secrets)
    config["handlers"]["main"]["stream"] = stream
    saved_handlers, saved_level = logging.root.handlers[:], logging.root.level
    logging.config.dictConfig(config)
    try:
        emit(logging.getLogger("whatsup.test"))  # type: ignore[operator]
    finally:
        logging.root.handlers[:] = saved_handlers
        logging.root.setLevel(saved_level)
    return stream.getvalue()


def test_json_lines_carry_the_record_context_and_no_phone_or_token() -> None:
    def emit(logger: logging.Logger) -> None:
        context = record_context(
            stage="clean", topic="gps.pings.raw", partition=3, offset=41, reason="malformed"
        )
        logger.warning("ping from %s rejected, token %s", "+5511912345678", JWT, extra=context)
        try:
            raise ValueError("bad Authorization: Bearer " + JWT)
        except ValueError:
            logger.exception(
                "sender failed for %s", "whatsapp:+5511912345678", extra=record_context(stage="send")
            )

    output = _log_through("json", ["hunter2-secret"], emit)
    lines = [json.loads(line) for line in output.splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["level"] == "warning" and first["logger"] == "whatsup.test"
    assert {k: first[k] for k in ("stage", "topic", "partition", "offset", "reason")} == {
        "stage": "clean",
        "topic": "gps.pings.raw",
        "partition": 3,
        "offset": 41,
        "reason": "malformed",
    }
    assert second["stage"] == "send" and "ValueError" in second["error"]
    assert "5511912345678" not in output and "912345678" not in output
    assert JWT not in output
    assert REDACTED in first["message"] and REDACTED in second["error"]


def test_text_format_is_redacted_too() -> None:
    def emit(logger: logging.Logger) -> None:
        logger.info("secret %s for %s", "hunter2-secret", "+5511912345678")

    output = _log_through("text", ["hunter2-secret"], emit)
    assert "INFO" in output and "whatsup.test" in output
    assert "hunter2" not in output and "912345678" not in output


def test_log_format_setting_is_validated() -> None:
    assert Settings.from_env({"WHATSUP_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(Exception, match="LOG_FORMAT"):
        Settings.from_env({"WHATSUP_LOG_FORMAT": "xml"})


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name.removeprefix(name), tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_batch_histogram_exposes_what_prometheus_clients_histogram_would() -> None:
    buckets = (0.25, 1.0, 2.0, 60.0)
    values = [0.0, 0.1, 0.25, 0.26, 1.0, 1.5, 2.0, 59.0, 61.0, 1e9]
    reference_registry, batch_registry = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("ref_seconds", "doc", ["stage"], buckets=buckets, registry=reference_registry)
    batch = BatchHistogram("batch_seconds", "doc", "stage", buckets, registry=batch_registry)
    for value in values:
        reference.labels("clean").observe(value)
    assert batch.observe_many("clean", values[:4]) == 4
    assert batch.observe_many("clean", iter(values[4:])) == 6
    assert batch.observe_many("ingest", []) == 0
    expected = _samples(reference_registry, "ref_seconds")
    got = _samples(batch_registry, "batch_seconds")
    assert {k: v for k, v in got.items() if ("stage", "clean") in k[1]} == expected
    assert got[("_count", (("stage", "ingest"),))] == 0
    batch.remove("ingest")
    assert all(("stage", "ingest") not in labels for _, labels in _samples(batch_registry, "batch_seconds"))


def test_configure_logging_sets_the_redacting_handler_on_the_root_logger() -> None:
    saved_handlers, saved_level = logging.root.handlers[:], logging.root.level
    try:
        configure_logging(Settings.from_env({"WHATSUP_LOG_FORMAT": "json", "WHATSUP_LOG_LEVEL": "WARNING"}))
        (handler,) = logging.root.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        assert any(isinstance(f, RedactingFilter) for f in handler.filters)
        assert logging.root.level == logging.WARNING
    finally:
        logging.root.handlers[:] = saved_handlers
        logging.root.setLevel(saved_level)
