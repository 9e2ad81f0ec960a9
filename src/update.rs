//! Incremental re-auditing: bringing a stored audit up to date with the
//! samples added since it ran.
//!
//! An audit keeps, per anchor, the two sums every score derives from (the
//! neighbour count and the similarity sum, see [`crate::score`]). Both are
//! sums over samples, so the samples added since the audit contribute a term
//! of their own: an update scans only the new samples against the audit's
//! anchors (an exact blocked product, `anchors * new * dim`), adds that term
//! to each anchor's sums and derives MCCS and the population statistics
//! again with the new sample count. Its cost grows with the new samples, not
//! with the total, and for an exact audit the result equals a full exact
//! audit of the same anchors (counts exactly; sums up to the order of
//! floating-point additions).
//!
//! New samples can also hold a dense region that no anchor sits in. The
//! optional mode check rides on the HNSW index: after the index catches up
//! with the new samples, it ranks them by the link distances the graph
//! already holds, counts the densest few through the index, and reports a
//! new worst-case mode when one of them has more neighbours than every
//! anchor. Such samples can be added as anchors of role `added`; they are
//! kept out of the population statistics (unless asked) so that the audits
//! of one lineage stay comparable, and their sums come from the index (an
//! hnsw count, within the index's stated tolerance) whatever search the
//! audit used.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::audit::{AnchorResult, AuditReport};
use crate::catalog::{AnchorRole, AnchorVectors, Catalog, NewAudit};
use crate::error::{Error, Result};
use crate::index::{self, IndexParams, SyncAction};
use crate::progress::Progress;
use crate::score::{AnchorScore, AnchorSums, Kernel, Population, sampling_remarks};
use crate::search::{SearchMode, exact_sums};

/// When an update looks for new dense regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModeCheck {
    /// When the model already has an index (catching it up costs little;
    /// building one from nothing can cost far more than the update).
    Auto,
    /// Always, building the index if needed.
    Always,
    /// Never.
    Never,
}

/// Options of an incremental update.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    pub model: String,
    /// The audit to bring up to date (default: the model's latest audit
    /// of kind `anchors` or `update`).
    pub audit_id: Option<i64>,
    pub mode_check: ModeCheck,
    /// New samples the mode check counts, densest by link distance first.
    pub candidates: usize,
    /// Densest new samples to add as anchors (role `added`), when they
    /// have more neighbours than the audit's worst anchor.
    pub add_anchors: usize,
    /// Count added anchors in the population statistics too.
    pub include_added: bool,
    pub index_params: IndexParams,
}

/// What the mode check found.
#[derive(Debug, Clone, Serialize)]
pub struct ModeCheckReport {
    /// New samples counted through the index.
    pub candidates: usize,
    /// The densest of them, with its scores against every sample.
    pub densest_new: Option<AnchorResult>,
    /// Whether it has more neighbours than every anchor of the audit: a new
    /// worst-case mode.
    pub new_worst: bool,
    pub index_action: SyncAction,
    /// Seconds to bring the index up to date (insert the new samples).
    pub index_s: f64,
    /// Seconds of the check itself (density ranking and counts).
    pub check_s: f64,
}

/// The result of an update.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateReport {
    pub parent_audit_id: i64,
    /// Samples added since the parent audit.
    pub new_samples: usize,
    /// Batches whose samples the parent had not seen.
    pub new_batches: Vec<i64>,
    /// Seconds spent bringing the anchors up to date: reading the new
    /// samples and the anchors, and scanning.
    pub update_s: f64,
    /// Of `update_s`, the reading (opening the catalog included).
    pub read_s: f64,
    /// Of `update_s`, scanning the new samples against the anchors.
    pub scan_s: f64,
    /// The updated audit, or `None` when the parent already covered every
    /// sample (nothing is stored then).
    pub audit: Option<AuditReport>,
    /// Anchors added by this update (also in `audit.anchors`).
    pub added: Vec<AnchorResult>,
    /// The mode check, when it ran.
    pub mode_check: Option<ModeCheckReport>,
    /// Why the mode check did not run, when it did not.
    pub mode_check_skipped: Option<String>,
}

/// Everything read from the catalog for an update.
struct Inputs {
    parent: crate::catalog::AuditRecord,
    anchors: Vec<crate::catalog::AnchorRow>,
    /// How many samples the parent saw (the model's first `seen`).
    seen: usize,
    /// Ids of the samples added since, ascending, and their embeddings.
    new_ids: Vec<i64>,
    new_embeddings: ndarray::Array2<f32>,
    /// The anchors' embeddings, by id.
    anchor_vectors: AnchorVectors,
    /// Whether `anchor_vectors` came from the parent's chain (false: from
    /// the samples, for a parent stored before schema version 4).
    anchors_stored: bool,
    new_batches: Vec<i64>,
}

