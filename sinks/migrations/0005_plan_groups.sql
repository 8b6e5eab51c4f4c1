-- The sink writes the batches of all of a topic's partitions in one insert (a group) under one token: the
-- plan keeps each range's group, so that a replay after a crash groups the ranges as before and ClickHouse
-- recognises the insert it already has. Ranges planned before it (empty here) were written alone.
ALTER TABLE sink_batch_plan ADD COLUMN IF NOT EXISTS group_token String DEFAULT '';
