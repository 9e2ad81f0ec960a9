-- Example queries over a modeaudit catalog. Each statement ends with a
-- semicolon on its own line's end; the test suite runs every one of them
-- against a catalog made by the demo's steps.

-- Models and how many samples each holds.
SELECT model, count(*) AS samples, count(DISTINCT batch_id) AS batches
FROM samples GROUP BY model ORDER BY model;

-- The latest audit of each model, with its population statistics.
SELECT model, audit_id, kind, n_samples, n_anchors, search,
       round(mccs_mean, 4) AS mccs_mean, round(mccs_std, 4) AS mccs_std,
       round(mccs_max, 4) AS mccs_max, worst_sample_id, worst_neighbors
FROM latest_audit ORDER BY model;

-- The ten densest anchors of each model's latest random-anchor audit.
SELECT d.model, d.audit_id, d.rank, d.sample_id, d.neighbors,
       round(d.neighbor_rate, 5) AS rate, round(d.mccs, 4) AS mccs
FROM densest_anchors d
JOIN (SELECT model, max(audit_id) AS audit_id FROM audits
      WHERE kind = 'anchors' GROUP BY model) l USING (model, audit_id)
WHERE d.rank <= 10
ORDER BY d.model, d.rank;

-- R_obs (densest tenth of the anchors) against R_ref (a random tenth).
SELECT audit_id, model, region, k,
       round(mccs_mean, 4) AS mean, round(mccs_median, 4) AS median,
       round(mccs_q1, 4) AS q1, round(mccs_q3, 4) AS q3
FROM study_regions ORDER BY audit_id, region;

-- How MCCS is distributed over the anchors of every audit (histogram).
SELECT audit_id, round(mccs, 2) AS mccs_bin, count(*) AS anchors
FROM anchor_scores WHERE isfinite(mccs)
GROUP BY ALL ORDER BY audit_id, mccs_bin;

-- Neighbours of a sample computed in SQL alone (slow but independent of
-- modeaudit's search): the ten closest samples to the first audit's
-- worst-case mode, by normalised angular distance.
WITH worst AS (
    SELECT s.model, s.embedding
    FROM audits a JOIN samples s ON s.sample_id = a.worst_sample_id
    WHERE a.audit_id = (SELECT min(audit_id) FROM audits)
)
SELECT x.sample_id,
       acos(least(1, greatest(-1, list_inner_product(x.embedding, w.embedding)))) / pi() AS distance
FROM samples x, worst w
WHERE x.model = w.model
ORDER BY distance
LIMIT 10;

-- How each model's audits moved over time (updates follow their parents).
SELECT model, audit_id, kind, parent_audit_id, n_samples,
       round(mccs_mean, 4) AS mccs_mean, round(mccs_mean_change, 4) AS change,
       worst_sample_id, round(worst_rate, 5) AS worst_rate, worst_mode_moved
FROM audit_history ORDER BY model, audit_id;

-- The batches each audit saw.
SELECT audit_id, model, count(*) AS batches, sum(n) AS samples
FROM audit_batches GROUP BY ALL ORDER BY audit_id;