fn read_inputs(catalog_path: &Path, options: &UpdateOptions) -> Result<Inputs> {
    let started = Instant::now();
    let catalog = Catalog::open_read_only(catalog_path)?;
    tracing::debug!(
        elapsed_s = started.elapsed().as_secs_f64(),
        "update: catalog open"
    );
    catalog.require_model(&options.model)?;
    let parent_id = match options.audit_id {
        Some(id) => id,
        None => catalog
            .latest_audit_of_kinds(&options.model, &["anchors", "update"])?
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "model {:?} has no random-anchor audit to update; run `modeaudit audit` first",
                    options.model
                ))
            })?,
    };
    let parent = catalog.audit(parent_id)?;
    if parent.model != options.model {
        return Err(Error::InvalidArgument(format!(
            "audit {parent_id} is of model {:?}, not {:?}",
            parent.model, options.model
        )));
    }
    if parent.kind == "modes" {
        return Err(Error::InvalidArgument(format!(
            "audit {parent_id} is a search for modes, not a random-anchor audit; \
             run `modeaudit modes` again instead"
        )));
    }
    let max_seen = parent.max_sample_id.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "audit {parent_id} predates incremental updates (it does not record the last \
             sample it saw); run a new audit"
        ))
    })?;
    tracing::debug!(
        elapsed_s = started.elapsed().as_secs_f64(),
        "update: parent read"
    );
    // Counted, not listed: reading every id grew with the model's size.
    let seen = match catalog.samples_through(&options.model, max_seen)? {
        (count, Some(last)) if count == parent.n_samples && last == max_seen => count as usize,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "the samples audit {parent_id} saw are no longer all there (a dropped batch?); \
                 run a new audit"
            )));
        }
    };
    let anchors = catalog.anchor_rows(parent_id)?;
    tracing::trace!(
        elapsed_s = started.elapsed().as_secs_f64(),
        "update: anchor rows read"
    );
    let dim = catalog.require_model(&options.model)?.embed_dim;
    // Stored with the parent since schema version 4; for an older parent
    // they are looked up among the samples, which scans every embedding.
    let mut anchor_ids: Vec<i64> = anchors.iter().map(|a| a.sample_id).collect();
    anchor_ids.sort_unstable();
    let (anchor_vectors, anchors_stored) =
        match catalog.anchor_vectors(parent_id, &anchor_ids, dim)? {
            Some(vectors) => (vectors, true),
            None => {
                let vectors = catalog.embeddings_of(&options.model, &anchor_ids)?;
                let vectors = AnchorVectors {
                    ids: anchor_ids,
                    vectors,
                };
                (vectors, false)
            }
        };
    tracing::debug!(
        elapsed_s = started.elapsed().as_secs_f64(),
        "update: anchors read"
    );
    let (new_ids, new_embeddings) = catalog.embeddings(&options.model, max_seen)?;
    tracing::debug!(
        elapsed_s = started.elapsed().as_secs_f64(),
        "update: new samples read"
    );
    let new_batches = catalog.batches_after(&options.model, max_seen)?;
    Ok(Inputs {
        parent,
        anchors,
        seen,
        new_ids,
        new_embeddings,
        anchor_vectors,
        anchors_stored,
        new_batches,
    })
}

