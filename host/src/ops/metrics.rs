//! `wasmig metrics`: fleet gauges for Prometheus (text exposition format) or JSON; written
//! atomically with `--output` so a node-exporter textfile collector never reads half a file.

use std::path::Path;

use anyhow::{Context as _, Result};

use super::Settings;
use super::status::{Which, collect};
use crate::Exit;
use crate::control;
use crate::plan::{Scope, Selection};
use crate::report::{self, Metrics};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text exposition format.
    Prometheus,
    /// JSON.
    Json,
}

/// Computes and prints (or writes) the metrics. When the fleet cannot be read (the database
/// is down), the Prometheus exposition still goes out, saying so (`wasmig_up 0`), so a
/// dashboard never keeps showing the last good values; the command then fails (exit 2).
pub async fn metrics(
    s: &Settings,
    format: Format,
    output: Option<&Path>,
    window: Option<std::time::Duration>,
) -> Result<Exit> {
    match fleet_metrics(s, window).await {
        Ok(m) => {
            emit(format, output, &m)?;
            Ok(Exit::Ok)
        }
        Err(e) => {
            if format == Format::Prometheus {
                emit_text(output, &report::prometheus_down())?;
            }
            Err(e)
        }
    }
}

/// Per plugin, the schemas of its scope in each state (every state, zeros included, so a
/// series never vanishes when its count drops to zero).
fn plugin_states(
    specs: &[crate::plan::PluginSpec],
    rows: &[report::SchemaStatus],
) -> Vec<(String, &'static str, usize)> {
    let mut out = Vec::new();
    for p in specs {
        let mut counts = [0usize; report::State::ALL.len()];
        for r in rows.iter().filter(|r| r.scope == p.scope) {
            let st = report::State::of_plugin(r, &p.name);
            if let Some(i) = report::State::ALL.iter().position(|s| *s == st) {
                counts[i] += 1;
            }
        }
        for (st, n) in report::State::ALL.iter().zip(counts) {
            out.push((p.name.clone(), st.as_str(), n));
        }
    }
    out
}

fn emit(format: Format, output: Option<&Path>, m: &Metrics) -> Result<()> {
    let text = match format {
        Format::Json => report::metrics_json(m),
        Format::Prometheus => report::prometheus(m),
    };
    emit_text(output, &text)
}

fn emit_text(output: Option<&Path>, text: &str) -> Result<()> {
    match output {
        None => crate::out!("{text}"),
        Some(path) => {
            // Read by a collector that usually runs as another user; counts, not data.
            crate::files::write_atomic(path, text.as_bytes(), crate::files::Access::Readable)
                .with_context(|| format!("cannot write `{}`", path.display()))?;
        }
    }
    Ok(())
}

async fn fleet_metrics(s: &Settings, window: Option<std::time::Duration>) -> Result<Metrics> {
    // The shared schema is part of the fleet: its pending steps count, and are also shown on
    // their own.
    let c = collect(s, Which::All, &Selection::default()).await?;
    let client = s.connect_initialised().await?;
    let mut m = metrics_of(&c, &client).await?;
    if let Some(w) = window {
        let secs = w.as_secs_f64();
        let period = control::period(
            &client,
            control::Window {
                from_s: secs,
                to_s: 0.0,
                at: control::server_now(&client).await?,
            },
        )
        .await?;
        m.window = Some((secs, period));
    }
    Ok(m)
}

/// The fleet's gauges from what [`collect`] found, with the run history's (a bounded number
/// of queries, whatever the fleet's size).
pub async fn metrics_of(
    c: &super::status::Collected,
    client: &tokio_postgres::Client,
) -> Result<Metrics> {
    let rows = &c.rows;
    let last = control::runs(client, 1).await?.into_iter().next();
    let tenants = || rows.iter().filter(|r| r.scope == Scope::Tenant);
    let m = Metrics {
        tenant_count: tenants().count(),
        tenants_with_pending_count: tenants().filter(|r| !r.pending.is_empty()).count(),
        pending_count: rows.iter().map(|r| r.pending.len()).sum(),
        shared_pending_count: rows
            .iter()
            .filter(|r| r.scope == Scope::Shared)
            .map(|r| r.pending.len())
            .sum(),
        drift_count: rows.iter().map(|r| r.drift.len()).sum(),
        forged_count: rows.iter().map(|r| r.forged.len()).sum(),
        failed_schema_count: rows.iter().filter(|r| r.last_failure.is_some()).count(),
        last_run_duration_seconds: last.as_ref().and_then(|r| r.duration_s),
        last_run_timestamp_seconds: last.as_ref().map(|r| r.started_epoch_s),
        last_run_success: last
            .as_ref()
            .and_then(|r| r.outcome.as_deref().map(|o| o == "ok")),
        step_duration: control::step_durations(client).await?,
        plugin_problem_count: c.plugin_problems.len(),
        held_schema_count: rows.iter().filter(|r| !r.holds.is_empty()).count(),
        held_step_count: rows.iter().map(|r| r.held.len()).sum(),
        plugin_states: plugin_states(&c.specs, rows),
        last_success_timestamp_seconds: control::last_ok_run_epoch(client).await?,
        heal: None,
        window: None,
    };
    Ok(m)
}
