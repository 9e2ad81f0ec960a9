//! The cost of bringing an audit up to date against redoing it, side by
//! side in one run, through the library as the command line calls it
//! (reading the catalog, counting, storing).
//!
//! On a fresh catalog of N simulator samples: one exact audit of A anchors
//! (the parent), an index built over the N samples, then 1% more samples.
//! Timed, alternately, R times each:
//! - `full`: a full exact audit of the parent's anchors over all samples
//!   (`audit --anchors-from`), what an update replaces;
//! - `update`: the parent brought up to date (`audit --update`, mode check
//!   off): reading the new samples and the anchors, scanning, storing;
//! - `mode check`: the same update with the mode check on, reported apart:
//!   catching the index up with the new samples (the first run only; later
//!   runs find it current) and counting the densest new samples through it.
//!
//! Prints the medians and the ratios update / full and check / full.
//!
//!     cargo bench --profile release --bench update -- --n 100000 --anchors 1000
//!     cargo bench --profile release --bench update -- --n 1000000 --no-mode-check

use std::time::Instant;

use modeaudit::audit::{self, AuditOptions};
use modeaudit::index::{self, IndexParams};
use modeaudit::progress::Progress;
use modeaudit::sampling;
use modeaudit::search::SearchMode;
use modeaudit::update::{self, ModeCheck, UpdateOptions};

const SPEC: &str = "synthetic:latent=512,dim=512,modes=1";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let n = arg("--n", 100_000);
    let anchors = arg("--anchors", 1000);
    let repeats = arg("--repeats", 3).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let catalog = dir.path().join("bench.duckdb");
    let quiet = Progress::hidden();
    eprintln!("sampling {n} samples ({SPEC})");
    sampling::sample(&catalog, "m", SPEC, n, Some(1), quiet).unwrap();
    let parent = audit::run_audit(
        &catalog,
        &AuditOptions {
            model: "m".into(),
            anchors,
            theta: 0.3,
            radius: None,
            search: SearchMode::Exact,
            seed: 0,
            anchors_from: None,
            index_params: IndexParams::default(),
        },
        quiet,
    )
    .unwrap();
    // `--no-mode-check`: at a million samples the serial index build takes
    // half an hour, and only the mode check needs it.
    let mode_check = !flag("--no-mode-check");
    if mode_check {
        eprintln!("building the index over {n} samples (not timed)");
        index::sync(&catalog, "m", IndexParams::default(), quiet).unwrap();
    }
    let new = (n / 100).max(1);
    sampling::sample(&catalog, "m", SPEC, new, Some(2), quiet).unwrap();

    let full_options = AuditOptions {
        model: "m".into(),
        anchors,
        theta: 0.3,
        radius: None,
        search: SearchMode::Exact,
        seed: 0,
        anchors_from: Some(parent.audit_id),
        index_params: IndexParams::default(),
    };
    let update_options = |mode_check| UpdateOptions {
        model: "m".into(),
        audit_id: Some(parent.audit_id),
        mode_check,
        candidates: 64,
        add_anchors: 0,
        include_added: false,
        index_params: IndexParams::default(),
    };
    let (mut full, mut upd, mut check, mut catch_up) = (vec![], vec![], vec![], None);
    let (mut upd_inner, mut reads, mut scans) = (vec![], vec![], vec![]);
    for round in 0..repeats {
        let t = Instant::now();
        audit::run_audit(&catalog, &full_options, quiet).unwrap();
        full.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let r = update::update(&catalog, &update_options(ModeCheck::Never), quiet).unwrap();
        upd.push(t.elapsed().as_secs_f64());
        upd_inner.push(r.update_s);
        reads.push(r.read_s);
        scans.push(r.scan_s);
        assert_eq!(r.new_samples, new);
        if !mode_check {
            continue;
        }
        let r = update::update(&catalog, &update_options(ModeCheck::Always), quiet).unwrap();
        let m = r.mode_check.expect("mode check ran");
        if round == 0 {
            catch_up = Some(m.index_s);
        }
        check.push(m.check_s);
    }
    let (full, upd) = (median(full), median(upd));
    let (upd_inner, read, scan) = (median(upd_inner), median(reads), median(scans));
    println!("update bench: {n} samples + {new} new (1%), {anchors} anchors, 512 dimensions");
    println!("  full exact audit of the same anchors : {full:8.3} s");
    println!(
        "  update (anchors brought up to date)  : {upd:8.3} s  = {:.2}% of full",
        100.0 * upd / full
    );
    println!(
        "    of which reading (open, new samples, anchors) {read:.3} s and scanning {scan:.3} s \
         ({upd_inner:.3} s); the rest stores the audit"
    );
    if !mode_check {
        println!("  mode check: not run (--no-mode-check)");
        return;
    }
    let check = median(check);
    println!(
        "  mode check (counts through the index): {check:8.3} s  = {:.2}% of full",
        100.0 * check / full
    );
    println!(
        "  index catch-up with the {new} new samples (first check only): {:.3} s",
        catch_up.unwrap_or(0.0)
    );
}
