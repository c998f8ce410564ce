//! `wasmig status` and `wasmig verify`: per schema, applied / pending / drifted / forged /
//! unknown steps and the last unresolved failure, from one read of the registry, one of the
//! whole ledger and one of the failures, whatever the number of tenants.

use anyhow::Result;

use super::{Settings, load_plugins, registry};
use crate::Exit;
use crate::control;
use crate::labels::Selector;
use crate::names::SchemaName;
use crate::plan::{PluginSpec, Scope, Selection, plan_schema};
use crate::report::{self, SchemaStatus};

/// Which schemas to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which<'a> {
    /// The shared schema and every tenant.
    All,
    /// Tenants only: those named (all of them when none is) that `--where` picks.
    Tenants(&'a [SchemaName], Option<&'a Selector>),
}

/// Plans every selected schema against its ledger rows and returns one status row each.
pub async fn collect(
    s: &Settings,
    which: Which<'_>,
    selection: &Selection,
) -> Result<(Vec<PluginSpec>, Vec<SchemaStatus>)> {
    let plugins = load_plugins(s).await?;
    selection.validate(&plugins.specs)?;
    let db_started = std::time::Instant::now();
    let client = s.connect_initialised().await?;
    let reg = registry(&client, s).await?;
    if let Which::Tenants(wanted, _) = which {
        super::require_tenants(&reg, wanted)?;
    }
    let secret = control::read_secret(&client).await?;
    let ledger = control::read_ledger(&client, None, &secret).await?;
    let failures = control::last_failures(&client).await?;
    tracing::debug!(
        "database work took {:.1} ms",
        db_started.elapsed().as_secs_f64() * 1000.0
    );
    let empty = Vec::new();
    let rows = reg
        .iter()
        .filter(|m| match which {
            Which::All => m.scope == Scope::Tenant || m.schema == s.shared_schema,
            Which::Tenants(named, selector) => super::picked(m, named, selector),
        })
        .map(|m| {
            let l = ledger.get(m.schema.as_str()).unwrap_or(&empty);
            let plan = plan_schema(&plugins.specs, &plugins.order, m.scope, selection, l);
            SchemaStatus::new(m, &plugins.specs, &plan, failures.get(m.schema.as_str()))
        })
        .collect();
    Ok((plugins.specs, rows))
}

/// Prints the status of every managed schema (of the tenants `--where` picks, if given).
pub async fn status(
    s: &Settings,
    out: report::Output,
    selector: Option<&Selector>,
) -> Result<Exit> {
    let which = match selector {
        Some(sel) => Which::Tenants(&[], Some(sel)),
        None => Which::All,
    };
    let (specs, rows) = collect(s, which, &Selection::default()).await?;
    if let Some(sel) = selector
        && rows.is_empty()
    {
        return Ok(super::nothing_picked(sel));
    }
    report::print_status(&specs, &rows, out);
    Ok(Exit::Ok)
}
