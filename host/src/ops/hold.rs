//! `wasmig hold` and `wasmig release`: an operator keeps a schema (or one plugin in it) where
//! it is, with a reason, until released. `migrate` and `verify --fix` plan around holds;
//! `status`, `verify`, `health` and `metrics` show them. Each is a run of its own
//! (`history`).

use anyhow::Result;

use super::{SchemaPick, Settings};
use crate::Exit;
use crate::control::{self, RunOutcome};
use crate::names::SchemaName;

/// Options of `wasmig hold` and `wasmig release`.
#[derive(Debug, Clone)]
pub struct HoldOptions {
    /// Where.
    pub schemas: SchemaPick,
    /// Only this plugin (the whole schema when none).
    pub plugin: Option<String>,
    /// Why (`hold` only).
    pub reason: String,
}

/// `wasmig hold`: holds every schema picked. Exit 0.
pub async fn hold(s: &Settings, o: &HoldOptions) -> Result<Exit> {
    change(s, o, Change::Hold).await
}

/// `wasmig release`: releases the holds of every schema picked (only the one on the plugin,
/// when given). Exit 0, also when nothing was held (it says so).
pub async fn release(s: &Settings, o: &HoldOptions) -> Result<Exit> {
    change(s, o, Change::Release).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Hold,
    Release,
}

async fn change(s: &Settings, o: &HoldOptions, what: Change) -> Result<Exit> {
    // A hold on a plugin that is not loaded (a typo) would hold nothing: refused. A release
    // may name a plugin since removed.
    if let (Change::Hold, Some(plugin)) = (what, &o.plugin) {
        let (plugins, _) = super::load_plugins_to_read(s).await?;
        super::baseline::check_plugin_step(s, &plugins.specs, plugin, None)?;
    }
    let (op, schemas) = match super::connect_and_pick(s, &o.schemas).await? {
        Ok(picked) => picked,
        Err(exit) => return Ok(exit),
    };
    let names: Vec<SchemaName> = schemas.into_iter().map(|m| m.schema).collect();
    let command = match what {
        Change::Hold => "hold",
        Change::Release => "release",
    };
    let run_id = control::start_run(&op, command, &s.args).await?;
    let done = match what {
        Change::Hold => hold_in_run(&op, &names, o.plugin.as_deref(), &o.reason, run_id).await,
        Change::Release => release_in_run(&op, &names, o.plugin.as_deref()).await,
    };
    let outcome = if done.is_ok() {
        RunOutcome::Ok
    } else {
        RunOutcome::Failed
    };
    control::finish_run(&op, run_id, outcome, 0, i32::from(done.is_err())).await?;
    done?;
    Ok(Exit::Ok)
}

/// Holds `schemas` (only `plugin` there, when given) in run `run_id`, saying so per schema.
/// Also what `restore --hold` and `revert --hold` call.
pub async fn hold_in_run(
    op: &tokio_postgres::Client,
    schemas: &[SchemaName],
    plugin: Option<&str>,
    reason: &str,
    run_id: i64,
) -> Result<()> {
    for schema in schemas {
        let new = control::set_hold(op, schema, plugin, reason, run_id).await?;
        crate::report::notes::held(schema, plugin, new);
    }
    Ok(())
}

async fn release_in_run(
    op: &tokio_postgres::Client,
    schemas: &[SchemaName],
    plugin: Option<&str>,
) -> Result<()> {
    for schema in schemas {
        let n = control::release_holds(op, schema, plugin).await?;
        crate::report::notes::released(schema, n);
    }
    Ok(())
}
