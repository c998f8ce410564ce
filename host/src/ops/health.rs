//! `wasmig health`: reachability and latency, server and control-schema versions, counts of
//! pending / drifted / failed steps, wasmig's advisory locks and how long they are held, and
//! the last run. Exit 0 healthy, 1 when something needs attention, 2 when unreachable.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use super::Settings;
use super::status::{Which, collect};
use crate::Exit;
use crate::control::{self, HeldLock, RunRecord};
use crate::plan::Selection;

#[derive(Serialize)]
struct Health {
    healthy: bool,
    database: String,
    #[serde(serialize_with = "crate::report::round3")]
    latency_ms: f64,
    server_version: String,
    control_version: Option<i32>,
    tenants: usize,
    pending_steps: usize,
    drifted_steps: usize,
    forged_rows: usize,
    failed_schemas: usize,
    locks: Vec<HeldLock>,
    last_run: Option<RunRecord>,
    problems: Vec<String>,
}

/// Prints the health report.
pub async fn health(s: &Settings, json: bool) -> Result<Exit> {
    let started = Instant::now();
    let client = s.target.connect().await?;
    client
        .simple_query("SELECT 1")
        .await
        .map_err(crate::db::PgError::from)?;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let server_version = control::server_version(&client).await?;
    let control_version = control::control_version(&client).await?;
    let mut problems = Vec::new();
    let mut h = Health {
        healthy: false,
        database: s.target.to_string(),
        latency_ms,
        server_version,
        control_version,
        tenants: 0,
        pending_steps: 0,
        drifted_steps: 0,
        forged_rows: 0,
        failed_schemas: 0,
        locks: Vec::new(),
        last_run: None,
        problems: Vec::new(),
    };
    if control_version.is_none() {
        problems.push("the control schema is missing: run `wasmig init`".to_owned());
    } else {
        let (_, rows) = collect(s, Which::Tenants(&[]), &Selection::default()).await?;
        h.tenants = rows.len();
        h.pending_steps = rows.iter().map(|r| r.pending.len()).sum();
        h.drifted_steps = rows.iter().map(|r| r.drift.len()).sum();
        h.forged_rows = rows.iter().map(|r| r.forged.len()).sum();
        h.failed_schemas = rows.iter().filter(|r| r.last_failure.is_some()).count();
        let reg = control::list_schemas(&client).await?;
        h.locks = control::held_locks(&client, &reg).await?;
        h.last_run = control::runs(&client, 1).await?.into_iter().next();
        if h.pending_steps > 0 {
            problems.push(format!("{} step(s) pending", h.pending_steps));
        }
        if h.drifted_steps > 0 {
            problems.push(format!("{} applied step(s) drifted", h.drifted_steps));
        }
        if h.forged_rows > 0 {
            problems.push(format!("{} forged ledger row(s)", h.forged_rows));
        }
        if h.failed_schemas > 0 {
            problems.push(format!(
                "{} schema(s) with an unresolved failed step",
                h.failed_schemas
            ));
        }
        if let Some(r) = &h.last_run
            && r.outcome.as_deref().is_some_and(|o| o != "ok")
        {
            problems.push(format!(
                "the last run ({}) ended `{}`",
                r.run_id,
                r.outcome.as_deref().unwrap_or("")
            ));
        }
    }
    h.healthy = problems.is_empty();
    h.problems = problems;
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&h)?);
    } else {
        crate::outln!("database:        {} ({:.1} ms)", h.database, h.latency_ms);
        crate::outln!("server version:  {}", h.server_version);
        crate::outln!(
            "control schema:  {}",
            h.control_version
                .map_or("missing".to_owned(), |v| format!("version {v}"))
        );
        crate::outln!(
            "tenants:         {} ({} pending step(s), {} drifted, {} forged row(s), {} failed schema(s))",
            h.tenants,
            h.pending_steps,
            h.drifted_steps,
            h.forged_rows,
            h.failed_schemas
        );
        for l in &h.locks {
            crate::outln!(
                "lock:            schema `{}` held by server process {} (application_name `{}`) for {:.1}s",
                l.schema,
                l.pid,
                // Any session may set its own application_name.
                crate::text::inert(&l.application_name, 64),
                l.held_s
            );
        }
        match &h.last_run {
            Some(r) => crate::outln!(
                "last run:        {} `{}` at {}: {}",
                r.run_id,
                r.command,
                r.started_at,
                r.outcome.as_deref().unwrap_or("running")
            ),
            None => crate::outln!("last run:        none"),
        }
        for p in &h.problems {
            crate::outln!("problem:         {p}");
        }
        crate::outln!("{}", if h.healthy { "healthy" } else { "NOT healthy" });
    }
    Ok(if h.healthy { Exit::Ok } else { Exit::Problems })
}
