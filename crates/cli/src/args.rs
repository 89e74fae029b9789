//! Command-line grammar. Global options may appear before or after the subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The version with the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BUILD_COMMIT"),
    ")"
);

/// Astrocyte: a memory server for AI agents.
///
/// Agents retain memories into banks, recall them with hybrid retrieval, reflect on them and
/// forget them, each tenant's data apart. Run `astrocyte serve` for REST, MCP and gRPC, or use
/// the commands below on the embedded store (or PostgreSQL with --database-url).
/// Settings: docs/configuration.md, `astrocyte config show`.
#[derive(Debug, Parser)]
#[command(name = "astrocyte", version = VERSION, about, long_about)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command. Each is a setting (`docs/configuration.md`): a flag beats
/// its environment variable, which beats the YAML file, which beats the default.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// YAML configuration file [env: ASTROCYTE_CONFIG_PATH].
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded store [env: ASTROCYTE_DATA_DIR] [default:
    /// $XDG_DATA_HOME/astrocyte, else ~/.local/share/astrocyte].
    #[arg(long, global = true)]
    pub data_dir: Option<String>,
    /// PostgreSQL URL; selects the PostgreSQL store instead of the embedded one [env:
    /// DATABASE_URL].
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// PostgreSQL streaming replica recall, history and export may read from; repeat for
    /// several [env: ASTROCYTE_POSTGRES_REPLICA_URLS, comma-separated].
    #[arg(long = "replica-url", global = true)]
    pub replica_urls: Vec<String>,
    /// Further PostgreSQL server tenants may be placed on (besides --database-url, which keeps
    /// the tenant directory); repeat for several [env: ASTROCYTE_POSTGRES_SERVER_URLS,
    /// comma-separated].
    #[arg(long = "server-url", global = true)]
    pub server_urls: Vec<String>,
    /// Tenant schema to act in [env: ASTROCYTE_TENANT] [default: public].
    #[arg(long, global = true)]
    pub tenant: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Embedding provider: local, hashing or openai [env: ASTROCYTE_EMBEDDER] [default: local].
    #[arg(long, global = true)]
    pub embedder: Option<String>,
    /// Directory of the local model [env: ASTROCYTE_MODEL_DIR] [default:
    /// models/bge-small-en-v1.5].
    #[arg(long, global = true)]
    pub model_dir: Option<String>,
    /// Base URL of an OpenAI-compatible embeddings API, with --embedder openai [env:
    /// ASTROCYTE_EMBEDDINGS_URL].
    #[arg(long, global = true)]
    pub embeddings_url: Option<String>,
    /// Model name for --embedder openai [env: ASTROCYTE_EMBEDDINGS_MODEL].
    #[arg(long, global = true)]
    pub embeddings_model: Option<String>,
    /// Vector dimension for --embedder openai [env: ASTROCYTE_EMBEDDINGS_DIMENSION].
    #[arg(long, global = true)]
    pub embeddings_dimension: Option<String>,
}

