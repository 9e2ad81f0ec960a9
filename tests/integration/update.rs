//! Incremental re-auditing, checked against full recomputations of the same
//! anchors on the same samples.
//!
//! Stated tolerances: for an exact audit, an update equals a full exact
//! audit of the same anchors (neighbour counts exactly, similarity sums and
//! population statistics to 1e-9 relative) after each of several successive
//! updates. For an hnsw audit, the updated counts have count recall of at
//! least 0.99 against the full exact audit and never exceed it.

use std::collections::HashMap;

use modeaudit::audit::{self, AnchorResult, AuditOptions, AuditReport};
use modeaudit::blackbox::synthetic::Simulator;
use modeaudit::catalog::{AnchorRole, Catalog};
use modeaudit::index::{self, IndexParams};
use modeaudit::progress::Progress;
use modeaudit::sampling;
use modeaudit::search::SearchMode;
use modeaudit::update::{self, ModeCheck, UpdateOptions};

use crate::common::Workspace;

const SPEC: &str = "synthetic:latent=48,dim=48,modes=1,mass=0.03,world=5";

fn sample(ws: &Workspace, n: usize, seed: u64) {
    sampling::sample(&ws.catalog, "m", SPEC, n, Some(seed), Progress::hidden()).unwrap();
}

fn full_audit(ws: &Workspace, search: SearchMode, anchors_from: Option<i64>) -> AuditReport {
    let options = AuditOptions {
        model: "m".into(),
        anchors: 60,
        theta: 0.3,
        radius: None,
        search,
        seed: 4,
        anchors_from,
        index_params: IndexParams::default(),
    };
    audit::run_audit(&ws.catalog, &options, Progress::hidden()).unwrap()
}

fn update_options(mode_check: ModeCheck, add_anchors: usize) -> UpdateOptions {
    UpdateOptions {
        model: "m".into(),
        audit_id: None,
        mode_check,
        candidates: 64,
        add_anchors,
        include_added: false,
        index_params: IndexParams::default(),
    }
}

fn by_id(anchors: &[AnchorResult]) -> HashMap<i64, AnchorResult> {
    anchors.iter().map(|a| (a.sample_id, *a)).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)
}

#[test]
fn test_successive_exact_updates_equal_full_audits() {
    let ws = Workspace::new();
    sample(&ws, 4000, 1);
    let first = full_audit(&ws, SearchMode::Exact, None);
    let mut parent = first.audit_id;
    for (round, seed) in [11u64, 12, 13].into_iter().enumerate() {
        sample(&ws, 300 + 50 * round, seed);
        // The parent is named: the full audits of this test are newer.
        let mut options = update_options(ModeCheck::Never, 0);
        options.audit_id = Some(parent);
        let report = update::update(&ws.catalog, &options, Progress::hidden()).unwrap();
        assert_eq!(report.parent_audit_id, parent);
        assert_eq!(report.new_samples, 300 + 50 * round);
        assert_eq!(report.new_batches.len(), 1);
        let updated = report.audit.expect("new samples give a new audit");
        assert_eq!(updated.kind, "update");
        let full = full_audit(&ws, SearchMode::Exact, Some(first.audit_id));
        assert_eq!(updated.n_samples, full.n_samples);
        let (u, f) = (by_id(&updated.anchors), by_id(&full.anchors));
        assert_eq!(u.len(), f.len(), "same anchors");
        for (id, want) in &f {
            let got = u[id];
            assert_eq!(
                got.score.neighbors, want.score.neighbors,
                "round {round}, anchor {id}"
            );
            assert!(
                close(got.score.similarity_sum, want.score.similarity_sum),
                "round {round}, anchor {id}: {} vs {}",
                got.score.similarity_sum,
                want.score.similarity_sum
            );
            assert!(close(got.score.mccs, want.score.mccs) || got.score.mccs == want.score.mccs);
        }
        assert!(close(updated.population.mean, full.population.mean));
        assert!(close(updated.population.std, full.population.std));
        assert_eq!(
            updated.worst.unwrap().sample_id,
            full.worst.unwrap().sample_id
        );
        // The stored audit records its parent and what it saw.
        let stored = Catalog::open(&ws.catalog)
            .unwrap()
            .audit(updated.audit_id)
            .unwrap();
        assert_eq!(stored.parent_audit_id, Some(parent));
        assert_eq!(stored.n_samples, full.n_samples);
        assert_eq!(stored.params["new_samples"], 300 + 50 * round as u64);
        parent = updated.audit_id;
    }
    // Nothing new: nothing stored.
    let mut options = update_options(ModeCheck::Never, 0);
    options.audit_id = Some(parent);
    let again = update::update(&ws.catalog, &options, Progress::hidden()).unwrap();
    assert!(again.audit.is_none());
    assert_eq!(again.parent_audit_id, parent);
}

