//! `wasmig status`: per schema, applied / pending / drifted / unknown steps, from one read of
//! the registry and one read of the whole ledger.

use anyhow::Result;

use super::{Settings, load_plugins, registry};
use crate::Exit;
use crate::control;
use crate::plan::{Selection, plan_schema};
use crate::report::{self, SchemaStatus};

/// Prints the status of every managed schema.
pub async fn status(s: &Settings, json: bool) -> Result<Exit> {
    let plugins = load_plugins(s).await?;
    let client = s.connect_initialised().await?;
    let reg = registry(&client, s).await?;
    let secret = control::read_secret(&client).await?;
    let ledger = control::read_ledger(&client, None, &secret).await?;
    let failures = control::last_failures(&client).await?;
    let all = Selection::default();
    let empty = Vec::new();
    let rows: Vec<SchemaStatus> = reg
        .iter()
        .filter(|m| m.scope == crate::plan::Scope::Tenant || m.schema == s.shared_schema)
        .map(|m| {
            let l = ledger.get(m.schema.as_str()).unwrap_or(&empty);
            let plan = plan_schema(&plugins.specs, &plugins.order, m.scope, &all, l);
            SchemaStatus::new(m, &plugins.specs, &plan, failures.get(m.schema.as_str()))
        })
        .collect();
    report::print_status(&plugins.specs, &rows, json);
    Ok(Exit::Ok)
}