/// Brings an audit up to date with the samples added since it ran, and
/// stores the result as a new audit of kind `update` whose parent is it.
pub fn update(
    catalog_path: &Path,
    options: &UpdateOptions,
    progress: Progress,
) -> Result<UpdateReport> {
    let started = Instant::now();
    let inputs = read_inputs(catalog_path, options)?;
    let read_s = started.elapsed().as_secs_f64();
    let Inputs {
        parent,
        anchors,
        seen,
        new_ids,
        new_embeddings,
        anchor_vectors,
        anchors_stored,
        new_batches,
    } = inputs;
    let new_samples = new_ids.len();
    let n = seen + new_samples;
    let kernel = Kernel::new(parent.theta, parent.radius)?;
    if new_samples == 0 {
        return Ok(UpdateReport {
            parent_audit_id: parent.audit_id,
            new_samples: 0,
            new_batches,
            update_s: started.elapsed().as_secs_f64(),
            read_s,
            scan_s: 0.0,
            audit: None,
            added: Vec::new(),
            mode_check: None,
            mode_check_skipped: Some("no new samples".into()),
        });
    }
    // The anchors all lie among the samples the parent saw, so none of them
    // is a new sample and nothing needs excluding from the new term.
    let exclude = vec![None; anchors.len()];
    let mut anchor_embeddings = ndarray::Array2::zeros((anchors.len(), new_embeddings.ncols()));
    for (mut out, row) in anchor_embeddings.outer_iter_mut().zip(&anchors) {
        let v = anchor_vectors.get(row.sample_id).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "audit {} has no stored embedding for its anchor {}; run a new audit",
                parent.audit_id, row.sample_id
            ))
        })?;
        out.assign(&v);
    }
    let bar = progress.bar(new_samples as u64, "updating");
    let extra = exact_sums(
        new_embeddings.view(),
        seen,
        anchor_embeddings.view(),
        &exclude,
        &kernel,
        &bar,
    );
    bar.finish_and_clear();
    let mut results: Vec<AnchorResult> = anchors
        .iter()
        .zip(extra)
        .map(|(row, extra)| {
            let mut sums = AnchorSums {
                neighbors: row.neighbors,
                similarity_sum: row.similarity_sum,
            };
            sums.merge(extra);
            AnchorResult {
                sample_id: row.sample_id,
                role: row.role,
                score: AnchorScore::from_sums(sums, n as u64),
            }
        })
        .collect();
    let update_s = started.elapsed().as_secs_f64();
    let scan_s = update_s - read_s;

    let worst_anchor = results.iter().map(|a| a.score.neighbors).max().unwrap_or(0);
    let (mode_check, mode_check_skipped, added) = match check_modes(
        catalog_path,
        options,
        &kernel,
        seen,
        &new_ids,
        worst_anchor,
        progress,
    )? {
        Checked::Ran(report, added) => (Some(report), None, added),
        Checked::Skipped(why) => (None, Some(why), Vec::new()),
    };
    results.extend(added.iter().copied());
    results.sort_by(|a, b| {
        b.score
            .neighbors
            .cmp(&a.score.neighbors)
            .then(a.sample_id.cmp(&b.sample_id))
    });
    let in_population = |a: &&AnchorResult| {
        a.role == AnchorRole::Random || (options.include_added && a.role == AnchorRole::Added)
    };
    let population =
        Population::from_mccs(results.iter().filter(in_population).map(|a| a.score.mccs));
    let worst = results.first().copied();
    let search = if parent.search == "hnsw" {
        SearchMode::Hnsw
    } else {
        SearchMode::Exact
    };
    let elapsed_s = started.elapsed().as_secs_f64();
    let params = serde_json::json!({
        "parent_audit_id": parent.audit_id,
        "new_samples": new_samples,
        "new_batches": new_batches,
        "update_s": update_s,
        "read_s": read_s,
        "scan_s": scan_s,
        "mode_check": mode_check,
        "mode_check_skipped": mode_check_skipped,
        "added_anchors": added.len(),
        "added_search": "hnsw",
        "include_added": options.include_added,
        "n_infinite": population.n_infinite,
        "mccs_std_error": population.std_error,
    });
    let audit = NewAudit {
        model: options.model.clone(),
        kind: "update".into(),
        parent_audit_id: Some(parent.audit_id),
        theta: kernel.theta(),
        radius: kernel.radius(),
        n_samples: n as u64,
        max_sample_id: new_ids[new_samples - 1],
        n_anchors: results.len() as u64,
        search: search.as_str().into(),
        mccs_mean: Some(population.mean),
        mccs_std: Some(population.std),
        mccs_max: Some(population.max),
        worst_sample_id: worst.map(|w| w.sample_id),
        worst_neighbors: worst.map(|w| w.score.neighbors),
        elapsed_s,
        params,
    };
    let added_rows: Vec<usize> = added
        .iter()
        .map(|a| {
            new_ids
                .binary_search(&a.sample_id)
                .expect("added anchors are new samples")
        })
        .collect();
    // Only the anchors this update introduces: the others' embeddings are
    // stored with the audits that introduced them (`sql/schema_v5.sql`).
    // A parent older than that has none, and this update becomes the one
    // that introduces them all, so that later updates find them.
    let added_vectors = AnchorVectors::gather(&new_ids, new_embeddings.view(), &added_rows);
    let introduced = if anchors_stored {
        added_vectors
    } else {
        anchor_vectors.merged(&added_vectors)
    };
    let audit_id = crate::audit::store(catalog_path, &audit, &results, Some(&introduced))?;
    let n_population = results.iter().filter(in_population).count();
    let report = AuditReport {
        audit_id,
        model: options.model.clone(),
        kind: audit.kind,
        theta: kernel.theta(),
        radius: kernel.radius(),
        n_samples: n as u64,
        n_anchors: results.len(),
        search,
        search_reason: format!(
            "update of audit {}: {new_samples} new samples scanned exactly against its anchors",
            parent.audit_id
        ),
        population,
        worst,
        remarks: sampling_remarks(n as u64, n_population),
        search_s: update_s,
        index_s: mode_check.as_ref().map(|m| m.index_s),
        index_action: mode_check.as_ref().map(|m| m.index_action),
        elapsed_s,
        anchors: results,
    };
    Ok(UpdateReport {
        parent_audit_id: parent.audit_id,
        new_samples,
        new_batches,
        update_s,
        read_s,
        scan_s,
        audit: Some(report),
        added,
        mode_check,
        mode_check_skipped,
    })
}

