//! The `astrocyte` binary: parses the command line, builds the configured store and embedder,
//! and runs one command. Library crates hold the logic; this file only wires and reports.

mod args;
mod backend;
mod commands;
mod output;

use std::process::ExitCode;

use anyhow::Context;
use astrocyte_core::Schema;
use clap::Parser;

use args::{Cli, Command, EvalCommand};
use commands::memory;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server should say it is listening; one-shot commands keep standard error quiet; MCP
    // over stdio must never log to standard output, which carries the protocol.
    match cli.command {
        Command::Mcp(_) => astrocyte_server::mcp::init_stdio_tracing("warn"),
        // `serve` installs its subscriber once its configuration (OTLP export included) is read.
        Command::Serve(_) => {}
        _ => init_tracing("warn", None),
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs on standard error filtered by `ASTROCYTE_LOG`, plus, when given, the OTLP trace
/// export layer (which filters for itself, so a quiet log still exports request spans).
fn init_tracing(default_level: &str, traces: Option<&astrocyte_server::otlp::TraceExport>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_env("ASTROCYTE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if std::env::var("ASTROCYTE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    tracing_subscriber::registry()
        .with(traces.map(|t| t.layer()))
        .with(fmt)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    let schema = Schema::new(global.tenant.clone())
        .with_context(|| format!("invalid --tenant {:?}", global.tenant))?;
    let json = global.json;
    let engine = || backend::build_engine(&global);
    match cli.command {
        Command::Tenant(command) => {
            let store = backend::open_store(&global).await?;
            commands::tenant::run(store.as_ref(), command, json).await
        }
        Command::Retain(args) => memory::retain(&engine().await?, &schema, args, json).await,
        Command::Recall(args) => memory::recall(&engine().await?, &schema, args, json).await,
        Command::Reflect(args) => memory::reflect(&engine().await?, &schema, args, json).await,
        Command::Forget(args) => memory::forget(&engine().await?, &schema, args, json).await,
        Command::Banks => memory::banks(&engine().await?, &schema, json).await,
        Command::Export(args) => memory::export(&engine().await?, &schema, args, json).await,
        Command::Import(args) => memory::import(&engine().await?, &schema, args, json).await,
        Command::Migrate { all_tenants } => {
            commands::tenant::migrate(&global, all_tenants, json).await
        }
        Command::Serve(args) => commands::serve::run(&global, args).await,
        Command::Mcp(args) => commands::serve::mcp(&global, args).await,
        Command::Bench(args) => {
            commands::bench::run(args, backend::build_embedder(&global)?, json).await
        }
        Command::Eval(EvalCommand::Locomo(args)) => {
            commands::eval::locomo(args, backend::build_embedder(&global)?, json).await
        }
    }
}
