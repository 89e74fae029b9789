//! Tenant administration against whichever store is configured.

use astrocyte_core::{Schema, Store};
use futures::StreamExt;
use serde_json::json;

use crate::args::TenantCommand;
use crate::output::print_json;

pub async fn run(store: &dyn Store, command: TenantCommand, json: bool) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create { names, concurrency } => {
            fan_out(store, names, concurrency, Admin::Create, json).await?;
        }
        TenantCommand::List => {
            let tenants = store.list_tenants().await?;
            if json {
                let names: Vec<&str> = tenants.iter().map(|t| t.schema.as_str()).collect();
                print_json(&json!({ "tenants": names }))?;
            } else {
                for tenant in tenants {
                    println!("{}", tenant.schema);
                }
            }
        }
        TenantCommand::Drop { names, concurrency } => {
            fan_out(store, names, concurrency, Admin::Drop, json).await?;
        }
        TenantCommand::Roles
        | TenantCommand::PruneRoles
        | TenantCommand::Move { .. }
        | TenantCommand::Placement => {
            anyhow::bail!("PostgreSQL-only tenant commands are dispatched on their own")
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Admin {
    Create,
    Drop,
}

/// Creates or drops every named tenant, `concurrency` at a time, printing one line per tenant
/// as each finishes; fails at the end if any failed (the others are done all the same).
async fn fan_out(
    store: &dyn Store,
    names: Vec<String>,
    concurrency: usize,
    admin: Admin,
    json: bool,
) -> anyhow::Result<()> {
    let schemas: Vec<Schema> = names
        .into_iter()
        .map(Schema::new)
        .collect::<Result<_, _>>()?;
    let verb = if admin == Admin::Create {
        "created"
    } else {
        "dropped"
    };
    if let [schema] = schemas.as_slice() {
        match admin {
            Admin::Create => store.create_tenant(schema).await?,
            Admin::Drop => store.drop_tenant(schema).await?,
        }
        if json {
            print_json(&json!({ verb: schema }))?;
        } else {
            println!("{verb} tenant {schema}");
        }
        return Ok(());
    }
    let started = std::time::Instant::now();
    let mut outcomes = futures::stream::iter(schemas)
        .map(|schema| async move {
            let outcome = match admin {
                Admin::Create => store.create_tenant(&schema).await,
                Admin::Drop => store.drop_tenant(&schema).await,
            };
            (schema, outcome)
        })
        .buffer_unordered(concurrency.max(1));
    let (mut done, mut failed) = (Vec::new(), serde_json::Map::new());
    while let Some((schema, outcome)) = outcomes.next().await {
        match outcome {
            Ok(()) => {
                if !json {
                    println!("{schema}: {verb}");
                }
                done.push(schema.to_string());
            }
            Err(error) => {
                if !json {
                    println!("{schema}: failed: {error}");
                }
                failed.insert(schema.to_string(), json!(error.to_string()));
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if json {
        print_json(&json!({ verb: done, "failed": failed, "seconds": seconds }))?;
    } else {
        eprintln!(
            "{} {verb}, {} failed in {seconds:.1} s",
            done.len(),
            failed.len()
        );
    }
    if !failed.is_empty() {
        anyhow::bail!("{} tenant(s) failed", failed.len());
    }
    Ok(())
}

/// Which tenants `migrate` covers and whether it only reports.
pub struct MigrateScope {
    /// Every tenant in the directory (else the one given by --tenant).
    pub all_tenants: bool,
    /// Only tenants whose schema starts with this.
    pub prefix: Option<String>,
    /// Report recorded versions, migrate nothing.
    pub status_only: bool,
}

/// Migrates one tenant or all of them; prints a line per tenant and fails if any failed.
pub async fn migrate(
    loaded: &astrocyte_settings::Loaded,
    schema: &Schema,
    scope: MigrateScope,
    json: bool,
) -> anyhow::Result<()> {
    let Some(url) = &loaded.settings.database_url else {
        anyhow::bail!("migrate needs --database-url (the embedded store migrates each tenant file when it is opened)");
    };
    let store = crate::backend::connect_postgres(loaded, url.expose()).await?;
    if scope.status_only {
        return migration_status(&store, scope.prefix.as_deref(), json).await;
    }
    let report = if scope.all_tenants {
        store.migrate_tenants(scope.prefix.as_deref()).await?
    } else {
        let schema = schema.clone();
        astrocyte_store_postgres::MigrationReport {
            tenants: vec![astrocyte_store_postgres::TenantMigration {
                status: store.migrate_tenant(&schema).await?,
                schema,
            }],
        }
    };
    if json {
        let lines: Vec<String> = report.tenants.iter().map(|t| t.to_string()).collect();
        print_json(&json!({"ok": report.all_ok(), "tenants": lines}))?;
    } else {
        for tenant in &report.tenants {
            println!("{tenant}");
        }
    }
    if !report.all_ok() {
        anyhow::bail!("{} tenant(s) failed to migrate", report.failed().count());
    }
    Ok(())
}

/// One line per tenant: the migration version its directory row records, and whether that is
/// current. Reads the directory only (one query), never a tenant schema.
async fn migration_status(
    store: &astrocyte_store_postgres::PostgresStore,
    prefix: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let latest = astrocyte_store_postgres::LATEST_MIGRATION;
    let records: Vec<_> = store
        .tenant_records()
        .await?
        .into_iter()
        .filter(|r| prefix.is_none_or(|p| r.schema.as_str().starts_with(p)))
        .collect();
    let state = |version: Option<u32>| match version {
        Some(v) if v >= latest => "current",
        Some(_) => "behind",
        None => "unrecorded",
    };
    if json {
        let rows: Vec<_> = records
            .iter()
            .map(|r| json!({"tenant": r.schema.as_str(), "version": r.migrated_version, "state": state(r.migrated_version)}))
            .collect();
        print_json(&json!({"latest": latest, "tenants": rows}))?;
    } else {
        for r in &records {
            match r.migrated_version {
                Some(v) => println!("{}: {} ({v})", r.schema, state(Some(v))),
                None => println!(
                    "{}: unrecorded (migrate --all-tenants checks its ledger)",
                    r.schema
                ),
            }
        }
        let behind = records
            .iter()
            .filter(|r| r.migrated_version.is_none_or(|v| v < latest))
            .count();
        eprintln!(
            "{} tenants, {behind} not known to be at {latest}",
            records.len()
        );
    }
    Ok(())
}

/// Lists (or, with `prune`, removes) the orphaned tenant roles of the configured PostgreSQL
/// database: roles it created (role prefix and database tag) whose tenant is not in its
/// directory. Roles still owning objects are listed and kept.
pub async fn roles(
    loaded: &astrocyte_settings::Loaded,
    prune: bool,
    json: bool,
) -> anyhow::Result<()> {
    let Some(url) = &loaded.settings.database_url else {
        anyhow::bail!(
            "tenant roles and prune-roles need --database-url (the embedded store has no roles)"
        );
    };
    let store = crate::backend::connect_postgres(loaded, url.expose()).await?;
    let orphan = |o: &astrocyte_store_postgres::OrphanRole| json!({"role": o.role.as_str(), "owned_objects": o.owned_objects});
    if prune {
        let pruned = store.prune_orphan_roles().await?;
        let removed: Vec<&str> = pruned.removed.iter().map(|r| r.as_str()).collect();
        if json {
            let kept: Vec<_> = pruned.kept.iter().map(orphan).collect();
            print_json(&json!({"removed": removed, "kept": kept}))?;
        } else {
            for role in &removed {
                println!("removed {role}");
            }
            for kept in &pruned.kept {
                println!(
                    "kept {} (owns {} objects in this database)",
                    kept.role, kept.owned_objects
                );
            }
        }
    } else {
        let orphans = store.orphan_roles().await?;
        if json {
            let list: Vec<_> = orphans.iter().map(orphan).collect();
            print_json(&json!({"database_tag": store.database_tag().as_str(), "orphans": list}))?;
        } else {
            for o in &orphans {
                println!("{}\t{} owned objects", o.role, o.owned_objects);
            }
        }
    }
    Ok(())
}

/// The configured PostgreSQL store, for the PostgreSQL-only tenant commands.
async fn postgres(
    loaded: &astrocyte_settings::Loaded,
    command: &str,
) -> anyhow::Result<astrocyte_store_postgres::PostgresStore> {
    let Some(url) = &loaded.settings.database_url else {
        anyhow::bail!("tenant {command} needs --database-url (the embedded store has one server)");
    };
    crate::backend::connect_postgres(loaded, url.expose()).await
}

/// Moves one tenant to another configured server, printing each table's check.
pub async fn move_tenant(
    loaded: &astrocyte_settings::Loaded,
    name: &str,
    to: &str,
    stop_after: Option<astrocyte_store_postgres::MoveStep>,
    json: bool,
) -> anyhow::Result<()> {
    let schema = Schema::new(name)?;
    let store = postgres(loaded, "move").await?;
    let target = astrocyte_store_postgres::ServerKey::parse(to)?;
    if !store.servers().contains(&target) {
        let known: Vec<String> = store.servers().iter().map(|s| s.to_string()).collect();
        anyhow::bail!(
            "{target} is not a configured server (configured: {}); add it with --server-url",
            known.join(", ")
        );
    }
    let options = astrocyte_store_postgres::MoveOptions { stop_after };
    let report = store.move_tenant(&schema, &target, options).await?;
    let step = format!("{:?}", report.reached).to_lowercase();
    if json {
        let tables: Vec<_> = report
            .tables
            .iter()
            .map(|t| json!({"table": t.table, "rows": t.rows, "checksum": t.checksum}))
            .collect();
        print_json(&json!({
            "tenant": schema.as_str(),
            "from": report.from.as_str(),
            "to": report.to.as_str(),
            "reached": step,
            "resumed": report.resumed,
            "abandoned": report.abandoned,
            "writes_refused_ms": report.fenced_for.map(|d| d.as_millis() as u64),
            "rows_synced_under_fence": report.synced_rows,
            "tables": tables,
        }))?;
    } else {
        for table in &report.tables {
            println!(
                "{}: {} rows, checksum {} (same on both servers)",
                table.table, table.rows, table.checksum
            );
        }
        if report.abandoned {
            println!(
                "abandoned the unfinished move of {schema}; it stays on {}",
                report.to
            );
        } else if report.reached == astrocyte_store_postgres::MoveStep::Cleaned {
            println!("{schema} is on {}", report.to);
        } else {
            println!("{schema}: stopped after {step}; re-run to carry on");
        }
        if let Some(fenced) = report.fenced_for {
            eprintln!(
                "writes refused for {:.1} s ({} rows brought over under the fence)",
                fenced.as_secs_f64(),
                report.synced_rows
            );
        }
    }
    Ok(())
}

/// One line per tenant: its server, and any move under way.
pub async fn placement(loaded: &astrocyte_settings::Loaded, json: bool) -> anyhow::Result<()> {
    let store = postgres(loaded, "placement").await?;
    let home = store
        .servers()
        .first()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let records = store.tenant_records().await?;
    let server_of = |r: &astrocyte_store_postgres::TenantRecord| {
        r.server
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_else(|| home.clone())
    };
    if json {
        let rows: Vec<_> = records
            .iter()
            .map(|r| {
                json!({
                    "tenant": r.schema.as_str(),
                    "server": server_of(r),
                    "moving_to": r.move_to.as_ref().map(|s| s.to_string()),
                    "old_copy_on": r.stale_on.as_ref().map(|s| s.to_string()),
                })
            })
            .collect();
        print_json(&json!({"home": home, "tenants": rows}))?;
    } else {
        for r in &records {
            let mut line = format!("{}\t{}", r.schema, server_of(r));
            if let Some(to) = &r.move_to {
                line.push_str(&format!("\tmoving to {to}"));
            }
            if let Some(stale) = &r.stale_on {
                line.push_str(&format!("\told copy on {stale}"));
            }
            println!("{line}");
        }
    }
    Ok(())
}
