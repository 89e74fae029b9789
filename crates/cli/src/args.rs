//! Command-line grammar. Global options may appear before or after the subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Astrocyte: a memory server for AI agents.
#[derive(Debug, Parser)]
#[command(name = "astrocyte", version, about)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Data directory of the embedded store (must exist when given; the default is created).
    #[arg(long, global = true, env = "ASTROCYTE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL; selects the PostgreSQL store instead of the embedded one.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Tenant schema to act in.
    #[arg(
        long,
        global = true,
        env = "ASTROCYTE_TENANT",
        default_value = "public"
    )]
    pub tenant: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Embedding provider.
    #[arg(long, global = true, env = "ASTROCYTE_EMBEDDER", value_enum, default_value_t = EmbedderKind::Local)]
    pub embedder: EmbedderKind,
    /// Directory of the local model (fetch it with `bash scripts/fetch-model.sh DIR`).
    #[arg(
        long,
        global = true,
        env = "ASTROCYTE_MODEL_DIR",
        default_value = "models/all-MiniLM-L6-v2"
    )]
    pub model_dir: PathBuf,
    /// Base URL of an OpenAI-compatible embeddings API (with --embedder openai).
    #[arg(long, global = true, env = "ASTROCYTE_EMBEDDINGS_URL")]
    pub embeddings_url: Option<String>,
    /// Model name for --embedder openai.
    #[arg(long, global = true, env = "ASTROCYTE_EMBEDDINGS_MODEL")]
    pub embeddings_model: Option<String>,
    /// Vector dimension for --embedder openai.
    #[arg(long, global = true, env = "ASTROCYTE_EMBEDDINGS_DIMENSION")]
    pub embeddings_dimension: Option<usize>,
}

/// Embedding providers selectable by configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmbedderKind {
    /// all-MiniLM-L6-v2 run in-process (384 dimensions); no network at run time.
    Local,
    /// Deterministic hashing (bag of words, 128 dimensions); no model, no network.
    Hashing,
    /// An OpenAI-compatible HTTP embeddings API.
    Openai,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a memory.
    Retain(RetainArgs),
    /// Recall memories relevant to a query.
    Recall(RecallArgs),
    /// Answer a question from memories.
    Reflect(ReflectArgs),
    /// Forget memories by id, tag, date or the whole bank.
    Forget(ForgetArgs),
    /// List banks holding memories.
    Banks,
    /// Export a bank as AMA JSON Lines.
    Export(ExportArgs),
    /// Import AMA JSON Lines into a bank.
    Import(ImportArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Measure retrieval quality.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Run pending migrations (PostgreSQL): every tenant with --all-tenants, else --tenant.
    Migrate {
        /// Migrate every tenant in the directory, one status line each.
        #[arg(long)]
        all_tenants: bool,
    },
    /// Serve MCP over standard input/output for the tenant given by --tenant.
    Mcp(McpArgs),
    /// Serve the REST API (and background workers) until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Measure speed and memory on synthetic memories.
    Bench(crate::commands::bench::BenchArgs),
}

/// `serve` options; each mirrors an environment variable of the reference.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Bind address (ASTROCYTE_HOST; default 127.0.0.1).
    #[arg(long)]
    pub host: Option<String>,
    /// Port (ASTROCYTE_PORT; default 8080).
    #[arg(long)]
    pub port: Option<u16>,
    /// Also serve gRPC (astrocyte.v1) on this port of the same host (ASTROCYTE_GRPC_PORT; off
    /// unless set; 0 picks a free port).
    #[arg(long)]
    pub grpc_port: Option<u16>,
    /// YAML configuration file (instead of ASTROCYTE_CONFIG_PATH).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Do not run background workers in this process.
    #[arg(long)]
    pub no_workers: bool,
}

/// `mcp` options.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// YAML configuration file (its `mcp:` section; instead of ASTROCYTE_CONFIG_PATH).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Quality evaluations.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Evidence recall@k on the LoCoMo long-conversation benchmark (no LLM).
    Locomo(crate::commands::eval::LocomoArgs),
}

/// `retain` options.
#[derive(Debug, Args)]
pub struct RetainArgs {
    /// Bank to store into.
    #[arg(long)]
    pub bank: String,
    /// Tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Metadata as key=value (repeatable; values stay strings).
    #[arg(long = "meta", value_parser = parse_key_value)]
    pub metadata: Vec<(String, String)>,
    /// When it happened (RFC 3339).
    #[arg(long)]
    pub occurred_at: Option<String>,
    /// text, conversation or document.
    #[arg(long, default_value = "text")]
    pub content_type: String,
    /// Fact type (world, experience, opinion, observation…).
    #[arg(long)]
    pub fact_type: Option<String>,
    /// Origin identifier.
    #[arg(long)]
    pub source: Option<String>,
    /// The content; `-` reads standard input.
    pub content: String,
}

/// `recall` options.
#[derive(Debug, Args)]
pub struct RecallArgs {
    /// Bank to search (repeatable for several banks).
    #[arg(long = "bank", required = true)]
    pub banks: Vec<String>,
    /// Maximum hits.
    #[arg(long, default_value_t = 10)]
    pub max_results: usize,
    /// Token budget.
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Only memories with one of these tags (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Time travel: what was visible at this instant (RFC 3339).
    #[arg(long)]
    pub as_of: Option<String>,
    /// The query.
    pub query: String,
}

/// `reflect` options.
#[derive(Debug, Args)]
pub struct ReflectArgs {
    /// Bank to read.
    #[arg(long)]
    pub bank: String,
    /// Token budget.
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// The question.
    pub query: String,
}

/// `forget` options.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Bank.
    #[arg(long)]
    pub bank: String,
    /// Memory id (repeatable).
    #[arg(long = "id")]
    pub ids: Vec<String>,
    /// Tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Forget memories from before this instant (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    pub before: Option<String>,
    /// Forget the whole bank.
    #[arg(long)]
    pub all: bool,
    /// Erase for good (text and vectors), instead of a soft delete that keeps time travel.
    #[arg(long)]
    pub purge: bool,
}

/// `export` options.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Bank.
    #[arg(long)]
    pub bank: String,
    /// Output file; standard output when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Include vectors.
    #[arg(long)]
    pub include_embeddings: bool,
}

/// `import` options.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Bank.
    #[arg(long)]
    pub bank: String,
    /// skip or overwrite existing ids.
    #[arg(long, default_value = "skip")]
    pub on_conflict: String,
    /// AMA JSON Lines file.
    pub file: PathBuf,
}

/// Tenant administration.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (schema, role and tables).
    Create {
        /// Schema name.
        name: String,
    },
    /// List tenants.
    List,
    /// Drop a tenant and all its data.
    Drop {
        /// Schema name.
        name: String,
    },
}

fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {raw:?}"))
}
