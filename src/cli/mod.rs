//! Argument parsing and dispatch.

mod demo;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use modeaudit::audit::{self, AuditOptions, ModesOptions, NeighborLimit, NeighborQuery};
use modeaudit::blackbox::RunOptions;
use modeaudit::blackbox::onnx::Device;
use modeaudit::blackbox::preprocess::{ChannelOrder, InputScale};
use modeaudit::calibrate::gmm::{CovariancePolicy, Space};
use modeaudit::calibrate::{self, CalibrateOptions, Method};
use modeaudit::catalog::Catalog;
use modeaudit::compare;
use modeaudit::index::{self, IndexParams};
use modeaudit::ingest::{self, ExportFormat, IngestOptions};
use modeaudit::progress::Progress;
use modeaudit::search::SearchMode;
use modeaudit::update::{self, ModeCheck, UpdateOptions};
use modeaudit::{maintenance, sampling, vecfile};

use output::Output;

/// Audit generative models for intra-mode collapse, as a black box.
#[derive(Debug, Parser)]
#[command(name = "modeaudit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every command shares.
#[derive(Debug, Args, Clone)]
struct Common {
    /// The catalog file (DuckDB); the index lives beside it in FILE.index/.
    #[arg(
        long,
        global = true,
        env = "MODEAUDIT_CATALOG",
        default_value = "modeaudit.duckdb"
    )]
    catalog: PathBuf,
    /// Print one JSON object on stdout instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// More log output on stderr (-v: info, -vv: debug).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// HNSW graph parameters, for commands that may build the index.
#[derive(Debug, Args, Clone, Copy)]
struct IndexArgs {
    /// Links per point and layer (M) when building the index.
    #[arg(long, default_value_t = IndexParams::default().m)]
    hnsw_m: usize,
    /// Candidate list length while building the index.
    #[arg(long, default_value_t = IndexParams::default().ef_construction)]
    ef_construction: usize,
    /// Candidate list length of the search that seeds a query.
    #[arg(long, default_value_t = IndexParams::default().ef_search)]
    ef_search: usize,
    /// Threads inserting into a new index (0: all cores). 1 builds the same
    /// graph on every run; more threads build faster, but the graph and its
    /// hnsw counts (within the stated recall) then differ from run to run.
    #[arg(long, default_value_t = IndexParams::default().build_threads)]
    index_threads: usize,
}

impl IndexArgs {
    fn params(self) -> anyhow::Result<IndexParams> {
        anyhow::ensure!(
            (2..=255).contains(&self.hnsw_m),
            "--hnsw-m must be between 2 and 255"
        );
        anyhow::ensure!(
            self.ef_construction >= 1,
            "--ef-construction must be positive"
        );
        anyhow::ensure!(self.ef_search >= 1, "--ef-search must be positive");
        Ok(IndexParams {
            m: self.hnsw_m,
            ef_construction: self.ef_construction,
            ef_search: self.ef_search,
            build_threads: self.index_threads,
        })
    }
}

/// The descriptor and the preprocessing between an ONNX generator and it.
/// Given here, they are folded into the generator's specification (see
/// `src/blackbox/onnx.rs`), which is what the catalog stores.
#[derive(Debug, Args, Clone)]
struct DescriptorArgs {
    /// The identity descriptor that embeds an onnx: generator's images:
    /// onnx:PATH.
    #[arg(long)]
    descriptor: Option<String>,
    /// Generator output values that map to black and white, LO:HI
    /// (default -1:1).
    #[arg(long, allow_hyphen_values = true)]
    generator_range: Option<String>,
    /// Fraction of each side kept by a centre crop before resizing
    /// (default 1: no crop).
    #[arg(long)]
    crop: Option<f32>,
    /// Channel order of the descriptor's input (default rgb).
    #[arg(long, value_enum)]
    channel_order: Option<ChannelOrder>,
    /// How the descriptor's input is scaled from pixels p in 0..255
    /// (default arcface: (p - 127.5) / 127.5).
    #[arg(long, value_enum)]
    input_scale: Option<InputScale>,
    /// Embed each image and its mirror image and combine them (the
    /// authors' flip trick).
    #[arg(long)]
    flip: bool,
    /// Where ONNX models run.
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
}

