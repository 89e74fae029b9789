//! The `astrocyte` binary: parses the command line, loads the settings once, builds the
//! configured store and embedder, and runs one command. Library crates hold the logic; this
//! file only wires and reports.

mod args;
mod backend;
mod commands;
mod output;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use astrocyte_core::Schema;
use astrocyte_settings::{Loaded, Sources};
use clap::Parser;

use args::{Cli, Command, ConfigCommand, EvalCommand, TenantCommand};
use commands::memory;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut flags = cli.global.flags();
    if let Command::Serve(serve) = &cli.command {
        flags.extend(serve.flags());
    }
    let loaded = match astrocyte_settings::load(&Sources::process(cli.global.config.clone(), flags))
    {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    // A server says it is listening; one-shot commands keep standard error quiet unless a
    // level is set; MCP over stdio never logs to standard output, which carries the protocol.
    match &cli.command {
        // `serve` installs its subscriber once its trace export is ready.
        Command::Serve(_) => {}
        _ => init_tracing(&loaded, "warn", None),
    }
    match run(cli, loaded).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The log filter: `log_level` when the user set it, else `default_level`; the MCP library's
/// per-request lines only at debug and below.
fn log_filter(loaded: &Loaded, default_level: &str) -> tracing_subscriber::EnvFilter {
    let level = if loaded.is_set("log_level") {
        loaded.settings.log_level.clone()
    } else {
        default_level.to_string()
    };
    let quiet_mcp = !(level.contains("rmcp") || level.contains("debug") || level.contains("trace"));
    let directive = if quiet_mcp {
        format!("{level},rmcp=warn")
    } else {
        level
    };
    tracing_subscriber::EnvFilter::try_new(&directive)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
}

/// Logs on standard error (text without colour unless it is a terminal, or JSON lines), plus,
/// when given, the OTLP trace export layer, which filters for itself.
fn init_tracing(
    loaded: &Loaded,
    default_level: &str,
    traces: Option<&astrocyte_server::otlp::TraceExport>,
) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = log_filter(loaded, default_level);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = match loaded.settings.log_format {
        astrocyte_server::config::LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
        astrocyte_server::config::LogFormat::Text => fmt.with_filter(filter).boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(traces.map(|t| t.layer()))
        .with(fmt)
        .try_init();
}

fn config(command: ConfigCommand, loaded: &Loaded) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Show => {
            print!("{}", astrocyte_settings::docs::show(loaded));
            Ok(())
        }
        ConfigCommand::Check { file } => {
            let loaded = match file {
                None => loaded.clone(),
                Some(file) => astrocyte_settings::load(&Sources::process(Some(file), Vec::new()))
                    .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?,
            };
            for check in [
                loaded.server_config().map(drop),
                loaded.mcp_config().map(drop),
                loaded.llm_config().map(drop),
            ] {
                check.map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
            }
            match &loaded.file {
                Some(file) => println!("configuration ok ({})", file.display()),
                None => println!("configuration ok (no file; environment and defaults)"),
            }
            Ok(())
        }
        ConfigCommand::Docs => {
            print!("{}", astrocyte_settings::docs::reference_markdown());
            Ok(())
        }
        ConfigCommand::Example => {
            print!("{}", astrocyte_settings::docs::example_yaml());
            Ok(())
        }
    }
}

/// A read-only command on a tenant the user named that does not exist says so (a typo must
/// not create an empty tenant); the default tenant of a fresh install just holds nothing yet.
async fn existing_tenant(
    loaded: &Loaded,
    engine: &astrocyte_core::Engine,
    schema: &Schema,
) -> anyhow::Result<()> {
    if !loaded.is_set("tenant") {
        return Ok(());
    }
    let tenants = engine.store().list_tenants().await?;
    if tenants.iter().any(|t| &t.schema == schema) {
        Ok(())
    } else {
        anyhow::bail!(
            "tenant {schema} does not exist (`astrocyte tenant list` shows the tenants; `astrocyte tenant create {schema}` or a retain creates it)"
        )
    }
}

