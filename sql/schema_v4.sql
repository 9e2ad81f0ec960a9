-- modeaudit catalog, migration to schema version 4: anchors' embeddings kept
-- with their audit.
--
-- An update scans the new samples against the parent audit's anchors. Read
-- from `samples`, a thousand anchors scattered over a million rows cost a
-- scan of every embedding, so the update would cost as much as the total
-- and not as the new samples. Each random-anchor audit and each update
-- therefore stores its anchors' embeddings here (copies of the rows of
-- `samples`, one per anchor); audits stored before version 4 have none, and
-- an update of one reads its anchors from `samples` instead.

CREATE TABLE anchor_vectors (
    audit_id   BIGINT NOT NULL,
    sample_id  BIGINT NOT NULL,
    embedding  FLOAT[] NOT NULL,
    PRIMARY KEY (audit_id, sample_id)
);