#[test]
fn test_hnsw_updates_stay_within_the_index_tolerance() {
    let ws = Workspace::new();
    sample(&ws, 6000, 1);
    let first = full_audit(&ws, SearchMode::Hnsw, None);
    sample(&ws, 400, 2);
    update::update(
        &ws.catalog,
        &update_options(ModeCheck::Auto, 0),
        Progress::hidden(),
    )
    .unwrap();
    sample(&ws, 400, 3);
    let report = update::update(
        &ws.catalog,
        &update_options(ModeCheck::Auto, 0),
        Progress::hidden(),
    )
    .unwrap();
    let updated = report.audit.unwrap();
    assert_eq!(updated.search, SearchMode::Hnsw);
    assert!(
        report.mode_check.is_some(),
        "the model has an index, so the check ran"
    );
    let exact = full_audit(&ws, SearchMode::Exact, Some(first.audit_id));
    let (u, e) = (by_id(&updated.anchors), by_id(&exact.anchors));
    let (mut found, mut total) = (0u64, 0u64);
    for (id, want) in &e {
        let got = u[id];
        assert!(
            got.score.neighbors <= want.score.neighbors,
            "anchor {id} overcounted"
        );
        found += got.score.neighbors;
        total += want.score.neighbors;
    }
    let recall = found as f64 / total.max(1) as f64;
    eprintln!("updated hnsw count recall {recall:.5} over {total} neighbours");
    assert!(recall >= 0.99, "count recall {recall}");
}

