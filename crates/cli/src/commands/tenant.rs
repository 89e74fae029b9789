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
