//! Argument parsing and dispatch.

mod demo;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use modeaudit::audit::{self, AuditOptions, ModesOptions, NeighborLimit, NeighborQuery};
use modeaudit::catalog::Catalog;
use modeaudit::index::{self, IndexParams};
use modeaudit::progress::Progress;
use modeaudit::search::SearchMode;
use modeaudit::{sampling, vecfile};

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
    #[arg(long, global = true, env = "MODEAUDIT_CATALOG", default_value = "modeaudit.duckdb")]
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
}

impl IndexArgs {
    fn params(self) -> anyhow::Result<IndexParams> {
        anyhow::ensure!((2..=255).contains(&self.hnsw_m), "--hnsw-m must be between 2 and 255");
        anyhow::ensure!(self.ef_construction >= 1, "--ef-construction must be positive");
        anyhow::ensure!(self.ef_search >= 1, "--ef-search must be positive");
        Ok(IndexParams { m: self.hnsw_m, ef_construction: self.ef_construction, ef_search: self.ef_search })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Draw samples from a black box into a model.
    Sample {
        #[arg(long)]
        model: String,
        /// The black box: synthetic[:key=value,...] (see the README).
        #[arg(long)]
        generator: String,
        /// Number of samples to add.
        #[arg(long)]
        n: usize,
        /// Seed of the latent codes (default: derived from the model and
        /// its batch number). A seed already used for the model is refused.
        #[arg(long)]
        seed: Option<u64>,
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
        /// Anchors to list in the table (all are stored).
        #[arg(long, default_value_t = 10)]
        show: usize,
        #[command(flatten)]
        index: IndexArgs,
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
        /// The query.
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
            | Command::Modes { common, .. }
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

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MODEAUDIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},hnsw_rs=warn,anndists=warn")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn run(command: Command) -> anyhow::Result<()> {
    let common = command.common().clone();
    let out = Output::new(common.json);
    let progress = if common.quiet { Progress::hidden() } else { Progress::stderr() };
    let catalog = common.catalog.as_path();
    match command {
        Command::Sample { model, generator, n, seed, .. } => {
            let report = sampling::sample(catalog, &model, &generator, n, seed, progress)?;
            out.sample(&report)
        }
        Command::Audit { model, anchors, theta, radius, search, seed, show, index, .. } => {
            let options = AuditOptions {
                model,
                anchors,
                theta,
                radius,
                search,
                seed,
                index_params: index.params()?,
            };
            let report = audit::run_audit(catalog, &options, progress)?;
            out.audit(&report, show)
        }
        Command::Modes { model, top, theta, radius, seeds, per_seed, index, .. } => {
            let options =
                ModesOptions { model, top, theta, radius, seeds, per_seed, index_params: index.params()? };
            let report = audit::find_modes(catalog, &options, progress)?;
            out.audit(&report, top)
        }
        Command::Neighbors { model, id, vector, k, radius, index, .. } => {
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
            let report = audit::neighbors(catalog, &model, &query, limit, index.params()?, progress)?;
            out.neighbors(&report)
        }
        Command::Index { model, rebuild, index, .. } => {
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
        Command::Models { .. } => {
            let summaries = Catalog::open_read_only(catalog)?.model_summaries()?;
            out.models(&summaries)
        }
        Command::Sql { query, .. } => {
            let (columns, rows) = Catalog::open_read_only(catalog)?.query_json(&query)?;
            out.sql(&columns, &rows)
        }
        Command::Demo { dir, n, anchors, .. } => demo::run(&dir, n, anchors, &out, progress),
    }
}
