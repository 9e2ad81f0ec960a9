//! The HNSW index kept beside the catalog.
//!
//! The catalog is the truth; the index is derived from it and may always be
//! thrown away and rebuilt. One index serves one model and lives in
//! `<catalog>.index/<model key>/`:
//!
//! ```text
//! current.json        which generation is live, and what it covers
//! gen-<N>/graph.hnsw.graph, graph.hnsw.data   hnsw_rs's own dump
//! gen-<N>/sample_ids.npy                      data id -> catalog sample id
//! ```
//!
//! A new generation is written in full and then published by replacing
//! `current.json` with a rename, so a reader sees the old index or the new
//! one, never half of one; a crash leaves at worst an unused `gen-*` folder.
//! `current.json` records how many samples the index covers, the largest
//! sample id and a hash of all covered ids: if the catalog disagrees, the
//! index is stale and gets rebuilt ([`Coverage`]).
//!
//! The data id of a point is its row in the model's samples ordered by
//! sample id. Sample ids only grow, so new samples append new rows, and an
//! index that is merely behind is caught up by inserting the new rows.
//!
//! Why inserting is deferred to first use instead of done by `sample`: the
//! build rate is the index's bottleneck, a model usually receives several
//! batches before anyone queries it, and one build over all of them
//! costs less than a load, insert and dump per batch. It also keeps `sample`
//! short and its hold on the catalog brief. `modeaudit index` builds it
//! explicitly.
//!
//! Search-side code (radius queries, density ranking) is in [`radius`].

pub mod radius;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hnsw_rs::prelude::{AnnT, Distance, Hnsw, HnswIo, Point, ReloadOptions};
use ndarray::{Array1, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::vector::dot_fast;

/// Version of the on-disk layout described in the module documentation.
/// Bump it when the layout changes; older versions are rebuilt.
pub const INDEX_FORMAT_VERSION: u32 = 1;

/// Base name hnsw_rs gives its two dump files.
const DUMP_BASENAME: &str = "graph";

/// The index's own distance: `1 - e_a . e_x` for unit vectors, clamped at 0.
///
/// hnsw_rs's `DistDot` asserts that `1 - dot >= 0`, which rounding breaks for
/// near-identical unit vectors (exactly the duplicates collapse produces), so
/// we clamp instead. The distance only orders candidates during graph
/// construction and search; whether a sample is within a radius is always
/// decided again by [`crate::vector::dot_exact`].
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitDot;

impl Distance<f32> for UnitDot {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        (1.0 - dot_fast(va, vb)).max(0.0)
    }
}

/// Graph parameters, in the HNSW paper's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexParams {
    /// `M`: links per point and layer (hnsw_rs allows the bottom layer twice
    /// as many).
    pub m: usize,
    /// `ef_construction`: candidate list length while inserting.
    pub ef_construction: usize,
    /// `ef` for the top-k search that seeds a query given as a vector (a
    /// query that is a point of the index starts from that point), and the
    /// beam of a nearest-neighbour search.
    pub ef_search: usize,
    /// Threads inserting points while building or catching up (0: all
    /// cores). 1 inserts in sample order and gives the same graph, and so
    /// the same hnsw counts, on every run; more threads build faster but
    /// race, and the graph (and counts, within the stated recall) differs
    /// from run to run. Recorded with the index, so a catch-up inserts the
    /// way the index was built.
    #[serde(default = "serial")]
    pub build_threads: usize,
}

fn serial() -> usize {
    1
}

impl Default for IndexParams {
    /// The build rate is the bottleneck, and radius queries complete their
    /// counts by graph expansion, so a modest `ef_construction` loses
    /// little count recall. Measured on `benches/compare.py`'s 100,000
    /// samples (1,000 anchors, 2 threads building): `ef_construction` 64
    /// built in 47 s with count recall 0.9938, 200 in 121 s with 0.9999;
    /// the serial build at 64 gave 0.9990. 64 keeps the stated 0.99.
    fn default() -> Self {
        IndexParams {
            m: 16,
            ef_construction: 64,
            ef_search: 64,
            build_threads: 1,
        }
    }
}

