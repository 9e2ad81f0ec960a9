-- modeaudit catalog, schema version 1.
--
-- This file is a public interface: other tools may read these tables with
-- any DuckDB client. modeaudit creates them itself (it applies this file to
-- a new catalog) and records the version in schema_info; later versions are
-- applied as migrations on top, never by editing this file.

CREATE TABLE schema_info (
    version     INTEGER NOT NULL,
    applied_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    tool_version VARCHAR NOT NULL
);

-- One row per audited model: a generator (black box) and its sizes.
CREATE TABLE models (
    model       VARCHAR PRIMARY KEY,
    generator   VARCHAR NOT NULL,   -- canonical generator specification
    latent_dim  INTEGER NOT NULL,
    embed_dim   INTEGER NOT NULL,
    params      JSON,               -- black-box parameters and ground truth
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- One row per batch of samples, written in the same transaction as them.
CREATE TABLE batches (
    batch_id        BIGINT PRIMARY KEY,
    model           VARCHAR NOT NULL,
    source          VARCHAR NOT NULL,   -- generator spec, or the imported file
    seed            UBIGINT,            -- seed of the latent codes (NULL if imported)
    n               BIGINT NOT NULL,
    calibration_id  BIGINT,             -- calibration the codes were drawn through
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- One row per sample. Embeddings are unit vectors. Ids only grow, so the
-- samples an audit saw are those with the smallest ids.
CREATE TABLE samples (
    sample_id   BIGINT PRIMARY KEY,
    model       VARCHAR NOT NULL,
    batch_id    BIGINT NOT NULL,
    latent      FLOAT[],            -- NULL when imported without codes
    embedding   FLOAT[] NOT NULL
);

-- One row per audit: random anchors ('anchors'), a search over every
-- sample ('modes'), or an incremental update ('update').
CREATE TABLE audits (
    audit_id          BIGINT PRIMARY KEY,
    model             VARCHAR NOT NULL,
    kind              VARCHAR NOT NULL,
    parent_audit_id   BIGINT,
    theta             DOUBLE NOT NULL,
    radius            DOUBLE NOT NULL,
    n_samples         BIGINT NOT NULL,
    n_anchors         BIGINT NOT NULL,
    search            VARCHAR NOT NULL,  -- 'exact' or 'hnsw': what actually ran
    mccs_mean         DOUBLE,
    mccs_std          DOUBLE,            -- population form (divides by the count)
    mccs_max          DOUBLE,
    worst_sample_id   BIGINT,
    worst_neighbors   BIGINT,
    elapsed_s         DOUBLE NOT NULL,
    tool_version      VARCHAR NOT NULL,
    params            JSON,              -- seed, index parameters, cost estimates...
    created_at        TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- One row per anchor of an audit (per mode, for a 'modes' audit).
CREATE TABLE anchor_scores (
    audit_id             BIGINT NOT NULL,
    sample_id            BIGINT NOT NULL,
    neighbors            BIGINT NOT NULL,
    similarity_sum       DOUBLE NOT NULL,
    expected_similarity  DOUBLE NOT NULL,
    mccs                 DOUBLE NOT NULL,  -- 'inf' when every other sample duplicates the anchor
    PRIMARY KEY (audit_id, sample_id)
);
