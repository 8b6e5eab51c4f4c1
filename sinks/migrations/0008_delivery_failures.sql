-- Delivery events made in the chat say why a delivery failed and keep a reference to the proof of
-- delivery (a WhatsApp media id or a shared location, never the bytes). Addresses and customer names,
-- which the events also carry, stay out of the analytics tables.
ALTER TABLE delivery_events ADD COLUMN IF NOT EXISTS failure_reason LowCardinality(Nullable(String)) AFTER note;
ALTER TABLE delivery_events ADD COLUMN IF NOT EXISTS proof_ref Nullable(String) AFTER failure_reason;

DROP VIEW IF EXISTS in_delivery_events_mv;
DROP TABLE IF EXISTS in_delivery_events;

CREATE TABLE IF NOT EXISTS in_delivery_events
(
    event_id String, delivery_id String, driver_id String, type String, ts Int64,
    pickup_lat Nullable(Float64), pickup_lon Nullable(Float64), dropoff_lat Nullable(Float64),
    dropoff_lon Nullable(Float64), promised_at Nullable(Int64), customer_ref Nullable(String),
    source String, note Nullable(String), failure_reason Nullable(String), proof_ref Nullable(String),
    _kafka FixedString(10)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_delivery_events_mv TO delivery_events AS
SELECT
    event_id, delivery_id, driver_id, type, fromUnixTimestamp64Milli(ts, 'UTC') AS ts,
    pickup_lat, pickup_lon, dropoff_lat, dropoff_lon,
    fromUnixTimestamp64Milli(promised_at, 'UTC') AS promised_at, customer_ref, source, note,
    failure_reason, proof_ref,
    reinterpretAsUInt16(substring(_kafka, 1, 2)) AS _partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS _offset
FROM in_delivery_events;