/// What a generation of the index covers, as recorded in `current.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Number of samples (points) in the index.
    pub n_points: u64,
    /// Largest sample id covered (0 when empty).
    pub max_sample_id: i64,
    /// xxh3 of the covered sample ids in order, to catch any other mismatch
    /// (a dropped batch, a catalog replaced by another).
    pub ids_hash: u64,
}

impl Coverage {
    /// Coverage of a list of sample ids, in order.
    pub fn of(sample_ids: &[i64]) -> Coverage {
        Coverage {
            n_points: sample_ids.len() as u64,
            max_sample_id: sample_ids.last().copied().unwrap_or(0),
            ids_hash: ids_hash(sample_ids),
        }
    }
}

/// Hash of a list of sample ids (little-endian bytes), stable across runs.
pub fn ids_hash(sample_ids: &[i64]) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for id in sample_ids {
        hasher.update(&id.to_le_bytes());
    }
    hasher.digest()
}

/// The published state of an index folder (`current.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    format_version: u32,
    model: String,
    dim: usize,
    generation: u64,
    params: IndexParams,
    coverage: Coverage,
}

/// A loaded HNSW index for one model.
pub struct ModelIndex {
    hnsw: Hnsw<'static, f32, UnitDot>,
    /// Points by data id, for their vectors.
    points: Vec<Arc<Point<'static, f32>>>,
    /// Bottom-layer links in compressed-row form: the links of data id `i`
    /// are `links[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<usize>,
    links: Vec<u32>,
    /// Catalog sample id of each data id.
    sample_ids: Vec<i64>,
    dim: usize,
    params: IndexParams,
}

impl std::fmt::Debug for ModelIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelIndex")
            .field("n_points", &self.sample_ids.len())
            .field("dim", &self.dim)
            .field("params", &self.params)
            .finish()
    }
}

impl ModelIndex {
    /// Builds an index over unit vectors (one row per sample, in sample-id
    /// order), inserting with `params.build_threads` threads.
    pub fn build(
        vectors: ArrayView2<'_, f32>,
        sample_ids: Vec<i64>,
        params: IndexParams,
        progress: &indicatif::ProgressBar,
    ) -> Result<ModelIndex> {
        assert_eq!(vectors.nrows(), sample_ids.len());
        let n = vectors.nrows();
        let dim = vectors.ncols();
        let hnsw =
            Hnsw::<f32, UnitDot>::new(params.m, n.max(1), 16, params.ef_construction, UnitDot);
        let mut index = ModelIndex {
            hnsw,
            points: Vec::new(),
            offsets: Vec::new(),
            links: Vec::new(),
            sample_ids: Vec::new(),
            dim,
            params,
        };
        index.insert(vectors, sample_ids, progress)?;
        Ok(index)
    }

