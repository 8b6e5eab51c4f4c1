-- Materialized aggregates. Each is fed by the inserts into its event tables, so it counts what the sink
-- wrote once; read them with sum() ... GROUP BY (rows of one key are summed by background merges).

CREATE TABLE IF NOT EXISTS driver_daily_stats
(
    day Date,
    driver_id LowCardinality(String),
    pings UInt64,
    late_pings UInt64,
    distance_m Float64,
    deliveries UInt32,
    delivered_with_promise UInt32,
    delivered_on_time UInt32,
    failed UInt32,
    stalls UInt32
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, driver_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS driver_daily_stats_pings_mv TO driver_daily_stats AS
SELECT
    toDate(device_ts) AS day, driver_id, count() AS pings, countIf(late) AS late_pings,
    sum(toFloat64(step_m)) AS distance_m
FROM gps_pings
GROUP BY day, driver_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS driver_daily_stats_deliveries_mv TO driver_daily_stats AS
SELECT
    toDate(ts) AS day, driver_id, countIf(type = 'delivered') AS deliveries,
    countIf(type = 'delivered' AND promised_at IS NOT NULL) AS delivered_with_promise,
    countIf(type = 'delivered' AND ts <= promised_at) AS delivered_on_time,
    countIf(type = 'failed') AS failed
FROM delivery_events
WHERE type IN ('delivered', 'failed')
GROUP BY day, driver_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS driver_daily_stats_alerts_mv TO driver_daily_stats AS
SELECT toDate(started_at) AS day, driver_id, count() AS stalls
FROM alerts
WHERE kind = 'stall'
GROUP BY day, driver_id;

-- Speed per res-7 H3 cell and hour (event time), from the speed derived between accepted fixes.
CREATE TABLE IF NOT EXISTS cell_speed_hourly
(
    hour DateTime('UTC'),
    h3_r7 UInt64,
    samples SimpleAggregateFunction(sum, UInt64),
    speed_sum SimpleAggregateFunction(sum, Float64),
    moving_samples SimpleAggregateFunction(sum, UInt64),
    drivers AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, h3_r7)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS cell_speed_hourly_mv TO cell_speed_hourly AS
SELECT
    toStartOfHour(device_ts) AS hour, h3_r7, count() AS samples,
    sum(toFloat64(derived_speed_mps)) AS speed_sum,
    countIf(derived_speed_mps > 0.5) AS moving_samples,
    uniqState(toString(driver_id)) AS drivers
FROM gps_pings
WHERE derived_speed_mps IS NOT NULL AND NOT late
GROUP BY hour, h3_r7;
