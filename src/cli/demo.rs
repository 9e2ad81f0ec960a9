//! `modeaudit demo`: the main job on the built-in simulator.
//!
//! Samples a model with one planted collapsed identity and a collapse-free
//! model from the same simulated world, audits both with random anchors,
//! searches the collapsed one for modes over every sample, and checks the
//! worst-case mode against the simulator's ground truth. Then it calibrates
//! the collapsed model with both methods around that mode, samples and
//! audits each calibrated generator, and prints the before and after.

use std::path::Path;

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use modeaudit::audit::{self, AuditOptions, AuditReport, ModesOptions};
use modeaudit::blackbox::synthetic::Simulator;
use modeaudit::calibrate::{self, CalibrateOptions, CalibrateReport, Method};
use modeaudit::catalog::Catalog;
use modeaudit::compare::{self, CompareReport};
use modeaudit::index::IndexParams;
use modeaudit::progress::Progress;
use modeaudit::sampling;
use modeaudit::search::SearchMode;

use super::output::{Output, fmt_score};

/// The simulated world both demo models share.
const WORLD: u64 = 7;
/// The collapsed model's planted identity owns this much latent mass.
const PLANTED_MASS: f64 = 0.05;

pub fn run(
    dir: &Path,
    n: usize,
    anchors: usize,
    out: &Output,
    progress: Progress,
) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let catalog = dir.join("demo.duckdb");
    let models = [
        (
            "collapsed",
            format!("synthetic:modes=1,mass={PLANTED_MASS},world={WORLD}"),
            1u64,
        ),
        ("healthy", format!("synthetic:modes=0,world={WORLD}"), 2u64),
    ];
    let mut audits: Vec<AuditReport> = Vec::new();
    for (model, spec, seed) in &models {
        out.line(&format!("sampling {n} codes from {model} ({spec})"))?;
        sampling::sample(&catalog, model, spec, n, Some(*seed), progress)?;
        let options = AuditOptions {
            model: model.to_string(),
            anchors,
            theta: 0.3,
            radius: None,
            search: SearchMode::Auto,
            seed: 0,
            anchors_from: None,
            index_params: IndexParams::default(),
        };
        audits.push(audit::run_audit(&catalog, &options, progress)?);
    }
    out.line("searching every sample of collapsed for its modes (builds the index)")?;
    let modes = audit::find_modes(
        &catalog,
        &ModesOptions {
            model: "collapsed".into(),
            top: 3,
            theta: 0.3,
            radius: None,
            seeds: 64,
            per_seed: 16,
            index_params: IndexParams::default(),
        },
        progress,
    )?;
    // Ground truth: is the worst-case mode inside the planted region?
    let worst = modes.worst.context("the modes search found no mode")?;
    let (generator, latent) = {
        let c = Catalog::open(&catalog)?;
        let generator = c.require_model("collapsed")?.generator;
        (generator, c.sample("collapsed", worst.sample_id)?.1)
    };
    let options = generator.strip_prefix("synthetic:").unwrap_or("");
    let simulator = Simulator::from_options(&generator, options)?;
    let latent = latent.context("the demo stores latent codes")?;
    let planted = simulator.planted_mode(ndarray::ArrayView1::from(&latent[..]));
    let anchor_worst_planted = {
        let c = Catalog::open(&catalog)?;
        let w = audits[0].worst.context("audit without anchors")?;
        let z = c
            .sample("collapsed", w.sample_id)?
            .1
            .context("latent stored")?;
        simulator
            .planted_mode(ndarray::ArrayView1::from(&z[..]))
            .is_some()
    };
    // Calibration: both methods around the worst-case mode, each sampled,
    // audited and compared with the collapsed model.
    let mut calibrations: Vec<(CalibrateReport, AuditReport, CompareReport, f64)> = Vec::new();
    let healthy_fd_before = {
        let c = Catalog::open(&catalog)?;
        let (_, a) = c.embeddings("collapsed", 0)?;
        let (_, h) = c.embeddings("healthy", 0)?;
        compare::frechet_distance(a.view(), h.view())
    };
    for method in [Method::Gmm, Method::Hull] {
        out.line(&format!(
            "calibrating collapsed around sample {} with {}",
            worst.sample_id,
            method.as_str()
        ))?;
        let report = calibrate::fit(
            &catalog,
            &CalibrateOptions {
                model: "collapsed".into(),
                method,
                audit_id: Some(modes.audit_id),
                mode: None,
                radius: None,
                seed: 0,
                components: 50,
                covariance: calibrate::gmm::CovariancePolicy::Auto,
                space: calibrate::gmm::Space::Mode,
                target_rate: None,
                points: None,
                dims: 4,
                tolerance: 1e-9,
            },
        )?;
        let target = format!("collapsed-{}", method.as_str());
        modeaudit::sampling::sample_calibrated(
            &catalog,
            &target,
            report.calibration_id,
            n,
            Some(3),
            &modeaudit::sampling::SampleOptions::default(),
            progress,
        )?;
        let audited = audit::run_audit(
            &catalog,
            &AuditOptions {
                model: target.clone(),
                anchors,
                theta: 0.3,
                radius: None,
                search: SearchMode::Auto,
                seed: 0,
                anchors_from: None,
                index_params: IndexParams::default(),
            },
            progress,
        )?;
        let compared = compare::compare(&catalog, audits[0].audit_id, audited.audit_id)?;
        let fd_healthy = {
            let c = Catalog::open(&catalog)?;
            let (_, a) = c.embeddings(&target, 0)?;
            let (_, h) = c.embeddings("healthy", 0)?;
            compare::frechet_distance(a.view(), h.view())
        };
        calibrations.push((report, audited, compared, fd_healthy));
    }
    if out.is_json() {
        let calibrated: Vec<serde_json::Value> = calibrations
            .iter()
            .map(|(c, a, cmp, fd)| {
                serde_json::json!({
                    "calibration": c,
                    "audit": a,
                    "compare": cmp,
                    "frechet_to_healthy": fd,
                })
            })
            .collect();
        return out.json_value(&serde_json::json!({
            "catalog": catalog,
            "audits": audits,
            "modes": modes,
            "worst_mode_is_planted": planted.is_some(),
            "worst_anchor_is_planted": anchor_worst_planted,
            "frechet_collapsed_to_healthy": healthy_fd_before,
            "calibrated": calibrated,
        }));
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "model",
        "audit",
        "search",
        "MCCS mean ± s.e.",
        "std",
        "max",
        "worst anchor",
        "its neighbours",
        "its MCCS",
    ]);
    for r in &audits {
        let w = r.worst.expect("anchors exist");
        t.add_row(vec![
            r.model.clone(),
            r.audit_id.to_string(),
            r.search.as_str().to_string(),
            format!(
                "{} ± {}",
                fmt_score(r.population.mean),
                fmt_score(r.population.std_error)
            ),
            fmt_score(r.population.std),
            fmt_score(r.population.max),
            w.sample_id.to_string(),
            w.score.neighbors.to_string(),
            fmt_score(w.score.mccs),
        ]);
    }
    out.line(&t.to_string())?;
    let mut m = Table::new();
    m.load_preset(UTF8_FULL_CONDENSED);
    m.set_header(vec!["mode", "sample", "neighbours", "rate", "MCCS"]);
    for (rank, a) in modes.anchors.iter().enumerate() {
        m.add_row(vec![
            (rank + 1).to_string(),
            a.sample_id.to_string(),
            a.score.neighbors.to_string(),
            format!(
                "{:.4}",
                a.score.neighbors as f64 / (modes.n_samples - 1) as f64
            ),
            fmt_score(a.score.mccs),
        ]);
    }
    out.line(&format!(
        "modes of collapsed over all {} samples (audit {}):",
        modes.n_samples, modes.audit_id
    ))?;
    out.line(&m.to_string())?;
    let collapsed = &audits[0];
    let healthy = &audits[1];
    out.line(&format!(
        "worst-case mode: sample {} with {} neighbours ({:.1}% of samples, planted mass {:.0}%), MCCS {} \
         against a population mean of {}: {}",
        worst.sample_id,
        worst.score.neighbors,
        100.0 * worst.score.neighbors as f64 / (modes.n_samples - 1) as f64,
        100.0 * PLANTED_MASS,
        fmt_score(worst.score.mccs),
        fmt_score(collapsed.population.mean),
        if planted.is_some() { "it is the planted identity" } else { "NOT the planted identity" }
    ))?;
    out.line(&format!(
        "collapse-free model: mean MCCS {} (collapsed {}), max {} (collapsed {}), worst anchor {} neighbours (collapsed {})",
        fmt_score(healthy.population.mean),
        fmt_score(collapsed.population.mean),
        fmt_score(healthy.population.max),
        fmt_score(collapsed.population.max),
        healthy.worst.map_or(0, |w| w.score.neighbors),
        collapsed.worst.map_or(0, |w| w.score.neighbors),
    ))?;
    let collapsed_audit = &audits[0];
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "generator",
        "acceptance",
        "mode rate",
        "mode MCCS",
        "MCCS mean",
        "MCCS max",
        "worst anchor: neighbours",
        "FD to collapse-free",
    ]);
    let first = calibrations.first().map(|c| &c.2);
    t.add_row(vec![
        "collapsed (before)".to_string(),
        "1".to_string(),
        first.map_or("-".into(), |c| format!("{:.5}", c.before.mode_rate)),
        first.map_or("-".into(), |c| fmt_score(c.before.mode_mccs)),
        fmt_score(collapsed_audit.population.mean),
        fmt_score(collapsed_audit.population.max),
        collapsed_audit
            .worst
            .map_or("-".into(), |w| w.score.neighbors.to_string()),
        format!("{healthy_fd_before:.5}"),
    ]);
    for (c, a, cmp, fd) in &calibrations {
        t.add_row(vec![
            format!("calibrated: {} (#{})", c.method.as_str(), c.calibration_id),
            format!("{:.4}", c.acceptance_rate),
            format!("{:.5}", cmp.after.mode_rate),
            fmt_score(cmp.after.mode_mccs),
            fmt_score(a.population.mean),
            fmt_score(a.population.max),
            a.worst
                .map_or("-".into(), |w| w.score.neighbors.to_string()),
            format!("{fd:.5}"),
        ]);
    }
    out.line(&format!(
        "calibration around the worst-case mode (sample {}), {n} samples each, audited with {anchors} anchors:",
        worst.sample_id
    ))?;
    out.line(&t.to_string())?;
    out.line(&format!(
        "catalog: {} (try: modeaudit sql --catalog {} \"SELECT * FROM study_regions\")",
        catalog.display(),
        catalog.display()
    ))?;
    anyhow::ensure!(
        planted.is_some(),
        "the demo's worst-case mode is not the planted identity"
    );
    Ok(())
}