impl GlobalArgs {
    /// The settings flags the user passed, as `(flag, value)`.
    pub fn flags(&self) -> Vec<(&'static str, String)> {
        [
            ("--data-dir", &self.data_dir),
            ("--database-url", &self.database_url),
            ("--tenant", &self.tenant),
            ("--embedder", &self.embedder),
            ("--model-dir", &self.model_dir),
            ("--embeddings-url", &self.embeddings_url),
            ("--embeddings-model", &self.embeddings_model),
            ("--embeddings-dimension", &self.embeddings_dimension),
        ]
        .into_iter()
        .filter_map(|(flag, value)| value.clone().map(|v| (flag, v)))
        // A repeated flag is one list setting, written the way its variable is.
        .chain(
            (!self.replica_urls.is_empty()).then(|| ("--replica-url", self.replica_urls.join(","))),
        )
        .chain((!self.server_urls.is_empty()).then(|| ("--server-url", self.server_urls.join(","))))
        .collect()
    }
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
    /// List a bank's memories, newest first (or by id), a page at a time.
    List(ListArgs),
    /// Show one memory with its chunks and history.
    Get(GetArgs),
    /// Show a bank's change feed (created, updated, forgotten), or follow it.
    Changes(ChangesArgs),
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
        /// With --all-tenants or --status: only tenants whose schema starts with this.
        #[arg(long)]
        tenant_prefix: Option<String>,
        /// Report each tenant's recorded migration version without migrating anything.
        #[arg(long, conflicts_with = "all_tenants")]
        status: bool,
    },
    /// Serve MCP over standard input/output for the tenant given by --tenant.
    Mcp,
    /// Serve the REST API (and background workers) until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Measure speed and memory on synthetic memories.
    Bench(crate::commands::bench::BenchArgs),
    /// Connect an agent client (Claude Code, Claude Desktop, Cursor, Codex) to `astrocyte mcp`.
    Setup(crate::commands::setup::SetupArgs),
    /// Show, check or document the settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `astrocyte man > astrocyte.1`.
    Man,
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every effective setting with where it came from (secrets as ***).
    Show,
    /// Validate the settings (with FILE as the YAML file) without starting anything.
    Check {
        /// A YAML file to check instead of --config / ASTROCYTE_CONFIG_PATH.
        file: Option<PathBuf>,
    },
    /// Print the configuration reference (docs/configuration.md) generated from the table.
    Docs,
    /// Print the example YAML (docs/astrocyte.example.yaml) generated from the table.
    Example,
}

/// `serve` options; each is a setting (flag > environment > YAML > default).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Bind address [env: ASTROCYTE_HOST] [default: 127.0.0.1].
    #[arg(long)]
    pub host: Option<String>,
    /// REST and MCP port [env: ASTROCYTE_PORT] [default: 8080].
    #[arg(long)]
    pub port: Option<String>,
    /// Also serve gRPC (astrocyte.v1) on this port of the same host; off unless set, 0 picks a
    /// free port [env: ASTROCYTE_GRPC_PORT].
    #[arg(long)]
    pub grpc_port: Option<String>,
    /// Do not run background workers in this process.
    #[arg(long)]
    pub no_workers: bool,
}

impl ServeArgs {
    /// The settings flags the user passed.
    pub fn flags(&self) -> Vec<(&'static str, String)> {
        [
            ("--host", &self.host),
            ("--port", &self.port),
            ("--grpc-port", &self.grpc_port),
        ]
        .into_iter()
        .filter_map(|(flag, value)| value.clone().map(|v| (flag, v)))
        .collect()
    }
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
    /// The conversation or thread it belongs to (its turns lend each other keyword context).
    #[arg(long)]
    pub thread: Option<String>,
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
    /// Exit 0 even when some lines were refused (the good lines are imported either way).
    #[arg(long)]
    pub allow_partial: bool,
    /// AMA JSON Lines file.
    pub file: PathBuf,
}

/// `list` options.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Bank.
    #[arg(long)]
    pub bank: String,
    /// Memories per page (1 to 1000).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Continue after this cursor (printed at the end of the previous page).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Order: newest or id.
    #[arg(long, default_value = "newest")]
    pub order: String,
    /// Only memories with one of these tags (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only memories of this fact type (repeatable).
    #[arg(long = "fact-type")]
    pub fact_types: Vec<String>,
    /// Only memories whose text contains this (case-insensitive).
    #[arg(long)]
    pub contains: Option<String>,
    /// Only memories whose text starts with this (case-insensitive).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Only memories that happened at or after this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    pub since: Option<String>,
    /// Only memories that happened at or before this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    pub until: Option<String>,
}

/// `get` options.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Bank.
    #[arg(long)]
    pub bank: String,
    /// Memory id.
    pub id: String,
}

