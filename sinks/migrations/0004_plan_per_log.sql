-- The sink's batch plan, per Kafka log: a topic deleted and created again, or a broker started afresh,
-- restarts its offsets under a new topic id, and the ranges planned on the old log must not cut the new
-- one's records (their tokens would make ClickHouse drop them as inserts it already has). It replaces
-- sink_batches, whose ranges named no log.
CREATE TABLE IF NOT EXISTS sink_batch_plan
(
    topic LowCardinality(String),
    partition UInt16,
    log_id String,
    first_offset UInt64,
    last_offset UInt64,
    written_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(written_at)
ORDER BY (topic, partition, log_id, first_offset);

DROP TABLE IF EXISTS sink_batches;
