-- Guardrail hits around the drivers' chat assistant (topic conversations.guardrails), graded log, warn or
-- block, for the audit: who tried what, and what it led to. The excerpt (phones masked before Kafka) lives
-- as long as the table's retention says (WHATSUP_SINK_RETENTION). Also: whatsapp.events.raw's rows now
-- reach the sink's offset audit (sink_offsets) like every other topic's.
CREATE TABLE IF NOT EXISTS guardrail_events
(
    event_id String,
    ts DateTime64(3, 'UTC'),
    driver_id String,
    from_hash String,
    provider LowCardinality(String),
    message_id String,
    stage LowCardinality(String),
    reason LowCardinality(String),
    grade LowCardinality(String),
    excerpt String,
    _partition UInt16,
    _offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_offset _offset TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (driver_id, ts, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS in_guardrail_events
(
    event_id String, ts Int64, driver_id String, from_hash String, provider String, message_id String,
    stage String, reason String, grade String, excerpt String,
    _kafka FixedString(10)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_guardrail_events_mv TO guardrail_events AS
SELECT
    event_id, fromUnixTimestamp64Milli(ts, 'UTC') AS ts, driver_id, from_hash, provider, message_id, stage,
    reason, grade, excerpt,
    reinterpretAsUInt16(substring(_kafka, 1, 2)) AS _partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS _offset
FROM in_guardrail_events;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_guardrail_events_audit_mv TO sink_offsets AS
SELECT 'conversations.guardrails' AS topic, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS offset FROM in_guardrail_events;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_whatsapp_inbound_audit_mv TO sink_offsets AS
SELECT 'whatsapp.events.raw' AS topic, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS offset FROM in_whatsapp_inbound;
