-- The audit of LGPD erasures (topic privacy.erasures, applied by the sink's eraser): one row per request,
-- naming the person only by the keyed hash of the subject; kept with no TTL, as the record that the
-- erasure happened.
CREATE TABLE IF NOT EXISTS erasures
(
    erasure_id String,
    subject_hash String,
    requested_at DateTime64(3, 'UTC'),
    requested_by String,
    reason String,
    tables Array(String),
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY erasure_id;