    /// Appends new rows (the next data ids, in sample-id order).
    pub fn insert(
        &mut self,
        vectors: ArrayView2<'_, f32>,
        sample_ids: Vec<i64>,
        progress: &indicatif::ProgressBar,
    ) -> Result<()> {
        if vectors.nrows() == 0 {
            return Ok(());
        }
        if vectors.ncols() != self.dim {
            return Err(Error::Dimension {
                what: "index insertion".into(),
                expected: self.dim,
                got: vectors.ncols(),
            });
        }
        let vectors = vectors.as_standard_layout();
        let first = self.sample_ids.len();
        self.hnsw.set_searching_mode(false);
        // Serially (`build_threads` 1), points go in one by one in sample
        // order: hnsw_rs draws levels from a fixed seed, so the graph, and
        // with it every hnsw count, is the same on every run. hnsw_rs's
        // parallel insertion races, and its graph differs from run to run
        // (the accuracy test holds such graphs to the same count recall).
        // So serial is the default and threads are asked for
        // (`--index-threads`). Slices only move the progress bar.
        const SLICE: usize = 8192;
        let pool = match self.params.build_threads {
            1 => None,
            threads => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .map_err(|e| Error::InvalidArgument(format!("index build threads: {e}")))?,
            ),
        };
        let rows: Vec<&[f32]> = vectors
            .outer_iter()
            .map(|row| row.to_slice().expect("standard layout"))
            .collect();
        for (chunk_index, chunk) in rows.chunks(SLICE).enumerate() {
            let batch: Vec<(&[f32], usize)> = chunk
                .iter()
                .enumerate()
                .map(|(i, row)| (*row, first + chunk_index * SLICE + i))
                .collect();
            match &pool {
                None => {
                    for &(row, id) in &batch {
                        self.hnsw.insert_slice((row, id));
                    }
                }
                Some(pool) => pool.install(|| self.hnsw.parallel_insert_slice(&batch)),
            }
            progress.inc(chunk.len() as u64);
        }
        self.hnsw.set_searching_mode(true);
        self.sample_ids.extend(sample_ids);
        self.refresh_graph_view();
        Ok(())
    }

    /// Copies the bottom layer's links into flat arrays, indexed by data id.
    fn refresh_graph_view(&mut self) {
        let n = self.hnsw.get_nb_point();
        let mut points: Vec<Option<Arc<Point<'static, f32>>>> = vec![None; n];
        for point in self.hnsw.get_point_indexation() {
            let id = point.get_origin_id();
            if id < n {
                points[id] = Some(point);
            }
        }
        let points: Vec<Arc<Point<'static, f32>>> = points
            .into_iter()
            .map(|p| p.expect("every data id 0..n is in the graph"))
            .collect();
        let neighbourhoods: Vec<Vec<u32>> = points
            .par_iter()
            .map(|point| {
                let layers = point.get_neighborhood_id();
                layers
                    .first()
                    .map(|bottom| bottom.iter().map(|nb| nb.get_origin_id() as u32).collect())
                    .unwrap_or_default()
            })
            .collect();
        let mut offsets = Vec::with_capacity(n + 1);
        let mut links = Vec::with_capacity(neighbourhoods.iter().map(Vec::len).sum());
        offsets.push(0);
        for list in neighbourhoods {
            links.extend(list);
            offsets.push(links.len());
        }
        self.points = points;
        self.offsets = offsets;
        self.links = links;
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.sample_ids.len()
    }

    /// Whether the index holds no point.
    pub fn is_empty(&self) -> bool {
        self.sample_ids.is_empty()
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The graph parameters.
    pub fn params(&self) -> IndexParams {
        self.params
    }

    /// Catalog sample ids by data id.
    pub fn sample_ids(&self) -> &[i64] {
        &self.sample_ids
    }

    /// What this index covers.
    pub fn coverage(&self) -> Coverage {
        Coverage::of(&self.sample_ids)
    }

    /// The unit vector of a data id.
    #[inline]
    pub fn vector(&self, data_id: usize) -> &[f32] {
        self.points[data_id].get_v()
    }

    /// Bottom-layer links of a data id.
    #[inline]
    pub fn links(&self, data_id: usize) -> &[u32] {
        &self.links[self.offsets[data_id]..self.offsets[data_id + 1]]
    }

    /// The `k` approximate nearest data ids with their index distance
    /// (`1 - dot`), nearest first.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<(usize, f32)> {
        self.hnsw
            .search(query, k, ef.max(k))
            .into_iter()
            .map(|nb| (nb.get_origin_id(), nb.get_distance()))
            .collect()
    }

    /// Writes this index as a new generation of `dir` and publishes it.
    pub fn save(&self, dir: &Path, model: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let previous = read_manifest(dir).ok();
        let generation = previous.as_ref().map_or(1, |m| m.generation + 1);
        let gen_dir = dir.join(format!("gen-{generation}"));
        if gen_dir.exists() {
            std::fs::remove_dir_all(&gen_dir).map_err(|e| Error::io(&gen_dir, e))?;
        }
        std::fs::create_dir_all(&gen_dir).map_err(|e| Error::io(&gen_dir, e))?;
        let basename = self
            .hnsw
            .file_dump(&gen_dir, DUMP_BASENAME)
            .map_err(|e| Error::Index {
                path: gen_dir.clone(),
                reason: format!("hnsw_rs could not write its dump: {e}"),
            })?;
        if basename != DUMP_BASENAME {
            return Err(Error::Index {
                path: gen_dir,
                reason: format!("hnsw_rs wrote {basename:?} instead of {DUMP_BASENAME:?}"),
            });
        }
        let ids_path = gen_dir.join("sample_ids.npy");
        ndarray_npy::write_npy(&ids_path, &Array1::from(self.sample_ids.clone())).map_err(|e| {
            Error::Index {
                path: ids_path.clone(),
                reason: e.to_string(),
            }
        })?;
        sync_dir(&gen_dir)?;
        let manifest = Manifest {
            format_version: INDEX_FORMAT_VERSION,
            model: model.to_string(),
            dim: self.dim,
            generation,
            params: self.params,
            coverage: self.coverage(),
        };
        let tmp = dir.join("current.json.tmp");
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, dir.join("current.json")).map_err(|e| Error::io(dir, e))?;
        sync_dir(dir)?;
        // Older generations are no longer referenced.
        remove_other_generations(dir, generation);
        Ok(())
    }

    /// Loads the published generation of `dir`, memory-mapping the vectors.
    ///
    /// Returns the index and the coverage its manifest records; the caller
    /// compares that with the catalog before trusting it.
    pub fn load(dir: &Path, mmap: bool) -> Result<ModelIndex> {
        let manifest = read_manifest(dir)?;
        if manifest.format_version != INDEX_FORMAT_VERSION {
            return Err(Error::Index {
                path: dir.to_path_buf(),
                reason: format!(
                    "format version {} (this modeaudit writes {INDEX_FORMAT_VERSION}); rebuild it",
                    manifest.format_version
                ),
            });
        }
        let gen_dir = dir.join(format!("gen-{}", manifest.generation));
        let ids_path = gen_dir.join("sample_ids.npy");
        let ids: Array1<i64> = ndarray_npy::read_npy(&ids_path).map_err(|e| Error::Index {
            path: ids_path.clone(),
            reason: e.to_string(),
        })?;
        let sample_ids = ids.to_vec();
        if Coverage::of(&sample_ids) != manifest.coverage {
            return Err(Error::Index {
                path: ids_path,
                reason: "sample ids do not match the manifest".into(),
            });
        }
        // hnsw_rs borrows the loader for the life of the index (its vectors
        // may be memory-mapped from it). A loaded index lives until the
        // process ends in every use we make of it, so we leak the loader
        // rather than tie the index to a borrow; each load costs one small
        // struct and one mapping for the rest of the process.
        let options = ReloadOptions::default().set_mmap(mmap);
        // hnsw_rs panics (asserts) on some malformed files instead of
        // returning an error; turn that into a stale index to rebuild.
        let loaded = std::panic::catch_unwind(|| {
            let loader: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new_with_options(
                &gen_dir,
                DUMP_BASENAME,
                options,
            )));
            loader.load_hnsw::<f32, UnitDot>()
        });
        let mut hnsw = match loaded {
            Ok(Ok(hnsw)) => hnsw,
            Ok(Err(e)) => {
                return Err(Error::Index {
                    path: gen_dir,
                    reason: format!("cannot load: {e}"),
                });
            }
            Err(_) => {
                return Err(Error::Index {
                    path: gen_dir,
                    reason: "corrupt graph files".into(),
                });
            }
        };
        if hnsw.get_nb_point() != sample_ids.len() {
            return Err(Error::Index {
                path: gen_dir,
                reason: format!(
                    "graph holds {} points but the manifest {}",
                    hnsw.get_nb_point(),
                    sample_ids.len()
                ),
            });
        }
        hnsw.set_searching_mode(true);
        let mut index = ModelIndex {
            hnsw,
            points: Vec::new(),
            offsets: Vec::new(),
            links: Vec::new(),
            sample_ids,
            dim: manifest.dim,
            params: manifest.params,
        };
        index.refresh_graph_view();
        Ok(index)
    }
}

