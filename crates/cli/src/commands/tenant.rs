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
