//! Printing results: a readable table by default, one JSON object with
//! `--json`. Everything here goes to stdout; logs and progress go to stderr.

use std::io::Write;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

use modeaudit::audit::{AuditReport, NeighborReport};
use modeaudit::calibrate::CalibrateReport;
use modeaudit::catalog::{AuditRecord, DropCounts, ModelSummary};
use modeaudit::compare::CompareReport;
use modeaudit::index::{IndexState, Synced};
use modeaudit::ingest::{ExportReport, IngestReport};
use modeaudit::maintenance::CheckReport;
use modeaudit::sampling::SampleReport;
use modeaudit::update::UpdateReport;

/// Where and how results are printed.
pub struct Output {
    json: bool,
}

/// Formats a score for a table: fixed digits, `inf` spelled out.
pub fn fmt_score(x: f64) -> String {
    if x.is_infinite() {
        "inf".into()
    } else {
        format!("{x:.4}")
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    t
}

impl Output {
    pub fn new(json: bool) -> Output {
        Output { json }
    }

    /// Whether results are printed as JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints any serialisable value as one JSON object.
    pub fn json_value<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, value)?;
        writeln!(stdout)?;
        Ok(())
    }

    /// Prints a line of text (table mode only).
    pub fn line(&self, text: &str) -> anyhow::Result<()> {
        if !self.json {
            writeln!(std::io::stdout().lock(), "{text}")?;
        }
        Ok(())
    }

    pub fn sample(&self, r: &SampleReport) -> anyhow::Result<()> {
        if self.json {
            return self.json_value(r);
        }
        if r.resumed > 0 {
            self.line(&format!(
                "model {}: resumed the interrupted run of seed {} ({} of {} samples were \
                 already committed)",
                r.model, r.seed, r.resumed, r.n
            ))?;
        }
        let batches = match r.batch_ids.as_slice() {
            [] => "no batch".to_string(),
            [one] => format!("batch {one}"),
            [first, .., last] => format!("batches {first}..={last}"),
        };
        self.line(&format!(
            "model {}: {batches} added {} samples (ids {}..={}, seed {}) in {:.2} s ({:.0} \
             samples/s); the model now has {} samples",
            r.model,
            r.added,
            r.first_sample_id,
            r.last_sample_id,
            r.seed,
            r.elapsed_s,
            r.samples_per_s,
            r.model_samples
        ))
    }

    pub fn calibrate(&self, r: &CalibrateReport) -> anyhow::Result<()> {
        if self.json {
            return self.json_value(r);
        }
        self.line(&format!(
            "calibration {} ({}) of model {} around sample {} ({} neighbours within {} of {} samples{}):",
            r.calibration_id,
            r.method.as_str(),
            r.model,
            r.mode_sample_id,
            r.mode_neighbors,
            r.radius,
            r.n_samples,
            r.audit_id.map_or(String::new(), |a| format!(", worst-case mode of audit {a}"))
        ))?;
        for line in &r.summary {
            self.line(&format!("  {line}"))?;
        }
        self.line(&format!(
            "  expected neighbour rate of the mode {:.5} -> {:.5}; acceptance rate {:.4}; {:.2} s",
            r.mode_rate_before, r.mode_rate_after, r.acceptance_rate, r.elapsed_s
        ))?;
        for warning in &r.warnings {
            self.line(&format!("warning: {warning}"))?;
        }
        self.line(&format!(
            "next: modeaudit sample --model {}-{} --calibration {} --n N, then audit it and compare",
            r.model,
            r.method.as_str(),
            r.calibration_id
        ))
    }

    pub fn compare(&self, r: &CompareReport) -> anyhow::Result<()> {
        if self.json {
            return self.json_value(r);
        }
        let opt = |x: Option<f64>| x.map_or("-".to_string(), fmt_score);
        let mut t = table(&["", "before", "after"]);
        let (b, a) = (&r.before, &r.after);
        t.add_row(vec![
            "audit (model)".to_string(),
            format!("{} ({})", b.audit_id, b.model),
            format!("{} ({})", a.audit_id, a.model),
        ]);
        t.add_row(vec![
            "samples".to_string(),
            b.n_samples.to_string(),
            a.n_samples.to_string(),
        ]);
        t.add_row(vec![
            format!("mode {} neighbour rate", r.mode_sample_id),
            format!("{:.5} ({})", b.mode_rate, b.mode_neighbors),
            format!("{:.5} ({})", a.mode_rate, a.mode_neighbors),
        ]);
        t.add_row(vec![
            format!("mode {} MCCS", r.mode_sample_id),
            fmt_score(b.mode_mccs),
            fmt_score(a.mode_mccs),
        ]);
        t.add_row(vec![
            "MCCS mean".to_string(),
            opt(b.mccs_mean),
            opt(a.mccs_mean),
        ]);
        t.add_row(vec![
            "MCCS std".to_string(),
            opt(b.mccs_std),
            opt(a.mccs_std),
        ]);
        t.add_row(vec![
            "MCCS max".to_string(),
            opt(b.mccs_max),
            opt(a.mccs_max),
        ]);
        let worst = |s: &modeaudit::compare::Side| match (
            s.worst_sample_id,
            s.worst_neighbors,
            s.worst_rate,
        ) {
            (Some(id), Some(n), Some(rate)) => format!("sample {id}: {n} ({rate:.5})"),
            _ => "-".into(),
        };
        t.add_row(vec![
            "worst-case mode: neighbours (rate)".to_string(),
            worst(b),
            worst(a),
        ]);
        let cost = |s: &modeaudit::compare::Side| {
            if s.calibrations.is_empty() {
                "1 (no calibration)".to_string()
            } else {
                s.calibrations
                    .iter()
                    .map(|c| {
                        format!(
                            "{} #{}: accept {:.4}, cost {:.3}",
                            c.method, c.calibration_id, c.acceptance_rate, c.sampling_cost
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        };
        t.add_row(vec!["prior draws per sample".to_string(), cost(b), cost(a)]);
        self.line(&t.to_string())?;
        self.line(&format!(
            "mode rate after / before: {:.3}; Frechet distance between the embeddings: {:.5}",
            r.mode_rate_ratio, r.frechet_distance
        ))
    }

    pub fn latents(
        &self,
        calibration: i64,
        path: &std::path::Path,
        n: usize,
        dim: usize,
        drawn: u64,
    ) -> anyhow::Result<()> {
        if self.json {
            return self.json_value(&serde_json::json!({
                "calibration_id": calibration,
                "out": path,
                "n": n,
                "latent_dim": dim,
                "prior_draws": drawn,
            }));
        }
        self.line(&format!(
            "{n} latent codes of size {dim} through calibration {calibration} ({drawn} prior draws) written to {}",
            path.display()
        ))
    }

    pub fn ingest(&self, r: &IngestReport) -> anyhow::Result<()> {
        if self.json {
            return self.json_value(r);
        }
        self.line(&format!(
            "model {}: batch {} imported {} embeddings of dimension {}{} (ids {}..={}) in {:.2} s; \
             the model now has {} samples",
            r.model,
            r.batch_id,
            r.n,
            r.embed_dim,
            r.latent_dim
                .map_or(" without latent codes".to_string(), |k| format!(
                    " with latent codes of size {k}"
                )),
            r.first_sample_id,
            r.last_sample_id,
            r.elapsed_s,
            r.model_samples
        ))
    }

    pub fn export(&self, r: &ExportReport) -> anyhow::Result<()> {
        if self.json {
            return self.json_value(r);
        }
        self.line(&format!(
            "model {}: {} samples{} written to {}:",
            r.model,
            r.n_samples,
            r.audit_id.map_or(String::new(), |id| format!(
                " and the {} anchors of audit {id}",
                r.n_anchors
            )),
            r.out.display()
        ))?;
        for file in &r.files {
            self.line(&format!("  {}", file.display()))?;
        }
        Ok(())
    }

    pub fn audit(&self, r: &AuditReport, show: usize) -> anyhow::Result<()> {
        if self.json {
            return self.json_value(r);
        }
        let p = &r.population;
        let mut summary = table(&[
            "audit", "model", "kind", "samples", "anchors", "theta", "radius", "search",
        ]);
        summary.add_row(vec![
            r.audit_id.to_string(),
            r.model.clone(),
            r.kind.clone(),
            r.n_samples.to_string(),
            r.n_anchors.to_string(),
            r.theta.to_string(),
            r.radius.to_string(),
            r.search.as_str().to_string(),
        ]);
        self.line(&summary.to_string())?;
        let mut stats = table(&[
            "MCCS mean",
            "± s.e.",
            "std",
            "max",
            "infinite",
            "worst-case mode",
            "its neighbours",
            "its MCCS",
        ]);
        stats.add_row(vec![
            fmt_score(p.mean),
            fmt_score(p.std_error),
            fmt_score(p.std),
            fmt_score(p.max),
            p.n_infinite.to_string(),
            r.worst
                .map_or("-".into(), |w| format!("sample {}", w.sample_id)),
            r.worst
                .map_or("-".into(), |w| w.score.neighbors.to_string()),
            r.worst.map_or("-".into(), |w| fmt_score(w.score.mccs)),
        ]);
        self.line(&stats.to_string())?;
        let label = if r.kind == "modes" { "mode" } else { "anchor" };
        let mut anchors = table(&["rank", label, "role", "neighbours", "rate", "E(a)", "MCCS"]);
        for (rank, a) in r.anchors.iter().take(show).enumerate() {
            anchors.add_row(vec![
                (rank + 1).to_string(),
                a.sample_id.to_string(),
                a.role.as_str().to_string(),
                a.score.neighbors.to_string(),
                format!(
                    "{:.4}",
                    a.score.neighbors as f64 / (r.n_samples.saturating_sub(1).max(1)) as f64
                ),
                format!("{:.3e}", a.score.expected_similarity),
                fmt_score(a.score.mccs),
            ]);
        }
        if show > 0 {
            self.line(&anchors.to_string())?;
        }
        let index = match (r.index_s, r.index_action) {
            (Some(s), Some(action)) => format!(", index {action} in {s:.2} s"),
            _ => String::new(),
        };
        self.line(&format!(
            "search {} ({}): {:.3} s{index}; total {:.2} s",
            r.search.as_str(),
            r.search_reason,
            r.search_s,
            r.elapsed_s
        ))?;
        for remark in &r.remarks {
            self.line(&format!("note: {remark}"))?;
        }
        Ok(())
    }

    pub fn neighbors(&self, r: &NeighborReport) -> anyhow::Result<()> {
        if self.json {
            return self.json_value(r);
        }
        let mut t = table(&["rank", "sample", "distance", "dot"]);
        for nb in &r.neighbors {
            t.add_row(vec![
                nb.rank.to_string(),
                nb.sample_id.to_string(),
                format!("{:.5}", nb.distance),
                format!("{:.6}", nb.dot),
            ]);
        }
        self.line(&t.to_string())?;
        self.line(&format!(
            "{} neighbours; query {:.2} ms; opening the index ({}, {} points) {:.1} ms",
            r.neighbors.len(),
            r.query_ms,
            r.index_action,
            r.index_points,
            r.open_ms
        ))
    }

    pub fn index(&self, model: &str, s: &Synced) -> anyhow::Result<()> {
        #[derive(Serialize)]
        struct IndexReport<'a> {
            model: &'a str,
            points: usize,
            action: modeaudit::index::SyncAction,
            elapsed_s: f64,
            params: modeaudit::index::IndexParams,
        }
        let report = IndexReport {
            model,
            points: s.index.len(),
            action: s.action,
            elapsed_s: s.elapsed_s,
            params: s.index.params(),
        };
        if self.json {
            return self.json_value(&report);
        }
        self.line(&format!(
            "index of {model}: {}, {} points, {:.2} s (M {}, ef_construction {})",
            s.action,
            s.index.len(),
            s.elapsed_s,
            s.index.params().m,
            s.index.params().ef_construction
        ))
    }

    pub fn update(&self, r: &UpdateReport, show: usize) -> anyhow::Result<()> {
        if self.json {
            return self.json_value(r);
        }
        let Some(audit) = &r.audit else {
            return self.line(&format!(
                "audit {} already covers every sample of its model; nothing stored",
                r.parent_audit_id
            ));
        };
        self.line(&format!(
            "update of audit {}: {} new samples in {} batches, anchors brought up to date in \
             {:.3} s",
            r.parent_audit_id,
            r.new_samples,
            r.new_batches.len(),
            r.update_s
        ))?;
        self.audit(audit, show)?;
        match (&r.mode_check, &r.mode_check_skipped) {
            (Some(m), _) => {
                let densest = m.densest_new.map_or("none".to_string(), |d| {
                    format!(
                        "sample {} with {} neighbours",
                        d.sample_id, d.score.neighbors
                    )
                });
                self.line(&format!(
                    "mode check: {} new samples counted through the index in {:.3} s (index \
                     {} in {:.2} s); densest new: {densest}",
                    m.candidates, m.check_s, m.index_action, m.index_s
                ))?;
                if m.new_worst {
                    self.line(&format!(
                        "NEW WORST-CASE MODE among the new samples: {densest}, more than every \
                         anchor{}",
                        if r.added.is_empty() {
                            " (--add-anchors K adds such samples as anchors)"
                        } else {
                            ""
                        }
                    ))?;
                }
                for a in &r.added {
                    self.line(&format!(
                        "added anchor: sample {} ({} neighbours), kept out of the population \
                         statistics unless --include-added",
                        a.sample_id, a.score.neighbors
                    ))?;
                }
            }
            (None, Some(why)) => self.line(&format!("mode check skipped: {why}"))?,
            (None, None) => {}
        }
        Ok(())
    }

    pub fn history(&self, model: &str, audits: &[AuditRecord]) -> anyhow::Result<()> {
        if self.json {
            return self.json_value(&serde_json::json!({ "model": model, "audits": audits }));
        }
        let mut t = table(&[
            "audit",
            "kind",
            "parent",
            "created",
            "samples",
            "anchors",
            "search",
            "MCCS mean",
            "std",
            "max",
            "worst-case mode",
            "neighbours",
            "rate",
        ]);
        for a in audits {
            let opt = |x: Option<f64>| x.map_or("-".into(), fmt_score);
            t.add_row(vec![
                a.audit_id.to_string(),
                a.kind.clone(),
                a.parent_audit_id.map_or("-".into(), |p| p.to_string()),
                a.created_at.chars().take(19).collect(),
                a.n_samples.to_string(),
                a.n_anchors.to_string(),
                a.search.clone(),
                opt(a.mccs_mean),
                opt(a.mccs_std),
                opt(a.mccs_max),
                a.worst_sample_id.map_or("-".into(), |id| id.to_string()),
                a.worst_neighbors.map_or("-".into(), |n| n.to_string()),
                a.worst_neighbors.map_or("-".into(), |n| {
                    format!(
                        "{:.4}",
                        n as f64 / a.n_samples.saturating_sub(1).max(1) as f64
                    )
                }),
            ]);
        }
        self.line(&format!("model {model}: {} audits", audits.len()))?;
        self.line(&t.to_string())
    }

    pub fn check(&self, r: &CheckReport) -> anyhow::Result<()> {
        if self.json {
            return self.json_value(r);
        }
        self.line(&format!(
            "catalog {}: schema version {}, {} models, {} batches, {} samples",
            r.catalog.display(),
            r.schema_version,
            r.models,
            r.batches,
            r.samples
        ))?;
        for problem in &r.catalog_problems {
            self.line(&format!("catalog problem: {problem}"))?;
        }
        let mut t = table(&["model", "samples", "index", "leftover files", "repair"]);
        for i in &r.indexes {
            let state = match &i.found {
                IndexState::Missing => "none yet (built on first use)".to_string(),
                IndexState::Current => "current".to_string(),
                IndexState::Behind { missing } => format!("behind by {missing} samples"),
                IndexState::Stale => "stale (disagrees with the catalog)".to_string(),
                IndexState::Damaged { reason } => format!("damaged: {reason}"),
            };
            t.add_row(vec![
                i.model.clone(),
                i.samples.to_string(),
                state,
                i.leftovers.len().to_string(),
                i.repaired.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        self.line(&t.to_string())?;
        for path in &r.orphan_indexes {
            let done = if r.repaired { "removed" } else { "found" };
            self.line(&format!("{done} an index of no model: {}", path.display()))?;
        }
        self.line(if r.is_healthy() {
            "healthy"
        } else if r.repaired {
            "repaired what can be repaired (catalog problems, if any, are left to you)"
        } else {
            "needs attention"
        })
    }

    pub fn dropped(&self, target: &str, d: &DropCounts) -> anyhow::Result<()> {
        if self.json {
            return self.json_value(&serde_json::json!({ "dropped": target, "removed": d }));
        }
        self.line(&format!(
            "removed {target}: {} batches, {} samples, {} audits, and its index",
            d.batches, d.samples, d.audits
        ))
    }

    pub fn models(&self, models: &[ModelSummary]) -> anyhow::Result<()> {
        if self.json {
            return self.json_value(&serde_json::json!({ "models": models }));
        }
        let mut t = table(&[
            "model",
            "samples",
            "batches",
            "latent",
            "embedding",
            "latest audit",
            "MCCS mean",
            "worst-case mode",
            "generator",
        ]);
        for m in models {
            t.add_row(vec![
                m.model.clone(),
                m.n_samples.to_string(),
                m.n_batches.to_string(),
                m.latent_dim.to_string(),
                m.embed_dim.to_string(),
                m.latest_audit_id.map_or("-".into(), |id| {
                    format!("{id} ({})", m.latest_audit_kind.as_deref().unwrap_or("?"))
                }),
                m.latest_mccs_mean.map_or("-".into(), fmt_score),
                m.latest_worst_sample_id
                    .map_or("-".into(), |id| id.to_string()),
                m.generator.clone(),
            ]);
        }
        self.line(&t.to_string())
    }

    pub fn sql(&self, columns: &[String], rows: &[Vec<serde_json::Value>]) -> anyhow::Result<()> {
        if self.json {
            return self.json_value(&serde_json::json!({ "columns": columns, "rows": rows }));
        }
        let header: Vec<&str> = columns.iter().map(String::as_str).collect();
        let mut t = table(&header);
        for row in rows {
            t.add_row(
                row.iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => "NULL".into(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>(),
            );
        }
        self.line(&t.to_string())?;
        self.line(&format!("{} rows", rows.len()))
    }
}