/// Reads the coverage an index folder claims, without loading the graph.
pub fn published_coverage(dir: &Path) -> Option<(Coverage, IndexParams)> {
    let manifest = read_manifest(dir).ok()?;
    (manifest.format_version == INDEX_FORMAT_VERSION)
        .then_some((manifest.coverage, manifest.params))
}

/// The state of a model's index folder against the catalog's sample ids,
/// as `modeaudit check` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum IndexState {
    /// No index yet: it is built on first use.
    Missing,
    /// Covers exactly the catalog's samples and loads.
    Current,
    /// Covers a prefix of the catalog's samples; the next use inserts the
    /// rest.
    Behind { missing: usize },
    /// Covers samples the catalog no longer has, or in another order (a
    /// dropped batch, a replaced catalog): rebuilt on next use.
    Stale,
    /// Cannot be read or loaded; rebuilt on next use.
    Damaged { reason: String },
}

/// Compares a model's index folder with the catalog's sample ids. With
/// `load`, a folder that claims to be current is also loaded, to catch
/// damaged graph files.
pub fn inspect(dir: &Path, ids: &[i64], load: bool) -> IndexState {
    if !dir.join("current.json").exists() {
        return IndexState::Missing;
    }
    let manifest = match read_manifest(dir) {
        Ok(m) => m,
        Err(e) => {
            return IndexState::Damaged {
                reason: e.to_string(),
            };
        }
    };
    if manifest.format_version != INDEX_FORMAT_VERSION {
        return IndexState::Damaged {
            reason: format!("format version {}", manifest.format_version),
        };
    }
    let covered = manifest.coverage.n_points as usize;
    if covered > ids.len() || Coverage::of(&ids[..covered]) != manifest.coverage {
        return IndexState::Stale;
    }
    if covered < ids.len() {
        return IndexState::Behind {
            missing: ids.len() - covered,
        };
    }
    if load && let Err(e) = ModelIndex::load(dir, true) {
        return IndexState::Damaged {
            reason: e.to_string(),
        };
    }
    IndexState::Current
}