#[test]
fn test_mode_check_finds_a_new_dense_region_and_adds_it_apart() {
    let ws = Workspace::new();
    sample(&ws, 5000, 1);
    // Few anchors, drawn so that none lies in the planted mode: the audit's
    // worst anchor is then an ordinary sample.
    let generator = Catalog::open(&ws.catalog)
        .unwrap()
        .require_model("m")
        .unwrap()
        .generator;
    let simulator =
        Simulator::from_options(&generator, generator.strip_prefix("synthetic:").unwrap()).unwrap();
    let planted = |id: i64| {
        let (_, latent) = Catalog::open(&ws.catalog).unwrap().sample("m", id).unwrap();
        let latent = latent.unwrap();
        simulator
            .planted_mode(ndarray::ArrayView1::from(&latent[..]))
            .is_some()
    };
    let mut first = None;
    for seed in 0..50 {
        let options = AuditOptions {
            model: "m".into(),
            anchors: 8,
            theta: 0.3,
            radius: None,
            search: SearchMode::Exact,
            seed,
            anchors_from: None,
            index_params: IndexParams::default(),
        };
        let report = audit::run_audit(&ws.catalog, &options, Progress::hidden()).unwrap();
        if report.anchors.iter().all(|a| !planted(a.sample_id)) {
            first = Some(report);
            break;
        }
    }
    let first = first.expect("some seed draws no anchor in a 3% mode");
    index::sync(&ws.catalog, "m", IndexParams::default(), Progress::hidden()).unwrap();
    sample(&ws, 600, 2);
    let mut options = update_options(ModeCheck::Auto, 1);
    options.audit_id = Some(first.audit_id);
    let report = update::update(&ws.catalog, &options, Progress::hidden()).unwrap();
    let check = report
        .mode_check
        .expect("the index exists, so the check runs");
    assert!(
        check.new_worst,
        "a new sample in the planted mode beats every anchor"
    );
    let densest = check.densest_new.unwrap();
    assert!(densest.sample_id > 5000, "a new sample");
    assert!(
        planted(densest.sample_id),
        "the densest new sample is in the planted mode"
    );
    assert_eq!(report.added.len(), 1);
    let audit = report.audit.unwrap();
    assert_eq!(audit.n_anchors, 9);
    assert_eq!(
        audit.population.n_anchors, 8,
        "added anchors are kept out of the population"
    );
    assert_eq!(audit.worst.unwrap().sample_id, densest.sample_id);
    assert_eq!(audit.worst.unwrap().role, AnchorRole::Added);
    // Stored with their role; a later update keeps them apart too.
    let rows = Catalog::open(&ws.catalog)
        .unwrap()
        .anchor_rows(audit.audit_id)
        .unwrap();
    assert_eq!(
        rows.iter().filter(|r| r.role == AnchorRole::Added).count(),
        1
    );
    // Their embeddings are found through the audit, the added one's too,
    // equal to the samples' own, so the next update reads no other samples;
    // the update stored only the one it introduced, the rest are its
    // parent's.
    let catalog = Catalog::open_read_only(&ws.catalog).unwrap();
    let dim = catalog.require_model("m").unwrap().embed_dim;
    let mut anchor_ids: Vec<i64> = rows.iter().map(|r| r.sample_id).collect();
    anchor_ids.sort_unstable();
    let kept = catalog
        .anchor_vectors(audit.audit_id, &anchor_ids, dim)
        .unwrap()
        .expect("every anchor's embedding is kept");
    assert_eq!(kept.ids, anchor_ids);
    let stored: i64 = catalog
        .connection()
        .query_row(
            "SELECT count(*) FROM anchor_vectors WHERE audit_id = ?",
            [audit.audit_id],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, 1, "an update stores only the anchors it adds");
    for id in [densest.sample_id, rows[rows.len() - 1].sample_id] {
        let (embedding, _) = catalog.sample("m", id).unwrap();
        assert_eq!(kept.get(id).unwrap().to_vec(), embedding);
    }
    drop(catalog);
    sample(&ws, 100, 3);
    let next = update::update(
        &ws.catalog,
        &update_options(ModeCheck::Never, 0),
        Progress::hidden(),
    )
    .unwrap()
    .audit
    .unwrap();
    assert_eq!(next.population.n_anchors, 8);
    assert_eq!(next.n_anchors, 9);
}

#[test]
fn test_update_and_history_from_the_command_line() {
    let ws = Workspace::new();
    ws.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SPEC,
        "--n",
        "2000",
        "--seed",
        "1",
    ]);
    let first = ws.json(&[
        "audit",
        "--model",
        "m",
        "--anchors",
        "30",
        "--search",
        "exact",
    ]);
    ws.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SPEC,
        "--n",
        "200",
        "--seed",
        "2",
    ]);
    let updated = ws.json(&["audit", "--model", "m", "--update"]);
    assert_eq!(updated["parent_audit_id"], first["audit_id"]);
    assert_eq!(updated["new_samples"], 200);
    assert_eq!(updated["audit"]["n_samples"], 2200);
    let table = ws.ok(&["audit", "--model", "m", "--update"]);
    assert!(table.contains("already covers every sample"), "{table}");
    let history = ws.json(&["history", "--model", "m"]);
    let audits = history["audits"].as_array().unwrap();
    assert_eq!(audits.len(), 2);
    assert_eq!(audits[1]["kind"], "update");
    assert_eq!(audits[1]["parent_audit_id"], first["audit_id"]);
    let view = ws.json(&[
        "sql",
        "SELECT kind, n_samples FROM audit_history ORDER BY audit_id",
    ]);
    assert_eq!(view["rows"][1], serde_json::json!(["update", 2200]));
    let text = ws.ok(&["history", "--model", "m"]);
    assert!(text.contains("update"), "{text}");
    // An update of an audit whose samples changed is refused.
    let err = ws.fails(&["audit", "--model", "m", "--update", "999"]);
    assert!(err.contains("no audit 999"), "{err}");
}