/// A flag the command would not use is refused, never silently ignored.
fn refuse_flags(loaded: &Loaded, command: &str, unused: &[&str]) -> anyhow::Result<()> {
    for spec in astrocyte_settings::TABLE {
        if let (Some(flag), astrocyte_settings::Origin::Flag(_)) =
            (spec.flag, loaded.origin(spec.field))
        {
            if unused.contains(&flag) {
                anyhow::bail!(
                    "{command} does not use {flag}: it runs in a throw-away tenant of its own"
                );
            }
        }
    }
    Ok(())
}

async fn run(cli: Cli, loaded: Loaded) -> anyhow::Result<()> {
    let json = cli.global.json;
    let tenant = &loaded.settings.tenant;
    let schema = Schema::new(tenant.clone())
        .with_context(|| format!("invalid {} {tenant:?}", loaded.name_of("tenant")))?;
    let engine = || backend::build_engine(&loaded);
    match cli.command {
        Command::Config(command) => config(command, &loaded),
        Command::Setup(args) => commands::setup::run(&loaded, args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "astrocyte", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Tenant(TenantCommand::Roles) => {
            commands::tenant::roles(&loaded, false, json).await
        }
        Command::Tenant(TenantCommand::PruneRoles) => {
            commands::tenant::roles(&loaded, true, json).await
        }
        Command::Tenant(TenantCommand::Move {
            name,
            to,
            stop_after,
        }) => commands::tenant::move_tenant(&loaded, &name, &to, stop_after, json).await,
        Command::Tenant(TenantCommand::Placement) => {
            commands::tenant::placement(&loaded, json).await
        }
        Command::Tenant(command) => {
            let store = backend::open_store(&loaded).await?;
            commands::tenant::run(store.as_ref(), command, json).await
        }
        Command::Retain(args) => memory::retain(&engine().await?, &schema, args, json).await,
        Command::Recall(args) => {
            let engine = engine().await?;
            existing_tenant(&loaded, &engine, &schema).await?;
            memory::recall(&engine, &schema, args, json).await
        }
        Command::Reflect(args) => {
            let engine = engine().await?;
            existing_tenant(&loaded, &engine, &schema).await?;
            memory::reflect(&engine, &schema, args, json).await
        }
        Command::Forget(args) => memory::forget(&engine().await?, &schema, args, json).await,
        Command::Banks => {
            let engine = engine().await?;
            existing_tenant(&loaded, &engine, &schema).await?;
            memory::banks(&engine, &schema, json).await
        }
        Command::List(args) => {
            let engine = engine().await?;
            existing_tenant(&loaded, &engine, &schema).await?;
            commands::browse::list(&engine, &schema, args, json).await
        }
        Command::Get(args) => {
            let engine = engine().await?;
            existing_tenant(&loaded, &engine, &schema).await?;
            commands::browse::get(&engine, &schema, args, json).await
        }
        Command::Changes(args) => {
            let engine = engine().await?;
            existing_tenant(&loaded, &engine, &schema).await?;
            commands::browse::changes(&engine, &schema, args, json).await
        }
        Command::Export(args) => {
            let engine = engine().await?;
            existing_tenant(&loaded, &engine, &schema).await?;
            memory::export(&engine, &schema, args, json).await
        }
        Command::Import(args) => memory::import(&engine().await?, &schema, args, json).await,
        Command::Migrate {
            all_tenants,
            tenant_prefix,
            status,
        } => {
            let scope = commands::tenant::MigrateScope {
                all_tenants,
                prefix: tenant_prefix,
                status_only: status,
            };
            commands::tenant::migrate(&loaded, &schema, scope, json).await
        }
        Command::Serve(args) => commands::serve::run(&loaded, args.no_workers).await,
        Command::Mcp => commands::serve::mcp(&loaded, schema).await,
        Command::Bench(args) => {
            refuse_flags(&loaded, "bench", &["--data-dir", "--tenant"])?;
            let embedder = backend::bench_embedder(&loaded, args.hashing_dimension)?;
            commands::bench::run(args, &loaded, embedder, json).await
        }
        Command::Eval(EvalCommand::Locomo(args)) => {
            refuse_flags(&loaded, "eval", &["--data-dir", "--tenant"])?;
            commands::eval::locomo(args, &loaded, backend::build_embedder(&loaded)?, json).await
        }
    }
}