impl DescriptorArgs {
    /// The generator specification with the descriptor options folded in.
    fn spec(&self, generator: &str) -> anyhow::Result<String> {
        let mut options: Vec<String> = Vec::new();
        if let Some(d) = &self.descriptor {
            options.push(format!(
                "descriptor={}",
                d.strip_prefix("onnx:").unwrap_or(d)
            ));
        }
        if let Some(r) = &self.generator_range {
            options.push(format!("range={r}"));
        }
        if let Some(c) = self.crop {
            options.push(format!("crop={c}"));
        }
        if let Some(o) = self.channel_order {
            options.push(format!("order={}", value_name(o)));
        }
        if let Some(s) = self.input_scale {
            options.push(format!("scale={}", value_name(s)));
        }
        if self.flip {
            options.push("flip=true".into());
        }
        if options.is_empty() {
            return Ok(generator.to_string());
        }
        anyhow::ensure!(
            generator.starts_with("onnx:"),
            "--descriptor and the preprocessing options apply to an onnx: generator, not {generator:?}"
        );
        Ok(format!("{generator},{}", options.join(",")))
    }
}

fn value_name<T: clap::ValueEnum>(value: T) -> String {
    value
        .to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Draw samples from a black box into a model.
    Sample {
        #[arg(long)]
        model: String,
        /// The black box: synthetic[:key=value,...], onnx:PATH (with
        /// --descriptor) or cmd:"PROGRAM ARGS" (see the README).
        #[arg(
            long,
            required_unless_present = "calibration",
            conflicts_with = "calibration"
        )]
        generator: Option<String>,
        /// Draw the latent codes through a stored calibration instead; its
        /// source model's black box embeds them.
        #[arg(long)]
        calibration: Option<i64>,
        /// Number of samples to add.
        #[arg(long)]
        n: usize,
        /// Seed of the run's latent codes (default: derived from the model
        /// and its run number). A seed already used for the model is
        /// refused, unless its run was interrupted and this is the same
        /// command: then the run continues where it stopped.
        #[arg(long)]
        seed: Option<u64>,
        /// Samples committed per batch: a kill loses at most one chunk.
        #[arg(long, default_value_t = sampling::DEFAULT_CHUNK)]
        chunk: usize,
        /// Latent codes per call to the black box (default: its own choice).
        #[arg(long)]
        batch: Option<usize>,
        /// Seconds to wait for an external program's greeting or answer.
        #[arg(long, default_value_t = 600.0)]
        timeout: f64,
        #[command(flatten)]
        descriptor: DescriptorArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Fit a calibration (gmm or hull) around a model's worst-case mode.
    Calibrate {
        #[arg(long)]
        model: String,
        #[arg(long, value_enum)]
        method: Method,
        /// Audit whose worst-case mode to target (default: the latest).
        #[arg(long)]
        audit: Option<i64>,
        /// Target this sample instead of the audit's worst-case mode.
        #[arg(long)]
        mode: Option<i64>,
        /// Neighbour radius (default: the audit's).
        #[arg(long)]
        radius: Option<f64>,
        /// Seed of k-means, of the probes and of the estimates.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// gmm: mixture components (k-means clusters).
        #[arg(long, default_value_t = 50)]
        components: usize,
        /// gmm: which covariances the components may have.
        #[arg(long, value_enum, default_value_t = CovariancePolicy::Auto)]
        covariance: CovariancePolicy,
        /// gmm: cluster the whole latent code (`latent`, the authors'
        /// method) or the --dims directions that set the mode's codes apart,
        /// keeping the prior elsewhere (`mode`, our addition; it isolates a
        /// dense region that whole-code clusters cannot in a large latent
        /// space).
        #[arg(long, value_enum, default_value_t = Space::Mode)]
        space: Space,
        /// gmm: lower components whose share of members near the mode
        /// exceeds this rate (default: the median neighbour rate of random
        /// anchors).
        #[arg(long)]
        target_rate: Option<f64>,
        /// hull: build the hull from the codes of this many samples nearest
        /// the mode (default: all within the radius).
        #[arg(long)]
        points: Option<usize>,
        /// hull, and gmm with --space mode: directions the mode's codes are
        /// projected onto.
        #[arg(long, default_value_t = 4)]
        dims: usize,
        /// hull: slack of the facet test, relative to the points' spread.
        #[arg(long, default_value_t = 1e-9)]
        tolerance: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Compare two audits: the targeted mode's rate and MCCS, population
    /// MCCS, worst-case modes, Frechet distance.
    Compare {
        /// The audit before, then the audit after (give --audit twice).
        #[arg(long = "audit", required = true, num_args = 1)]
        audits: Vec<i64>,
        #[command(flatten)]
        common: Common,
    },
    /// Write calibrated latent codes to a .npy file, for users who run their
    /// generator themselves.
    Latents {
        #[arg(long)]
        calibration: i64,
        #[arg(long)]
        n: usize,
        /// The .npy file to write (float32, n x latent size).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Import embeddings (and their latent codes) from .npy, .npz or Parquet.
    Ingest {
        #[arg(long)]
        model: String,
        /// Embeddings, one row per sample.
        #[arg(long)]
        embeddings: PathBuf,
        /// Their latent codes, one row per embedding (may be the same .npz or
        /// Parquet file).
        #[arg(long)]
        latents: Option<PathBuf>,
        /// The .npz array or Parquet column holding the embeddings
        /// (default: the only array, or `embeddings`; column `embedding`).
        #[arg(long)]
        embedding_key: Option<String>,
        /// The .npz array or Parquet column holding the latent codes
        /// (default: the only array, or `latents`; column `latent`).
        #[arg(long)]
        latent_key: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Write a model's samples and its latest audit's scores to files.
    Export {
        #[arg(long)]
        model: String,
        /// Folder to write into (created if needed).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = ExportFormat::Npy)]
        format: ExportFormat,
        #[command(flatten)]
        common: Common,
    },
    /// Audit a model with random anchors: neighbour counts, MCCS, worst-case mode.
    Audit {
        #[arg(long)]
        model: String,
        /// Number of anchors drawn from the samples.
        #[arg(long, default_value_t = 1000)]
        anchors: usize,
        /// Similarity threshold theta (a distance in [0, 1]).
        #[arg(long, default_value_t = 0.3)]
        theta: f64,
        /// Neighbour radius (default: theta).
        #[arg(long)]
        radius: Option<f64>,
        /// How to find neighbours.
        #[arg(long, value_enum, default_value_t = SearchMode::Auto)]
        search: SearchMode,
        /// Seed of the anchor draw.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Reuse the random anchors of this audit instead of drawing new
        /// ones (a full recomputation of the same anchors).
        #[arg(long, value_name = "AUDIT_ID", conflicts_with = "update")]
        anchors_from: Option<i64>,
        /// Bring an earlier audit (default: the model's latest) up to date
        /// with the samples added since, scanning only those.
        #[arg(long, value_name = "AUDIT_ID", num_args = 0..=1)]
        update: Option<Option<i64>>,
        /// With --update: look for new samples denser than every anchor
        /// through the index (auto: when the model has an index).
        #[arg(long, value_enum, default_value_t = ModeCheck::Auto, requires = "update")]
        mode_check: ModeCheck,
        /// With --update: new samples the mode check counts.
        #[arg(long, default_value_t = 64, requires = "update")]
        candidates: usize,
        /// With --update: add up to this many new samples denser than
        /// every anchor as anchors (reported apart).
        #[arg(long, default_value_t = 0, requires = "update")]
        add_anchors: usize,
        /// With --update: count added anchors in the population statistics.
        #[arg(long, requires = "update")]
        include_added: bool,
        /// Anchors to list in the table (all are stored).
        #[arg(long, default_value_t = 10)]
        show: usize,
        #[command(flatten)]
        index: IndexArgs,
        #[command(flatten)]
        common: Common,
    },
    /// How a model's population MCCS and worst-case mode moved across its
    /// audits.
    History {
        #[arg(long)]
        model: String,
        #[command(flatten)]
        common: Common,
    },
    /// Check the catalog and every model's index; --repair rebuilds what
    /// is stale and removes leftovers.
    Check {
        /// Only this model's index (default: every model).
        #[arg(long)]
        model: Option<String>,
        /// Bring stale or damaged indexes up to date and remove leftover
        /// files.
        #[arg(long)]
        repair: bool,
        #[command(flatten)]
        index: IndexArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Remove a model, or one batch, with the audits that saw its samples
    /// and its index.
    Drop {
        /// The model to remove whole.
        #[arg(long, required_unless_present = "batch", conflicts_with = "batch")]
        model: Option<String>,
        /// The batch to remove (its model's audits that saw it go too).
        #[arg(long)]
        batch: Option<i64>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Find the worst-case modes over every sample, through the index.
    Modes {
        #[arg(long)]
        model: String,
        /// Number of distinct modes to report.
        #[arg(long, default_value_t = 5)]
        top: usize,
        #[arg(long, default_value_t = 0.3)]
        theta: f64,
        #[arg(long)]
        radius: Option<f64>,
        /// Distinct dense regions to examine.
        #[arg(long, default_value_t = 64)]
        seeds: usize,
        /// Candidates counted exactly around each region's seed.
        #[arg(long, default_value_t = 16)]
        per_seed: usize,
        #[command(flatten)]
        index: IndexArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Look up neighbours of a sample or of a vector in the index.
    Neighbors {
        #[arg(long)]
        model: String,
        /// A sample of the model.
        #[arg(long, conflicts_with = "vector", required_unless_present = "vector")]
        id: Option<i64>,
        /// A .npy file holding one vector.
        #[arg(long)]
        vector: Option<PathBuf>,
        /// Number of nearest neighbours (default 10).
        #[arg(long, conflicts_with = "radius")]
        k: Option<usize>,
        /// Every neighbour within this distance instead.
        #[arg(long)]
        radius: Option<f64>,
        /// Also draw the query and its neighbours, regenerated from their
        /// latent codes, as a PNG image grid (ONNX generators only).
        #[arg(long)]
        grid: Option<PathBuf>,
        /// Most neighbours drawn in the grid.
        #[arg(long, default_value_t = 15)]
        grid_max: usize,
        #[command(flatten)]
        index: IndexArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Build the model's index, or bring it up to date with the catalog.
    Index {
        #[arg(long)]
        model: String,
        /// Throw the existing index away and build it again.
        #[arg(long)]
        rebuild: bool,
        #[command(flatten)]
        index: IndexArgs,
        #[command(flatten)]
        common: Common,
    },
    /// List the catalog's models.
    Models {
        #[command(flatten)]
        common: Common,
    },
    /// Run a read-only SQL query on the catalog.
    Sql {
        /// The query (it may start with a `--` comment).
        #[arg(allow_hyphen_values = true)]
        query: String,
        #[command(flatten)]
        common: Common,
    },
    /// The main job on the built-in simulator, in a fresh catalog.
    Demo {
        /// Folder for the demo's catalog (emptied first).
        #[arg(long, default_value = "modeaudit-demo")]
        dir: PathBuf,
        /// Samples per model.
        #[arg(long, default_value_t = 50_000)]
        n: usize,
        /// Anchors per audit.
        #[arg(long, default_value_t = 1000)]
        anchors: usize,
        #[command(flatten)]
        common: Common,
    },
}

impl Command {
    fn common(&self) -> &Common {
        match self {
            Command::Sample { common, .. }
            | Command::Audit { common, .. }
            | Command::History { common, .. }
            | Command::Check { common, .. }
            | Command::Drop { common, .. }
            | Command::Modes { common, .. }
            | Command::Calibrate { common, .. }
            | Command::Compare { common, .. }
            | Command::Latents { common, .. }
            | Command::Ingest { common, .. }
            | Command::Export { common, .. }
            | Command::Neighbors { common, .. }
            | Command::Index { common, .. }
            | Command::Models { common }
            | Command::Sql { common, .. }
            | Command::Demo { common, .. } => common,
        }
    }
}

/// Entry point: errors are printed with their causes and exit with 2.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.command.common().verbose);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

/// Asks a yes-or-no question on stderr; refuses to guess when nobody can
/// answer (stdin is not a terminal).
fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "{question} Not confirmed: stdin is not a terminal, pass --yes"
    );
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("MODEAUDIT_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{default},hnsw_rs=warn,anndists=warn"))
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(command: Command) -> anyhow::Result<()> {
    let common = command.common().clone();
    let out = Output::new(common.json);
    let progress = if common.quiet {
        Progress::hidden()
    } else {
        Progress::stderr()
    };
    let catalog = common.catalog.as_path();
    match command {
        Command::Sample {
            model,
            generator,
            calibration,
            n,
            seed,
            batch,
            timeout,
            chunk,
            descriptor,
            ..
        } => {
            anyhow::ensure!(
                timeout.is_finite() && timeout > 0.0,
                "--timeout must be a positive number of seconds"
            );
            let options = sampling::SampleOptions {
                run: RunOptions {
                    timeout: Duration::from_secs_f64(timeout),
                    batch,
                    device: descriptor.device,
                },
                chunk,
            };
            let report = match (generator, calibration) {
                (_, Some(id)) => {
                    sampling::sample_calibrated(catalog, &model, id, n, seed, &options, progress)?
                }
                (Some(generator), None) => {
                    let spec = descriptor.spec(&generator)?;
                    sampling::sample_with(catalog, &model, &spec, n, seed, &options, progress)?
                }
                (None, None) => unreachable!("clap requires --generator or --calibration"),
            };
            out.sample(&report)
        }
        Command::Calibrate {
            model,
            method,
            audit,
            mode,
            radius,
            seed,
            components,
            covariance,
            space,
            target_rate,
            points,
            dims,
            tolerance,
            ..
        } => {
            let options = CalibrateOptions {
                model,
                method,
                audit_id: audit,
                mode,
                radius,
                seed,
                components,
                covariance,
                space,
                target_rate,
                points,
                dims,
                tolerance,
            };
            let report = calibrate::fit(catalog, &options)?;
            out.calibrate(&report)
        }
        Command::Compare { audits, .. } => {
            anyhow::ensure!(
                audits.len() == 2,
                "give --audit twice: the audit before, then after"
            );
            let report = compare::compare(catalog, audits[0], audits[1])?;
            out.compare(&report)
        }
        Command::Latents {
            calibration,
            n,
            out: path,
            seed,
            ..
        } => {
            anyhow::ensure!(n > 0, "--n must be at least 1");
            let (_, fitted) = calibrate::load(catalog, calibration)?;
            let (codes, drawn) = fitted.draw(n, seed);
            ndarray_npy::write_npy(&path, &codes)
                .with_context(|| format!("writing {}", path.display()))?;
            out.latents(calibration, &path, n, codes.ncols(), drawn)
        }
        Command::Ingest {
            model,
            embeddings,
            latents,
            embedding_key,
            latent_key,
            ..
        } => {
            let options = IngestOptions {
                model,
                embeddings,
                latents,
                embedding_key,
                latent_key,
            };
            let report = ingest::ingest(catalog, &options)?;
            out.ingest(&report)
        }
        Command::Export {
            model,
            out: dir,
            format,
            ..
        } => {
            let report = ingest::export(catalog, &model, &dir, format)?;
            out.export(&report)
        }
        Command::Audit {
            model,
            update: Some(audit_id),
            mode_check,
            candidates,
            add_anchors,
            include_added,
            show,
            index,
            ..
        } => {
            let options = UpdateOptions {
                model,
                audit_id,
                mode_check,
                candidates,
                add_anchors,
                include_added,
                index_params: index.params()?,
            };
            let report = update::update(catalog, &options, progress)?;
            out.update(&report, show)
        }
        Command::Audit {
            model,
            anchors,
            theta,
            radius,
            search,
            seed,
            anchors_from,
            show,
            index,
            ..
        } => {
            let options = AuditOptions {
                model,
                anchors,
                theta,
                radius,
                search,
                seed,
                anchors_from,
                index_params: index.params()?,
            };
            let report = audit::run_audit(catalog, &options, progress)?;
            out.audit(&report, show)
        }
        Command::Modes {
            model,
            top,
            theta,
            radius,
            seeds,
            per_seed,
            index,
            ..
        } => {
            let options = ModesOptions {
                model,
                top,
                theta,
                radius,
                seeds,
                per_seed,
                index_params: index.params()?,
            };
            let report = audit::find_modes(catalog, &options, progress)?;
            out.audit(&report, top)
        }
        Command::Neighbors {
            model,
            id,
            vector,
            k,
            radius,
            grid,
            grid_max,
            index,
            ..
        } => {
            let query = match (id, vector) {
                (Some(id), _) => NeighborQuery::Sample(id),
                (None, Some(path)) => {
                    let dim = Catalog::open(catalog)?.require_model(&model)?.embed_dim;
                    NeighborQuery::Vector(vecfile::read_query_vector(&path, dim)?)
                }
                (None, None) => unreachable!("clap requires --id or --vector"),
            };
            let limit = match radius {
                Some(r) => NeighborLimit::Radius(r),
                None => NeighborLimit::Nearest(k.unwrap_or(10)),
            };
            let report =
                audit::neighbors(catalog, &model, &query, limit, index.params()?, progress)?;
            out.neighbors(&report)?;
            if let Some(path) = grid {
                audit::draw_neighbors(catalog, &report, grid_max, &path)?;
                out.line(&format!("grid: {}", path.display()))?;
            }
            Ok(())
        }
        Command::Index {
            model,
            rebuild,
            index,
            ..
        } => {
            if rebuild {
                let dir = index::model_index_dir(catalog, &model);
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("removing {}", dir.display()))?;
                }
            }
            let synced = index::sync(catalog, &model, index.params()?, progress)?;
            out.index(&model, &synced)
        }
        Command::History { model, .. } => {
            let catalog = Catalog::open_read_only(catalog)?;
            catalog.require_model(&model)?;
            out.history(&model, &catalog.audits(&model)?)
        }
        Command::Check {
            model,
            repair,
            index,
            ..
        } => {
            let report =
                maintenance::check(catalog, model.as_deref(), repair, index.params()?, progress)?;
            out.check(&report)?;
            if !repair && !report.is_healthy() {
                anyhow::bail!(
                    "problems found; `modeaudit check --repair` mends what can be mended"
                );
            }
            Ok(())
        }
        Command::Drop {
            model, batch, yes, ..
        } => {
            let (target, preview) = {
                let c = Catalog::open_read_only(catalog)?;
                match (&model, batch) {
                    (Some(model), _) => {
                        c.require_model(model)?;
                        (format!("model {model:?}"), c.drop_preview(model, None)?)
                    }
                    (None, Some(batch)) => {
                        let model = c.batch_model(batch)?;
                        (
                            format!("batch {batch} of model {model:?}"),
                            c.drop_preview(&model, Some(batch))?,
                        )
                    }
                    (None, None) => unreachable!("clap requires --model or --batch"),
                }
            };
            let what = format!(
                "{target}: {} batches, {} samples, {} audits and the model's index",
                preview.batches, preview.samples, preview.audits
            );
            if !yes && !confirm(&format!("remove {what}?"))? {
                anyhow::bail!("nothing removed (answer y, or pass --yes)");
            }
            let dropped = match (model, batch) {
                (Some(model), _) => maintenance::drop_model(catalog, &model)?,
                (None, Some(batch)) => maintenance::drop_batch(catalog, batch)?,
                (None, None) => unreachable!("clap requires --model or --batch"),
            };
            out.dropped(&target, &dropped)
        }
        Command::Models { .. } => {
            let summaries = Catalog::open_read_only(catalog)?.model_summaries()?;
            out.models(&summaries)
        }
        Command::Sql { query, .. } => {
            let (columns, rows) = Catalog::open_read_only(catalog)?.query_json(&query)?;
            out.sql(&columns, &rows)
        }
        Command::Demo {
            dir, n, anchors, ..
        } => demo::run(&dir, n, anchors, &out, progress),
    }
}