/// `changes` options.
#[derive(Debug, Args)]
pub struct ChangesArgs {
    /// Bank.
    #[arg(long)]
    pub bank: String,
    /// Start after this cursor; from the beginning when absent.
    #[arg(long)]
    pub since: Option<String>,
    /// Entries per read (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Keep following the feed (one JSON line per entry with --json) until interrupted.
    #[arg(long)]
    pub follow: bool,
}

/// Tenant administration.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create tenants (schema, role and tables), a few at a time; one status line each.
    Create {
        /// Schema names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Tenants created at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// List tenants.
    List,
    /// Drop tenants and all their data, a few at a time; one status line each.
    Drop {
        /// Schema names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Tenants dropped at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// List orphaned tenant roles: roles this PostgreSQL database created whose tenant is gone.
    Roles,
    /// Remove orphaned tenant roles that own nothing; prints what it removed.
    PruneRoles,
    /// Move a tenant to another PostgreSQL server (PostgreSQL): copy, fence writes, check,
    /// flip, drop the old copy. Re-run it after a crash to finish; aim it at the tenant's
    /// current server to abandon an unfinished move.
    Move {
        /// The tenant's schema.
        name: String,
        /// The server: --database-url's or one of --server-url's (as a URL or as
        /// `host:port/database`).
        #[arg(long)]
        to: String,
        /// Stop once this step is committed (marked, prepared, snapshotted, fenced, copied, flipped), to
        /// rehearse a move step by step; a re-run carries on.
        #[arg(long, value_parser = parse_move_step)]
        stop_after: Option<astrocyte_store_postgres::MoveStep>,
    },
    /// Show which server holds each tenant, and any move under way (PostgreSQL).
    Placement,
}

fn parse_move_step(raw: &str) -> Result<astrocyte_store_postgres::MoveStep, String> {
    use astrocyte_store_postgres::MoveStep;
    Ok(match raw {
        "marked" => MoveStep::Marked,
        "prepared" => MoveStep::Prepared,
        "snapshotted" => MoveStep::Snapshotted,
        "fenced" => MoveStep::Fenced,
        "copied" => MoveStep::Copied,
        "flipped" => MoveStep::Flipped,
        other => {
            return Err(format!(
                "unknown step {other:?} (marked, prepared, snapshotted, fenced, copied, flipped)"
            ))
        }
    })
}

fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {raw:?}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    #[test]
    fn repeated_replica_urls_become_one_list_setting() {
        for args in [
            [
                "--replica-url",
                "postgres://a/db",
                "--replica-url",
                "postgres://b/db",
                "config",
                "show",
            ],
            [
                "config",
                "show",
                "--replica-url",
                "postgres://a/db",
                "--replica-url",
                "postgres://b/db",
            ],
        ] {
            let cli =
                Cli::try_parse_from(std::iter::once("astrocyte").chain(args)).expect("parses");
            let flags = cli.global.flags();
            assert!(
                flags.contains(&("--replica-url", "postgres://a/db,postgres://b/db".into())),
                "{args:?}: {flags:?}"
            );
        }
    }

    #[test]
    fn repeated_server_urls_become_one_list_setting_and_move_parses() {
        let cli = Cli::try_parse_from([
            "astrocyte",
            "tenant",
            "move",
            "acme",
            "--to",
            "db2:5432/astrocyte",
            "--stop-after",
            "fenced",
            "--server-url",
            "postgres://a/db",
            "--server-url",
            "postgres://b/db",
        ])
        .expect("parses");
        assert!(cli
            .global
            .flags()
            .contains(&("--server-url", "postgres://a/db,postgres://b/db".into())));
        match cli.command {
            super::Command::Tenant(super::TenantCommand::Move {
                name,
                to,
                stop_after,
            }) => {
                assert_eq!((name.as_str(), to.as_str()), ("acme", "db2:5432/astrocyte"));
                assert_eq!(stop_after, Some(astrocyte_store_postgres::MoveStep::Fenced));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(Cli::try_parse_from([
            "astrocyte",
            "tenant",
            "move",
            "acme",
            "--to",
            "x/y",
            "--stop-after",
            "never"
        ])
        .is_err());
    }
}
