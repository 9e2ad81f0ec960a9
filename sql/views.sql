-- Views for the common questions. They belong to the schema version:
-- modeaudit creates them with the schema, when it migrates a catalog, and
-- whenever one is missing, so changing a view here needs a new schema
-- version (a migration, even an empty one) to reach existing catalogs.
-- Every view is listed in VIEW_NAMES in src/catalog/mod.rs.

-- The latest audit of each model (any kind).
CREATE OR REPLACE VIEW latest_audit AS
SELECT *
FROM audits
QUALIFY row_number() OVER (PARTITION BY model ORDER BY audit_id DESC) = 1;

-- Anchors of every audit ranked by neighbour count (rank 1 is the
-- worst-case mode; ties go to the smallest sample id).
CREATE OR REPLACE VIEW densest_anchors AS
SELECT a.model,
       s.audit_id,
       row_number() OVER (PARTITION BY s.audit_id
                          ORDER BY s.neighbors DESC, s.sample_id) AS rank,
       s.sample_id,
       s.neighbors,
       s.neighbors / (a.n_samples - 1)::DOUBLE AS neighbor_rate,
       s.expected_similarity,
       s.mccs
FROM anchor_scores s
JOIN audits a USING (audit_id);

-- The paper's study regions for every random-anchor audit: R_obs, the K
-- anchors with the most neighbours, against R_ref, K other anchors in an
-- order unrelated to density (a hash of the sample id), with K a tenth of
-- the anchors (at least one). The columns are what a box plot shows.
CREATE OR REPLACE VIEW study_regions AS
WITH ranked AS (
    SELECT s.audit_id,
           a.model,
           s.mccs,
           greatest(1, a.n_anchors // 10) AS k,
           row_number() OVER (PARTITION BY s.audit_id
                              ORDER BY s.neighbors DESC, s.sample_id) AS dense_rank,
           row_number() OVER (PARTITION BY s.audit_id
                              ORDER BY hash(s.sample_id), s.sample_id) AS random_rank
    FROM anchor_scores s
    JOIN audits a USING (audit_id)
    WHERE a.kind <> 'modes'
), regions AS (
    SELECT audit_id, model, k, 'R_obs' AS region, mccs FROM ranked WHERE dense_rank <= k
    UNION ALL
    SELECT audit_id, model, k, 'R_ref' AS region, mccs FROM ranked WHERE random_rank <= k
)
SELECT audit_id,
       model,
       region,
       any_value(k) AS k,
       avg(mccs) FILTER (WHERE isfinite(mccs)) AS mccs_mean,
       min(mccs) AS mccs_min,
       quantile_cont(mccs, 0.25) AS mccs_q1,
       median(mccs) AS mccs_median,
       quantile_cont(mccs, 0.75) AS mccs_q3,
       max(mccs) AS mccs_max
FROM regions
GROUP BY audit_id, model, region;

-- How each model's population MCCS and worst-case mode moved across its
-- audits, oldest first: an update's row follows its parent's, with the
-- change in mean MCCS and in the worst-case mode's neighbour rate.
CREATE OR REPLACE VIEW audit_history AS
SELECT model,
       audit_id,
       kind,
       parent_audit_id,
       created_at,
       n_samples,
       n_anchors,
       search,
       mccs_mean,
       mccs_std,
       mccs_max,
       worst_sample_id,
       worst_neighbors,
       worst_neighbors / greatest(n_samples - 1, 1)::DOUBLE AS worst_rate,
       mccs_mean - lag(mccs_mean) OVER w AS mccs_mean_change,
       worst_sample_id IS DISTINCT FROM lag(worst_sample_id) OVER w AS worst_mode_moved
FROM audits
WHERE kind <> 'modes'
WINDOW w AS (PARTITION BY model ORDER BY audit_id);

-- Which batches each audit covers: those whose samples it saw (ids up to
-- its max_sample_id). Audits stored before schema version 3 do not record
-- it and are left out.
CREATE OR REPLACE VIEW audit_batches AS
SELECT a.audit_id, a.model, b.batch_id, b.n, b.seed, b.chunk
FROM audits a
JOIN batches b ON b.model = a.model
WHERE a.max_sample_id IS NOT NULL
  AND (SELECT min(s.sample_id) FROM samples s WHERE s.batch_id = b.batch_id) <= a.max_sample_id;
