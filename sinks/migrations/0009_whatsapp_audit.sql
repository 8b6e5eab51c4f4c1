-- The full audit of WhatsApp messages: every inbound message (whatsapp.events.raw: drivers' and customers'
-- texts, buttons, locations, photos by media id, statuses), with the sender as a keyed hash, and the text of
-- every outbound message next to its statuses. Bodies live as long as the tables' retention says
-- (WHATSUP_SINK_RETENTION); phone numbers in them were masked before they reached Kafka.
CREATE TABLE IF NOT EXISTS whatsapp_inbound
(
    message_id String,
    provider LowCardinality(String),
    from_hash String,
    type LowCardinality(String),
    text Nullable(String),
    payload String,
    ts DateTime64(3, 'UTC'),
    received_ts DateTime64(3, 'UTC'),
    _partition UInt16,
    _offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_offset _offset TYPE minmax GRANULARITY 4,
    INDEX idx_from from_hash TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (provider, message_id, type)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS in_whatsapp_inbound
(
    message_id String, provider String, from_hash String, type String, text Nullable(String), payload String,
    ts Int64, received_ts Int64, _kafka FixedString(10)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_whatsapp_inbound_mv TO whatsapp_inbound AS
SELECT
    message_id, provider, from_hash, type, text, payload, fromUnixTimestamp64Milli(ts, 'UTC') AS ts,
    fromUnixTimestamp64Milli(received_ts, 'UTC') AS received_ts,
    reinterpretAsUInt16(substring(_kafka, 1, 2)) AS _partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS _offset
FROM in_whatsapp_inbound;

ALTER TABLE whatsapp_messages ADD COLUMN IF NOT EXISTS text Nullable(String) AFTER reason;

DROP VIEW IF EXISTS in_whatsapp_outbound_mv;
DROP TABLE IF EXISTS in_whatsapp_outbound;

CREATE TABLE IF NOT EXISTS in_whatsapp_outbound
(
    message_key String, to_hash String, template Nullable(String), language String, reason String,
    text Nullable(String), driver_id Nullable(String), delivery_id Nullable(String), created_at Int64,
    _kafka FixedString(10)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_whatsapp_outbound_mv TO whatsapp_messages AS
SELECT
    message_key, to_hash, 'queued' AS status, fromUnixTimestamp64Milli(created_at, 'UTC') AS ts,
    0 AS attempt, '' AS provider, ifNull(template, '') AS template, language, reason, text, driver_id,
    delivery_id, 'outbound' AS _source, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS _partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS _offset
FROM in_whatsapp_outbound;
