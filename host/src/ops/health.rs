//! `wasmig health`: reachability and latency, server and control-schema versions, counts of
//! pending / drifted / failed steps, wasmig's advisory locks and how long they are held, and
//! the last run. Exit 0 healthy, 1 when something needs attention, 2 when unreachable.

use std::time::Instant;

use anyhow::Result;

use super::Settings;
use super::status::{Which, collect};
use crate::Exit;
use crate::control;
use crate::plan::{Scope, Selection};
use crate::report::{self, Health};

/// Prints the health report. An unreachable database is a report too (`reachable` false,
/// the reason among the problems), with the same fields as any other, and exit 2.
pub async fn health(s: &Settings, out: report::Output) -> Result<Exit> {
    let started = Instant::now();
    let reached = async {
        let client = s.target.connect().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(crate::db::PgError::from)?;
        anyhow::Ok(client)
    };
    let client = match reached.await {
        Ok(c) => c,
        Err(e) => {
            let h = Health {
                reachable: false,
                latency: started.elapsed(),
                database: s.target.to_string(),
                problems: vec![format!("the database cannot be reached: {e:#}")],
                ..Health::default()
            };
            report::print_health(&h, out);
            return Ok(Exit::Error);
        }
    };
    let mut h = Health {
        reachable: true,
        latency: started.elapsed(),
        database: s.target.to_string(),
        server_version: control::server_version(&client).await?,
        control_version: control::control_version(&client).await?,
        ..Health::default()
    };
    let mut problems = Vec::new();
    if h.control_version.is_none() {
        problems.push("the control schema is missing: run `wasmig init`".to_owned());
    } else {
        // The shared schema is part of the fleet: every count covers it too.
        let c = collect(s, Which::All, &Selection::default()).await?;
        let rows = c.rows;
        h.tenant_count = rows.iter().filter(|r| r.scope == Scope::Tenant).count();
        h.pending_count = rows.iter().map(|r| r.pending.len()).sum();
        h.shared_pending_count = rows
            .iter()
            .filter(|r| r.scope == Scope::Shared)
            .map(|r| r.pending.len())
            .sum();
        h.drift_count = rows.iter().map(|r| r.drift.len()).sum();
        h.forged_count = rows.iter().map(|r| r.forged.len()).sum();
        h.failed_schema_count = rows.iter().filter(|r| r.last_failure.is_some()).count();
        h.held_schema_count = rows.iter().filter(|r| !r.holds.is_empty()).count();
        h.held_step_count = rows.iter().map(|r| r.held.len()).sum();
        let reg = control::list_schemas(&client).await?;
        h.locks = control::held_locks(&client, &reg).await?;
        h.last_run = control::runs(&client, 1).await?.into_iter().next();
        problems.extend(c.plugin_problems);
        if h.pending_count > 0 {
            problems.push(if h.shared_pending_count > 0 {
                format!(
                    "{} step(s) pending, {} of them in the shared schema `{}`",
                    h.pending_count, h.shared_pending_count, s.shared_schema
                )
            } else {
                format!("{} step(s) pending", h.pending_count)
            });
        }
        if h.drift_count > 0 {
            problems.push(format!("{} applied step(s) drifted", h.drift_count));
        }
        if h.forged_count > 0 {
            problems.push(format!("{} forged ledger row(s)", h.forged_count));
        }
        if h.failed_schema_count > 0 {
            problems.push(format!(
                "{} schema(s) with an unresolved failed step",
                h.failed_schema_count
            ));
        }
        // A run that failed or was interrupted left its trace in the counts above (pending,
        // failed, drifted); once those are resolved the fleet is healthy again. A run whose
        // runner vanished without closing its record is worth a look on its own.
        if let Some(r) = &h.last_run
            && r.outcome.as_deref() == Some("abandoned")
        {
            problems.push(format!(
                "the last run ({}) ended `{}`",
                r.run_id,
                r.outcome.as_deref().unwrap_or("")
            ));
        }
    }
    h.problems = problems;
    report::print_health(&h, out);
    Ok(if h.problems.is_empty() {
        Exit::Ok
    } else {
        Exit::Problems
    })
}