enum Checked {
    Ran(ModeCheckReport, Vec<AnchorResult>),
    Skipped(String),
}

/// The new-mode check: ranks the new samples by link distance in the
/// index, counts the densest `candidates` through the index, and picks up
/// to `add_anchors` distinct ones denser than every anchor.
fn check_modes(
    catalog_path: &Path,
    options: &UpdateOptions,
    kernel: &Kernel,
    seen: usize,
    new_ids: &[i64],
    worst_anchor: u64,
    progress: Progress,
) -> Result<Checked> {
    match options.mode_check {
        ModeCheck::Never => return Ok(Checked::Skipped("not asked for".into())),
        ModeCheck::Auto => {
            let dir = index::model_index_dir(catalog_path, &options.model);
            if index::published_coverage(&dir).is_none() {
                return Ok(Checked::Skipped(format!(
                    "the model has no index yet; `modeaudit index --model {}` builds one \
                     (or pass --mode-check always)",
                    options.model
                )));
            }
        }
        ModeCheck::Always => {}
    }
    if options.candidates == 0 {
        return Ok(Checked::Skipped("--candidates is 0".into()));
    }
    let synced = index::sync(catalog_path, &options.model, options.index_params, progress)?;
    let idx = &synced.index;
    // The index has just been checked against the catalog's ids; this
    // checks that the catalog has not changed since the update read it.
    let ids = idx.sample_ids();
    if ids.len() != seen + new_ids.len() || ids[seen..] != *new_ids {
        return Err(Error::Index {
            path: index::model_index_dir(catalog_path, &options.model),
            reason: "the index does not match the catalog after catching up; \
                     run `modeaudit check --repair`"
                .into(),
        });
    }
    let started = Instant::now();
    let new_rows: Vec<usize> = (seen..ids.len()).collect();
    let density = idx.link_density_of(&new_rows, 4);
    let mut order: Vec<usize> = (0..new_rows.len()).collect();
    order.sort_by(|&a, &b| density[a].total_cmp(&density[b]).then(a.cmp(&b)));
    let candidates: Vec<usize> = order
        .iter()
        .take(options.candidates)
        .map(|&i| new_rows[i])
        .collect();
    let bar = progress.bar(candidates.len() as u64, "mode check");
    let sums = idx.radius_sums_many(&candidates, kernel, &bar);
    bar.finish_and_clear();
    let n = ids.len() as u64;
    let mut counted: Vec<AnchorResult> = candidates
        .iter()
        .zip(sums)
        .map(|(&row, sums)| AnchorResult {
            sample_id: ids[row],
            role: AnchorRole::Added,
            score: AnchorScore::from_sums(sums, n),
        })
        .collect();
    counted.sort_by(|a, b| {
        b.score
            .neighbors
            .cmp(&a.score.neighbors)
            .then(a.sample_id.cmp(&b.sample_id))
    });
    let densest_new = counted.first().copied();
    let new_worst = densest_new.is_some_and(|d| d.score.neighbors > worst_anchor);
    // Added anchors: denser than every anchor, and each outside the radius
    // of those added before it (one anchor per new dense region).
    let mut added: Vec<AnchorResult> = Vec::new();
    let row_of = |id: i64| {
        ids.binary_search(&id)
            .expect("candidate ids come from `ids`")
    };
    for candidate in &counted {
        if added.len() >= options.add_anchors || candidate.score.neighbors <= worst_anchor {
            break;
        }
        let v = idx.vector(row_of(candidate.sample_id));
        let distinct = added.iter().all(|a| {
            !kernel.is_neighbor(crate::vector::dot_exact(v, idx.vector(row_of(a.sample_id))))
        });
        if distinct {
            added.push(*candidate);
        }
    }
    let report = ModeCheckReport {
        candidates: candidates.len(),
        densest_new,
        new_worst,
        index_action: synced.action,
        index_s: synced.elapsed_s,
        check_s: started.elapsed().as_secs_f64(),
    };
    Ok(Checked::Ran(report, added))
}
