//! Tenant administration against whichever store is configured.

use astrocyte_core::{Schema, Store};
use serde_json::json;

use crate::args::TenantCommand;
use crate::output::print_json;

pub async fn run(store: &dyn Store, command: TenantCommand, json: bool) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create { name } => {
            let schema = Schema::new(name)?;
            store.create_tenant(&schema).await?;
            if json {
                print_json(&json!({"created": schema}))?;
            } else {
                println!("created tenant {schema}");
            }
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
        TenantCommand::Drop { name } => {
            let schema = Schema::new(name)?;
            store.drop_tenant(&schema).await?;
            if json {
                print_json(&json!({"dropped": schema}))?;
            } else {
                println!("dropped tenant {schema}");
            }
        }
        TenantCommand::Roles | TenantCommand::PruneRoles => {
            anyhow::bail!("tenant roles and prune-roles are dispatched to `roles`")
        }
    }
    Ok(())
}

/// Migrates one tenant or all of them; prints a line per tenant and fails if any failed.
pub async fn migrate(
    loaded: &astrocyte_settings::Loaded,
    schema: &Schema,
    all_tenants: bool,
    json: bool,
) -> anyhow::Result<()> {
    let Some(url) = &loaded.settings.database_url else {
        anyhow::bail!("migrate needs --database-url (the embedded store migrates each tenant file when it is opened)");
    };
    let store = crate::backend::connect_postgres(loaded, url.expose()).await?;
    let report = if all_tenants {
        store.migrate_all_tenants().await?
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
