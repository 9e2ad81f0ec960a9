-- modeaudit catalog, migration to schema version 2: calibrations.
--
-- A calibration reshapes a model's latent space around one of its modes
-- (method 'gmm': a reweighted Gaussian mixture; 'hull': rejection sampling
-- around a convex hull). Samples drawn through it record it in
-- batches.calibration_id.

CREATE TABLE calibrations (
    calibration_id    BIGINT PRIMARY KEY,
    model             VARCHAR NOT NULL,   -- source model whose black box it wraps
    method            VARCHAR NOT NULL,   -- 'gmm' or 'hull'
    audit_id          BIGINT,             -- audit whose mode it targets (NULL if named by hand)
    mode_sample_id    BIGINT NOT NULL,    -- the targeted mode
    theta             DOUBLE NOT NULL,
    radius            DOUBLE NOT NULL,
    acceptance_rate   DOUBLE NOT NULL,    -- expected share of prior codes kept (1 for gmm)
    mode_rate_before  DOUBLE NOT NULL,    -- the mode's neighbour rate before, and as the fit expects after
    mode_rate_after   DOUBLE NOT NULL,
    seed              UBIGINT NOT NULL,
    params            JSON NOT NULL,      -- everything fitted: components and weights, or basis, hull and densities
    tool_version      VARCHAR NOT NULL,
    created_at        TIMESTAMP NOT NULL DEFAULT current_timestamp
);
