-- The event tables analysts query, one per source topic (whatsapp_messages takes two).
-- Timestamps are DateTime64(3, 'UTC'); ids and free text are String; repeated labels LowCardinality.
-- ReplacingMergeTree on each table's event id is the second line of dedupe (the sink's insert tokens are
-- the first); non_replicated_deduplication_window lets a replayed insert with the same token be dropped.
-- _partition/_offset say which Kafka record a row came from; inserted_at when it became visible.
-- Retention (TTL) is set from WHATSUP_RETENTION_DAYS / WHATSUP_SINK_RETENTION at every start.

CREATE TABLE IF NOT EXISTS gps_pings
(
    ping_id String,
    driver_id LowCardinality(String),
    device_ts DateTime64(3, 'UTC'),
    lat Float64,
    lon Float64,
    accuracy_m Nullable(Float32),
    speed_mps Nullable(Float32),
    heading Nullable(Float32),
    battery Nullable(Float32),
    seq Nullable(Int64),
    source LowCardinality(String),
    received_ts DateTime64(3, 'UTC'),
    processed_ts DateTime64(3, 'UTC'),
    h3_r9 UInt64,
    h3_r7 UInt64,
    step_m Float32,
    derived_speed_mps Nullable(Float32),
    late Bool,
    _partition UInt16,
    _offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_offset _offset TYPE minmax GRANULARITY 4,
    CONSTRAINT lat_in_range CHECK isFinite(lat) AND lat BETWEEN -90 AND 90,
    CONSTRAINT lon_in_range CHECK isFinite(lon) AND lon BETWEEN -180 AND 180
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(device_ts)
ORDER BY (driver_id, device_ts, ping_id)
SETTINGS non_replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS gps_pings_rejected
(
    reason LowCardinality(String),
    detail String,
    driver_id String,
    ping_id String,
    device_ts Nullable(DateTime64(3, 'UTC')),
    lat Nullable(Float64),
    lon Nullable(Float64),
    accuracy_m Nullable(Float64),
    source LowCardinality(String),
    received_ts Nullable(DateTime64(3, 'UTC')),
    raw_payload Nullable(String),
    source_topic LowCardinality(String),
    source_partition Int32,
    source_offset Int64,
    rejected_ts DateTime64(3, 'UTC'),
    _partition UInt16,
    _offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_offset _offset TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(rejected_ts)
ORDER BY (reason, rejected_ts, driver_id, ping_id, source_partition, source_offset)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS delivery_events
(
    event_id String,
    delivery_id String,
    driver_id LowCardinality(String),
    type LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    pickup_lat Nullable(Float64),
    pickup_lon Nullable(Float64),
    dropoff_lat Nullable(Float64),
    dropoff_lon Nullable(Float64),
    promised_at Nullable(DateTime64(3, 'UTC')),
    customer_ref Nullable(String),
    source LowCardinality(String),
    note Nullable(String),
    _partition UInt16,
    _offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_offset _offset TYPE minmax GRANULARITY 4,
    INDEX idx_driver driver_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (delivery_id, ts, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS eta_updates
(
    delivery_id String,
    driver_id LowCardinality(String),
    eta DateTime64(3, 'UTC'),
    remaining_m Float32,
    speed_mps Float32,
    method LowCardinality(String),
    computed_at DateTime64(3, 'UTC'),
    promised_at Nullable(DateTime64(3, 'UTC')),
    _partition UInt16,
    _offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_offset _offset TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(computed_at)
ORDER BY (delivery_id, computed_at)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS alerts
(
    alert_id String,
    kind LowCardinality(String),
    driver_id LowCardinality(String),
    delivery_id Nullable(String),
    started_at DateTime64(3, 'UTC'),
    detected_at DateTime64(3, 'UTC'),
    lat Float64,
    lon Float64,
    h3_r9 UInt64,
    severity LowCardinality(String),
    detail String,
    _partition UInt16,
    _offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_offset _offset TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (driver_id, started_at, alert_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- One row per thing that happened to a message: 'queued' from whatsapp.outbound (never its clear `to`:
-- the staging table has no such column), then every status the sender reported on whatsapp.status.
CREATE TABLE IF NOT EXISTS whatsapp_messages
(
    message_key String,
    to_hash String,
    status LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    attempt UInt16,
    provider LowCardinality(String),
    provider_message_id Nullable(String),
    error_code Nullable(Int32),
    error_title Nullable(String),
    template LowCardinality(String),
    language LowCardinality(String),
    reason LowCardinality(String),
    driver_id Nullable(String),
    delivery_id Nullable(String),
    _source LowCardinality(String),
    _partition UInt16,
    _offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_offset _offset TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (message_key, status, attempt, provider)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS api_access_log
(
    access_id String,
    ts DateTime64(3, 'UTC'),
    principal String,
    role LowCardinality(String),
    method LowCardinality(String),
    route LowCardinality(String),
    status UInt16,
    driver_id Nullable(String),
    delivery_id Nullable(String),
    location_read Bool,
    _partition UInt16,
    _offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_offset _offset TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (principal, ts, access_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- Every Kafka record the sink wrote, one row each, never merged away: the audit of exactly-once.
CREATE TABLE IF NOT EXISTS sink_offsets
(
    topic LowCardinality(String),
    partition UInt16,
    offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(inserted_at)
ORDER BY (topic, partition, offset)
SETTINGS non_replicated_deduplication_window = 10000;

-- The sink's batch plan: the offset range of every batch, written before its insert, so a batch replayed
-- after a crash is cut at the same offsets and carries the same insert_deduplication_token.
CREATE TABLE IF NOT EXISTS sink_batches
(
    topic LowCardinality(String),
    partition UInt16,
    first_offset UInt64,
    last_offset UInt64,
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(written_at)
ORDER BY (topic, partition, first_offset);