/// Files in a model's index folder that no published generation uses:
/// older or unfinished generations, and a manifest that was never renamed
/// into place (both left by a crash).
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let live = read_manifest(dir)
        .ok()
        .map(|m| format!("gen-{}", m.generation));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            (name.starts_with("gen-") && Some(&name) != live.as_ref()) || name.ends_with(".tmp")
        })
        .map(|entry| entry.path())
        .collect();
    found.sort();
    found
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("current.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Index {
        path,
        reason: format!("unreadable manifest: {e}"),
    })
}

fn remove_other_generations(dir: &Path, keep: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("gen-")
            && name != format!("gen-{keep}")
            && let Err(e) = std::fs::remove_dir_all(entry.path())
        {
            tracing::warn!("could not remove old index generation {}: {e}", name);
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// The folder beside a catalog that holds its models' indexes:
/// `<catalog>.index`.
pub fn index_root(catalog: &Path) -> PathBuf {
    let mut root = catalog.as_os_str().to_owned();
    root.push(".index");
    PathBuf::from(root)
}

/// The folder of a model's index beside a catalog: `<catalog>.index/<key>`,
/// where the key keeps the model name readable and adds a hash so that any
/// name maps to a safe, distinct folder.
pub fn model_index_dir(catalog: &Path, model: &str) -> PathBuf {
    let readable: String = model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    let hash = xxhash_rust::xxh3::xxh3_64(model.as_bytes());
    index_root(catalog).join(format!("{readable}-{hash:016x}"))
}

/// How [`sync`] brought the index up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncAction {
    /// The published index covered the catalog exactly.
    Loaded,
    /// The index was behind and new samples were inserted.
    CaughtUp { inserted: usize },
    /// No usable index: built from scratch.
    Built,
}

impl std::fmt::Display for SyncAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncAction::Loaded => write!(f, "loaded"),
            SyncAction::CaughtUp { inserted } => write!(f, "caught up ({inserted} inserted)"),
            SyncAction::Built => write!(f, "built"),
        }
    }
}

