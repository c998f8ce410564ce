//! `wasmig metrics`: fleet gauges for Prometheus (text exposition format) or JSON; written
//! atomically with `--output` so a node-exporter textfile collector never reads half a file.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::Settings;
use super::status::{Which, collect};
use crate::Exit;
use crate::control;
use crate::plan::Selection;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text exposition format.
    Prometheus,
    /// JSON.
    Json,
}

#[derive(Serialize)]
struct Metrics {
    tenants_total: usize,
    tenants_with_pending: usize,
    pending_steps: usize,
    drifted_steps: usize,
    forged_rows: usize,
    failed_schemas: usize,
    #[serde(serialize_with = "crate::report::round3_opt")]
    last_run_duration_seconds: Option<f64>,
    #[serde(serialize_with = "crate::report::round3_opt")]
    last_run_timestamp_seconds: Option<f64>,
    last_run_success: Option<bool>,
    step_duration_ms: control::DurationSummary,
}

/// Computes and prints (or writes) the metrics.
pub async fn metrics(s: &Settings, format: Format, output: Option<&Path>) -> Result<Exit> {
    let (_, rows) = collect(s, Which::Tenants(&[]), &Selection::default()).await?;
    let client = s.connect_initialised().await?;
    let last = control::runs(&client, 1).await?.into_iter().next();
    let m = Metrics {
        tenants_total: rows.len(),
        tenants_with_pending: rows.iter().filter(|r| !r.pending.is_empty()).count(),
        pending_steps: rows.iter().map(|r| r.pending.len()).sum(),
        drifted_steps: rows.iter().map(|r| r.drift.len()).sum(),
        forged_rows: rows.iter().map(|r| r.forged.len()).sum(),
        failed_schemas: rows.iter().filter(|r| r.last_failure.is_some()).count(),
        last_run_duration_seconds: last.as_ref().and_then(|r| r.duration_s),
        last_run_timestamp_seconds: last.as_ref().map(|r| r.started_epoch_s),
        last_run_success: last
            .as_ref()
            .and_then(|r| r.outcome.as_deref().map(|o| o == "ok")),
        step_duration_ms: control::step_durations(&client).await?,
    };
    let text = match format {
        Format::Json => serde_json::to_string_pretty(&m)? + "\n",
        Format::Prometheus => prometheus(&m),
    };
    match output {
        None => crate::out!("{text}"),
        Some(path) => {
            // Read by a collector that usually runs as another user; counts, not data.
            crate::files::write_atomic(path, text.as_bytes(), crate::files::Access::Readable)
                .with_context(|| format!("cannot write `{}`", path.display()))?;
        }
    }
    Ok(Exit::Ok)
}

fn prometheus(m: &Metrics) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            let _ = writeln!(
                out,
                "# HELP wasmig_{name} {help}\n# TYPE wasmig_{name} gauge\nwasmig_{name} {v}"
            );
        }
    };
    gauge(
        "tenants_total",
        "Tenants registered.",
        Some(m.tenants_total as f64),
    );
    gauge(
        "tenants_with_pending",
        "Tenants with at least one pending step.",
        Some(m.tenants_with_pending as f64),
    );
    gauge(
        "pending_steps",
        "Steps not yet applied, over all tenants.",
        Some(m.pending_steps as f64),
    );
    gauge(
        "drifted_steps",
        "Applied steps whose content changed.",
        Some(m.drifted_steps as f64),
    );
    gauge(
        "forged_ledger_rows",
        "Ledger rows not written by wasmig.",
        Some(m.forged_rows as f64),
    );
    gauge(
        "failed_schemas",
        "Tenants whose last attempt at a step failed.",
        Some(m.failed_schemas as f64),
    );
    gauge(
        "last_run_duration_seconds",
        "Duration of the last run.",
        m.last_run_duration_seconds,
    );
    gauge(
        "last_run_timestamp_seconds",
        "Start of the last run, Unix time.",
        m.last_run_timestamp_seconds,
    );
    gauge(
        "last_run_success",
        "1 if the last run ended ok.",
        m.last_run_success.map(|b| f64::from(u8::from(b))),
    );
    let d = &m.step_duration_ms;
    let _ = writeln!(
        out,
        "# HELP wasmig_step_duration_ms Duration of applied steps.\n# TYPE wasmig_step_duration_ms summary"
    );
    for (q, v) in [("0.5", d.p50), ("0.9", d.p90), ("0.99", d.p99)] {
        if let Some(v) = v {
            let _ = writeln!(out, "wasmig_step_duration_ms{{quantile=\"{q}\"}} {v}");
        }
    }
    let _ = writeln!(
        out,
        "wasmig_step_duration_ms_sum {}\nwasmig_step_duration_ms_count {}",
        d.sum, d.count
    );
    out
}
