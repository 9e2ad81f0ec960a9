//! Criterion benchmarks of the counting kernels.
//!
//! - `exact_scan`: anchors against samples by blocked matrix product, the
//!   `--search exact` workhorse, reported in multiply-adds per second;
//! - `dot`: the two dot products (f64 reference, f32 fast) per call;
//! - `hnsw_build`: inserts per second into the index;
//! - `hnsw_radius`: one radius query (count and similarity sum) through the
//!   graph expansion.
//!
//! Run with `make bench`. Data come from the simulator with a fixed seed, so
//! the inputs are the same on every run. Compare ratios measured in one run;
//! the absolute numbers depend on the machine and its load.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use indicatif::ProgressBar;
use ndarray::{Array2, Axis};

use modeaudit::blackbox;
use modeaudit::index::radius::Scratch;
use modeaudit::index::{IndexParams, ModelIndex};
use modeaudit::score::Kernel;
use modeaudit::search::exact_sums;
use modeaudit::vector::{dot_exact, dot_fast, normalize_rows};

fn embeddings(n: usize, dim: usize) -> Array2<f32> {
    let sim = blackbox::from_spec(&format!("synthetic:latent=512,dim={dim},modes=1")).unwrap();
    let z = blackbox::draw_latents(n, 512, 1);
    let mut e = sim.embed(z.view()).unwrap();
    normalize_rows(e.view_mut(), "bench").unwrap();
    e
}

fn exact_scan(c: &mut Criterion) {
    let e = embeddings(50_000, 512);
    let kernel = Kernel::new(0.3, 0.3).unwrap();
    let mut group = c.benchmark_group("exact_scan");
    group.sample_size(10);
    for anchors in [100usize, 1000] {
        let rows: Vec<usize> = (0..anchors).map(|i| i * 37 % e.nrows()).collect();
        let queries = e.select(Axis(0), &rows);
        let exclude: Vec<Option<usize>> = rows.iter().map(|&r| Some(r)).collect();
        group.throughput(Throughput::Elements(
            (anchors * e.nrows() * e.ncols()) as u64,
        ));
        group.bench_with_input(
            BenchmarkId::new("anchors_x_50k_x_512", anchors),
            &anchors,
            |b, _| {
                b.iter(|| {
                    exact_sums(
                        e.view(),
                        0,
                        queries.view(),
                        &exclude,
                        &kernel,
                        &ProgressBar::hidden(),
                    )
                })
            },
        );
    }
    group.finish();
}

fn dot(c: &mut Criterion) {
    let e = embeddings(2, 512);
    let (a, b) = (e.row(0).to_vec(), e.row(1).to_vec());
    let mut group = c.benchmark_group("dot_512");
    group.bench_function("exact_f64", |bench| bench.iter(|| dot_exact(&a, &b)));
    group.bench_function("fast_f32", |bench| bench.iter(|| dot_fast(&a, &b)));
    group.finish();
}

fn hnsw(c: &mut Criterion) {
    let n = 10_000;
    let e = embeddings(n, 512);
    let ids: Vec<i64> = (1..=n as i64).collect();
    let mut group = c.benchmark_group("hnsw");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("build_10k_x_512", |b| {
        b.iter(|| {
            ModelIndex::build(
                e.view(),
                ids.clone(),
                IndexParams::default(),
                &ProgressBar::hidden(),
            )
            .unwrap()
        })
    });
    group.finish();
    let index = ModelIndex::build(
        e.view(),
        ids,
        IndexParams::default(),
        &ProgressBar::hidden(),
    )
    .unwrap();
    let kernel = Kernel::new(0.3, 0.3).unwrap();
    let mut scratch = Scratch::new(n);
    let mut group = c.benchmark_group("hnsw_radius");
    group.bench_function("query_10k_x_512", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 7919) % n;
            index.radius_sums(index.vector(i), Some(i), &kernel, &mut scratch)
        })
    });
    group.finish();
}

criterion_group!(benches, exact_scan, dot, hnsw);
criterion_main!(benches);
