-- modeaudit catalog, migration to schema version 3: incremental audits and
-- resumable sampling runs.
--
-- Incremental audits ('update'): an audit records the largest sample id it
-- saw, so an update knows exactly which samples are new, and which batches
-- each audit covers (those whose samples have ids up to it). An anchor's
-- role tells the random anchors that make the population statistics from
-- anchors an update added in a new dense region, reported apart.
--
-- Resumable runs: `sample` commits a long run in chunks, each chunk its own
-- batch. The batches of one run share the run's seed; `chunk` numbers them
-- and `run_n` is the size the whole run asked for, so a rerun of an
-- interrupted command knows what is missing.

ALTER TABLE audits ADD COLUMN max_sample_id BIGINT;      -- NULL before version 3
ALTER TABLE anchor_scores ADD COLUMN role VARCHAR DEFAULT 'random';  -- 'random', 'added' or 'mode'
ALTER TABLE batches ADD COLUMN chunk INTEGER DEFAULT 0;  -- chunk number within its run
ALTER TABLE batches ADD COLUMN run_n BIGINT;             -- samples the whole run asked for
UPDATE anchor_scores SET role = 'mode'
WHERE audit_id IN (SELECT audit_id FROM audits WHERE kind = 'modes');
UPDATE batches SET run_n = n WHERE run_n IS NULL;
