-- modeaudit catalog, migration to schema version 5: an anchor's embedding
-- is kept once, with the audit that introduced it.
--
-- Under version 4 every update stored again the embeddings of all its
-- anchors, though they are its parent's: a thousand anchors of 512
-- dimensions cost 2 MB and most of the time of storing an update, at every
-- update. From version 5 on, `anchor_vectors` holds for each audit only
-- the anchors it introduced: all of them for a random-anchor audit, the
-- added ones (if any) for an update. An update's anchors are found along
-- its chain of parents (`audits.parent_audit_id`). A drop never breaks a
-- chain: it removes every audit that saw a dropped sample, and an update
-- sees everything its parent saw.
--
-- The rows that version 4 duplicated (an update's copy of an anchor its
-- parent stored too) are removed here; a version 4 program would not find
-- its updates' anchors in such a catalog, hence the new version.

DELETE FROM anchor_vectors
WHERE EXISTS (
    SELECT 1
    FROM audits a
    JOIN anchor_vectors p
      ON p.audit_id = a.parent_audit_id AND p.sample_id = anchor_vectors.sample_id
    WHERE a.audit_id = anchor_vectors.audit_id
);