/// An index brought up to date with the catalog, and how.
#[derive(Debug)]
pub struct Synced {
    pub index: ModelIndex,
    pub action: SyncAction,
    /// Seconds spent loading, inserting or building.
    pub elapsed_s: f64,
}

/// Loads the model's index and brings it up to date with the catalog:
/// loads it if it covers the catalog, inserts what is missing if it is only
/// behind, and rebuilds it if it disagrees in any other way (or is missing,
/// corrupt or of another format). Publishes any change.
///
/// The catalog is opened only to read ids and embeddings, and closed while
/// the graph is built.
pub fn sync(
    catalog_path: &Path,
    model: &str,
    params: IndexParams,
    progress: crate::progress::Progress,
) -> Result<Synced> {
    let started = std::time::Instant::now();
    let dir = model_index_dir(catalog_path, model);
    let ids = {
        let catalog = crate::catalog::Catalog::open(catalog_path)?;
        catalog.require_model(model)?;
        catalog.sample_ids(model)?
    };
    if ids.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "model {model:?} has no samples to index"
        )));
    }
    if let Some((coverage, _)) = published_coverage(&dir) {
        let covered = coverage.n_points as usize;
        if covered <= ids.len() && Coverage::of(&ids[..covered]) == coverage {
            match ModelIndex::load(&dir, covered == ids.len()) {
                Ok(index) if covered == ids.len() => {
                    let elapsed_s = started.elapsed().as_secs_f64();
                    tracing::debug!(points = covered, elapsed_s, "index loaded");
                    return Ok(Synced {
                        index,
                        action: SyncAction::Loaded,
                        elapsed_s,
                    });
                }
                Ok(mut index) => {
                    let (new_ids, vectors) = {
                        let catalog = crate::catalog::Catalog::open(catalog_path)?;
                        catalog.embeddings(model, coverage.max_sample_id)?
                    };
                    let inserted = new_ids.len();
                    tracing::info!(inserted, "index behind the catalog; inserting new samples");
                    let bar = progress.bar(inserted as u64, "indexing");
                    index.insert(vectors.view(), new_ids, &bar)?;
                    bar.finish_and_clear();
                    index.save(&dir, model)?;
                    let elapsed_s = started.elapsed().as_secs_f64();
                    return Ok(Synced {
                        index,
                        action: SyncAction::CaughtUp { inserted },
                        elapsed_s,
                    });
                }
                Err(e) => tracing::warn!("rebuilding the index: {e}"),
            }
        } else {
            tracing::warn!(
                "index at {} disagrees with the catalog (a dropped or replaced batch?); rebuilding",
                dir.display()
            );
        }
    }
    let (ids, vectors) = {
        let catalog = crate::catalog::Catalog::open(catalog_path)?;
        catalog.embeddings(model, 0)?
    };
    let bar = progress.bar(ids.len() as u64, "indexing");
    let index = ModelIndex::build(vectors.view(), ids, params, &bar)?;
    bar.finish_and_clear();
    index.save(&dir, model)?;
    let elapsed_s = started.elapsed().as_secs_f64();
    Ok(Synced {
        index,
        action: SyncAction::Built,
        elapsed_s,
    })
}
