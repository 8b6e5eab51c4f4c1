-- Dispatchers acknowledging and resolving incidents (topic alerts.actions), for analysts: who worked which
-- alert, and how long after it was raised.
CREATE TABLE IF NOT EXISTS alert_actions
(
    action_id String,
    alert_id String,
    action LowCardinality(String),
    by String,
    ts DateTime64(3, 'UTC'),
    note String,
    driver_id Nullable(String),
    _partition UInt16,
    _offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_offset _offset TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (alert_id, ts, action_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS in_alert_actions
(
    action_id String, alert_id String, action String, by String, ts Int64, note String,
    driver_id Nullable(String),
    _kafka FixedString(10)
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_alert_actions_mv TO alert_actions AS
SELECT
    action_id, alert_id, action, by, fromUnixTimestamp64Milli(ts, 'UTC') AS ts, note, driver_id,
    reinterpretAsUInt16(substring(_kafka, 1, 2)) AS _partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS _offset
FROM in_alert_actions;

CREATE MATERIALIZED VIEW IF NOT EXISTS in_alert_actions_audit_mv TO sink_offsets AS
SELECT 'alerts.actions' AS topic, reinterpretAsUInt16(substring(_kafka, 1, 2)) AS partition,
    reinterpretAsUInt64(substring(_kafka, 3, 8)) AS offset FROM in_alert_actions;
