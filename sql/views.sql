-- Views for the common questions. modeaudit (re)creates them whenever it
-- opens a catalog for writing, so they always match the program's version.

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
