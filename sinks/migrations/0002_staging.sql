-- Staging tables: the sink inserts each topic's Avro records here as they are on the wire (ClickHouse
-- decodes them), plus `_kafka`: the Kafka partition (2 bytes) and offset (8 bytes), little-endian.
-- ENGINE = Null stores nothing: the materialized views
-- below reshape every block into the event tables, so a field a table does not name (the clear `to` of
-- whatsapp.outbound) is never stored anywhere.

CREATE TABLE IF NOT EXISTS in_gps_pings_clean
(
    ping_id String, driver_id String, device_ts Int64, lat Float64, lon Float64,
    accuracy_m Nullable(Float64), speed_mps Nullable(Float64), heading Nullable(Float64),
    battery Nullable(Float64), seq Nullable(Int64), source String, received_ts Int64,
    h3_r9 Int64, h3_r7 Int64, step_m Float64, derived_speed_mps Nullable(Float64), late Bool,
    processed_ts Int64, _kafka FixedString(10)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_gps_pings_clean_mv TO gps_pings AS
SELECT
    ping_id, driver_id, fromUnixTimestamp64Milli(device_ts, 'UTC') AS device_ts, lat, lon,
    accuracy_m, speed_mps, heading, battery, seq, source,
    fromUnixTimestamp64Milli(received_ts, 'UTC') AS received_ts,
    fromUnixTimestamp64Milli(processed_ts, 'UTC') AS processed_ts,
    reinterpretAsUInt64(h3_r9) AS h3_r9, reinterpretAsUInt64(h3_r7) AS h3_r7, step_m, derived_speed_mps,
    late, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS _partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS _offset
FROM in_gps_pings_clean;

-- RejectedPing nests the original ping in a union; the sink flattens it to these columns first.
CREATE TABLE IF NOT EXISTS in_gps_pings_rejected
(
    reason String, detail String, driver_id Nullable(String), ping_id Nullable(String),
    device_ts Nullable(Int64), lat Nullable(Float64), lon Nullable(Float64), accuracy_m Nullable(Float64),
    source Nullable(String), received_ts Nullable(Int64), raw_payload Nullable(String),
    source_topic Nullable(String), source_partition Nullable(Int32), source_offset Nullable(Int64),
    rejected_ts Int64, _kafka FixedString(10)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_gps_pings_rejected_mv TO gps_pings_rejected AS
SELECT
    reason, detail, ifNull(driver_id, '') AS driver_id, ifNull(ping_id, '') AS ping_id,
    fromUnixTimestamp64Milli(device_ts, 'UTC') AS device_ts, lat, lon, accuracy_m,
    ifNull(source, '') AS source, fromUnixTimestamp64Milli(received_ts, 'UTC') AS received_ts, raw_payload,
    ifNull(source_topic, '') AS source_topic, ifNull(source_partition, -1) AS source_partition,
    ifNull(source_offset, -1) AS source_offset, fromUnixTimestamp64Milli(rejected_ts, 'UTC') AS rejected_ts,
    reinterpretAsUInt16(substring(_kafka, 1, 2)) AS _partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS _offset
FROM in_gps_pings_rejected;

CREATE TABLE IF NOT EXISTS in_delivery_events
(
    event_id String, delivery_id String, driver_id String, type String, ts Int64,
    pickup_lat Nullable(Float64), pickup_lon Nullable(Float64), dropoff_lat Nullable(Float64),
    dropoff_lon Nullable(Float64), promised_at Nullable(Int64), customer_ref Nullable(String),
    source String, note Nullable(String), _kafka FixedString(10)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_delivery_events_mv TO delivery_events AS
SELECT
    event_id, delivery_id, driver_id, type, fromUnixTimestamp64Milli(ts, 'UTC') AS ts,
    pickup_lat, pickup_lon, dropoff_lat, dropoff_lon,
    fromUnixTimestamp64Milli(promised_at, 'UTC') AS promised_at, customer_ref, source, note,
    reinterpretAsUInt16(substring(_kafka, 1, 2)) AS _partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS _offset
FROM in_delivery_events;

CREATE TABLE IF NOT EXISTS in_eta_updates
(
    delivery_id String, driver_id String, eta Int64, remaining_m Float64, speed_mps Float64,
    method String, computed_at Int64, promised_at Nullable(Int64), _kafka FixedString(10)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_eta_updates_mv TO eta_updates AS
SELECT
    delivery_id, driver_id, fromUnixTimestamp64Milli(eta, 'UTC') AS eta, remaining_m, speed_mps, method,
    fromUnixTimestamp64Milli(computed_at, 'UTC') AS computed_at,
    fromUnixTimestamp64Milli(promised_at, 'UTC') AS promised_at, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS _partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS _offset
FROM in_eta_updates;

CREATE TABLE IF NOT EXISTS in_alerts
(
    alert_id String, kind String, driver_id String, delivery_id Nullable(String), started_at Int64,
    detected_at Int64, lat Float64, lon Float64, h3_r9 Int64, severity String, detail String,
    _kafka FixedString(10)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_alerts_mv TO alerts AS
SELECT
    alert_id, kind, driver_id, delivery_id, fromUnixTimestamp64Milli(started_at, 'UTC') AS started_at,
    fromUnixTimestamp64Milli(detected_at, 'UTC') AS detected_at, lat, lon,
    reinterpretAsUInt64(h3_r9) AS h3_r9, severity, detail, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS _partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS _offset
FROM in_alerts;

CREATE TABLE IF NOT EXISTS in_whatsapp_outbound
(
    message_key String, to_hash String, template Nullable(String), language String, reason String,
    driver_id Nullable(String), delivery_id Nullable(String), created_at Int64,
    _kafka FixedString(10)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_whatsapp_outbound_mv TO whatsapp_messages AS
SELECT
    message_key, to_hash, 'queued' AS status, fromUnixTimestamp64Milli(created_at, 'UTC') AS ts,
    0 AS attempt, '' AS provider, ifNull(template, '') AS template, language, reason, driver_id,
    delivery_id, 'outbound' AS _source, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS _partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS _offset
FROM in_whatsapp_outbound;

CREATE TABLE IF NOT EXISTS in_whatsapp_status
(
    message_key String, provider String, provider_message_id Nullable(String), status String,
    error_code Nullable(Int32), error_title Nullable(String), attempt Int32, to_hash String, ts Int64,
    _kafka FixedString(10)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_whatsapp_status_mv TO whatsapp_messages AS
SELECT
    message_key, to_hash, status, fromUnixTimestamp64Milli(ts, 'UTC') AS ts, attempt, provider,
    provider_message_id, error_code, error_title, 'status' AS _source, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS _partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS _offset
FROM in_whatsapp_status;

CREATE TABLE IF NOT EXISTS in_api_access
(
    access_id String, ts Int64, principal String, role String, method String, route String, status Int32,
    driver_id Nullable(String), delivery_id Nullable(String), location_read Bool,
    _kafka FixedString(10)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_api_access_mv TO api_access_log AS
SELECT
    access_id, fromUnixTimestamp64Milli(ts, 'UTC') AS ts, principal, role, method, route, status,
    driver_id, delivery_id, location_read, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS _partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS _offset
FROM in_api_access;

-- The audit of exactly-once: every staged record's topic, partition and offset, into sink_offsets.

CREATE MATERIALIZED VIEW IF NOT EXISTS in_gps_pings_clean_audit_mv TO sink_offsets AS
SELECT 'gps.pings.clean' AS topic, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS offset FROM in_gps_pings_clean;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_gps_pings_rejected_audit_mv TO sink_offsets AS
SELECT 'gps.pings.rejected' AS topic, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS offset FROM in_gps_pings_rejected;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_delivery_events_audit_mv TO sink_offsets AS
SELECT 'deliveries.events' AS topic, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS offset FROM in_delivery_events;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_eta_updates_audit_mv TO sink_offsets AS
SELECT 'deliveries.eta' AS topic, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS offset FROM in_eta_updates;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_alerts_audit_mv TO sink_offsets AS
SELECT 'alerts' AS topic, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS offset FROM in_alerts;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_whatsapp_outbound_audit_mv TO sink_offsets AS
SELECT 'whatsapp.outbound' AS topic, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS offset FROM in_whatsapp_outbound;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_whatsapp_status_audit_mv TO sink_offsets AS
SELECT 'whatsapp.status' AS topic, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS offset FROM in_whatsapp_status;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_api_access_audit_mv TO sink_offsets AS
SELECT 'api.access' AS topic, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS offset FROM in_api_access;
