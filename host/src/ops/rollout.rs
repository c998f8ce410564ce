//! `wasmig migrate` in waves: the run's tenants with pending work dealt into waves (see
//! [`crate::rollout`]), each wave run like a whole migrate, and between waves the checks
//! that decide whether the next one starts: the failure budget, a `verify` of the wave's
//! tenants, the pause, the gate command. A stopped rollout is resumed by running the same
//! command again: tenants already migrated have nothing pending and are not dealt again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use crate::control::{self, ManagedSchema};
use crate::exec::{Fleet, RunOptions, SchemaReport};
use crate::names::SchemaName;
use crate::plan::{LedgerEntry, Scope, Selection, Target};
use crate::rollout::{Candidate, OrderBy, RolloutSummary, Stopped, Wave, WaveDone, plan_waves};

/// How `migrate` rolls out.
#[derive(Debug, Clone)]
pub struct RolloutOptions {
    /// The waves.
    pub waves: Vec<Wave>,
    /// The order tenants are taken in.
    pub order: OrderBy,
}

/// A run's targets dealt into waves.
#[derive(Debug, Clone)]
pub struct WavePlan {
    /// Per wave, the tenants it takes, in order.
    pub waves: Vec<Vec<SchemaName>>,
    /// What goes with the first wave without being one of its tenants: the shared schema
    /// and the tenants with nothing to do (reported as up to date).
    pub first: Vec<Target>,
    /// Tenants with pending work that no wave takes.
    pub unplanned: Vec<SchemaName>,
}

/// Deals `targets` into the waves of `o`: the tenants for which `needs_work` holds, by the
/// plan; everything else goes with the first wave.
pub fn deal(
    targets: Vec<Target>,
    reg: &[ManagedSchema],
    needs_work: impl Fn(&Target) -> bool,
    o: &RolloutOptions,
) -> WavePlan {
    let (work, first): (Vec<Target>, Vec<Target>) = targets
        .into_iter()
        .partition(|t| t.scope == Scope::Tenant && needs_work(t));
    let by_name: HashMap<&SchemaName, &ManagedSchema> =
        reg.iter().map(|m| (&m.schema, m)).collect();
    let candidates = work
        .into_iter()
        .map(|t| {
            let m = by_name.get(&t.schema);
            Candidate {
                created_at: m.map(|m| m.created_at.clone()).unwrap_or_default(),
                labels: m.map(|m| m.labels.clone()).unwrap_or_default(),
                schema: t.schema,
            }
        })
        .collect();
    let (waves, unplanned) = plan_waves(candidates, &o.waves, &o.order);
    WavePlan {
        waves,
        first,
        unplanned,
    }
}

/// What running the waves needs.
pub(super) struct WaveRun<'a> {
    pub fleet: &'a Arc<Fleet>,
    pub op: &'a Client,
    pub ledger: &'a HashMap<String, Vec<LedgerEntry>>,
    pub opts: &'a RunOptions,
    pub on_done: &'a (dyn Fn(&SchemaReport) + Sync),
    pub selection: &'a Selection,
    pub waves: &'a [Wave],
    /// The most tenants that may fail across all waves.
    pub allowed: usize,
    /// Where wave notes go (above the progress bar).
    pub progress: &'a crate::report::Progress,
}

/// Runs the waves in order until one does not pass its checks; every schema started ends up
/// in exactly one report.
pub(super) async fn run(w: &WaveRun<'_>, plan: WavePlan) -> (Vec<SchemaReport>, RolloutSummary) {
    let mut summary = RolloutSummary {
        planned: plan.waves.len(),
        done: Vec::new(),
        stopped: None,
        not_started: plan.unplanned.len(),
    };
    let mut reports = Vec::new();
    let mut failed = 0;
    let mut first = Some(plan.first);
    // No pause after the last wave that has tenants: nothing follows it.
    let last_busy = plan.waves.iter().rposition(|w| !w.is_empty()).unwrap_or(0);
    for (i, tenants) in plan.waves.into_iter().enumerate() {
        let number = i + 1;
        if summary.stopped.is_some() {
            summary.not_started += tenants.len();
            continue;
        }
        let spec = &w.waves[i];
        let mut targets = first.take().unwrap_or_default();
        targets.extend(tenants.iter().map(|schema| Target {
            schema: schema.clone(),
            scope: Scope::Tenant,
        }));
        if targets.is_empty() {
            // Nothing left for this wave (its selector matched no pending tenant).
            continue;
        }
        crate::report::wave_start(w.progress, number, summary.planned, spec, tenants.len());
        let opts = RunOptions {
            max_failures: Some(w.allowed),
            failed_before: failed,
            ..w.opts.clone()
        };
        let wave_reports = w
            .fleet
            .migrate(w.op, targets, w.ledger, &opts, w.on_done)
            .await;
        let wave_failed = wave_reports
            .iter()
            .filter(|r| r.outcome.is_failure())
            .count();
        failed += wave_failed;
        // Tenants of the wave kept from starting: by the budget or the shared schema, or by
        // a signal before their first step.
        summary.not_started += wave_reports
            .iter()
            .filter(|r| r.scope == Scope::Tenant)
            .filter(|r| match &r.outcome {
                crate::exec::Outcome::Skipped { .. } => true,
                crate::exec::Outcome::Interrupted { applied, .. } => applied.is_empty(),
                _ => false,
            })
            .count();
        let last = i >= last_busy;
        let shared_failed = wave_reports
            .iter()
            .any(|r| r.scope == Scope::Shared && r.outcome.is_problem());
        let stop = if crate::interrupt::received().is_some() {
            Some(Stopped::Signal)
        } else if shared_failed {
            // Its tenants were skipped; no later wave may run without it.
            Some(Stopped::Shared)
        } else if failed > w.allowed {
            Some(Stopped::Budget {
                failed,
                allowed: w.allowed,
            })
        } else {
            after_wave(w, spec, &wave_reports, &tenants, number, last).await
        };
        summary.done.push(WaveDone {
            number,
            size: spec.size,
            schemas: tenants,
            failed: wave_failed,
        });
        reports.extend(wave_reports);
        summary.stopped = stop.map(|s| (number, s));
    }
    (reports, summary)
}

/// The checks after a wave that ran within the budget: verify, pause (unless last), gate.
async fn after_wave(
    w: &WaveRun<'_>,
    spec: &Wave,
    reports: &[SchemaReport],
    tenants: &[SchemaName],
    number: usize,
    last: bool,
) -> Option<Stopped> {
    if tenants.is_empty() {
        return None;
    }
    let problems = verify_wave(w, reports).await;
    if !problems.is_empty() {
        return Some(Stopped::Verify { problems });
    }
    if let Some(pause) = spec.pause.filter(|_| !last) {
        crate::report::wave_pause(w.progress, number, pause);
        if !sleep_unless_stopped(pause).await {
            return Some(Stopped::Signal);
        }
    }
    if let Some(command) = &spec.gate {
        crate::report::wave_gate(w.progress, number, command);
        if let Err(why) = gate(command, number, tenants, w.opts.run_id).await {
            return Some(Stopped::Gate {
                command: command.clone(),
                why,
            });
        }
    }
    None
}

/// `verify` of the wave's tenants that the run reported done: each must be fully applied
/// with authentic ledger rows. Tenants that failed are the budget's business.
async fn verify_wave(w: &WaveRun<'_>, reports: &[SchemaReport]) -> Vec<String> {
    let schemas: Vec<&str> = reports.iter().map(|r| r.schema.as_str()).collect();
    let ledger = match control::read_ledger(w.op, Some(&schemas), &w.fleet.secret).await {
        Ok(l) => l,
        Err(e) => {
            return vec![format!(
                "the ledger could not be read to verify the wave: {e}"
            )];
        }
    };
    let empty = Vec::new();
    reports
        .iter()
        .filter(|r| r.scope == Scope::Tenant && !r.outcome.is_problem())
        .filter_map(|r| {
            let l = ledger.get(r.schema.as_str()).unwrap_or(&empty);
            let plan = w
                .fleet
                .plugins
                .plan((r.schema.as_str(), Scope::Tenant), w.selection, l);
            if plan.refused() {
                Some(format!(
                    "`{}`: its ledger has drifted or forged rows",
                    r.schema
                ))
            } else if !plan.pending.is_empty() {
                Some(format!(
                    "`{}`: {} step(s) still pending after the wave",
                    r.schema,
                    plan.pending.len()
                ))
            } else {
                None
            }
        })
        .collect()
}

/// Sleeps for `d`, waking early on SIGINT / SIGTERM; `false` when a signal came.
async fn sleep_unless_stopped(d: Duration) -> bool {
    let until = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < until {
        if crate::interrupt::received().is_some() {
            return false;
        }
        let step = until
            .saturating_duration_since(tokio::time::Instant::now())
            .min(Duration::from_millis(200));
        tokio::time::sleep(step).await;
    }
    crate::interrupt::received().is_none()
}

/// The longest tenant list passed in `WASMIG_WAVE_SCHEMAS` (an environment string is
/// limited to 128 KiB on Linux); the file always has them all.
const SCHEMAS_IN_ENV: usize = 64 << 10;

/// Runs a gate command with `sh -c`, its output on stderr, stopped (its whole process
/// group) after [`crate::rollout::GATE_TIMEOUT`]. It sees `WASMIG_RUN_ID`, `WASMIG_WAVE`,
/// `WASMIG_WAVE_SCHEMAS_FILE` (the wave's tenants, one per line) and, when the list is short
/// enough for an environment variable, `WASMIG_WAVE_SCHEMAS` (comma-separated).
async fn gate(
    command: &str,
    wave: usize,
    tenants: &[SchemaName],
    run_id: i64,
) -> Result<(), String> {
    let schemas: Vec<&str> = tenants.iter().map(SchemaName::as_str).collect();
    let list = tempfile::Builder::new()
        .prefix("wasmig-wave-")
        .tempfile()
        .map_err(|e| format!("its tenant list could not be written: {e}"))?;
    std::fs::write(list.path(), schemas.join("\n") + "\n")
        .map_err(|e| format!("its tenant list could not be written: {e}"))?;
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("WASMIG_RUN_ID", run_id.to_string())
        .env("WASMIG_WAVE", wave.to_string())
        .env("WASMIG_WAVE_SCHEMAS_FILE", list.path())
        .env_remove("WASMIG_WAVE_SCHEMAS")
        .stdin(std::process::Stdio::null())
        .stdout(std::io::stderr())
        .stderr(std::io::stderr())
        .process_group(0)
        .kill_on_drop(true);
    let joined = schemas.join(",");
    if joined.len() <= SCHEMAS_IN_ENV {
        cmd.env("WASMIG_WAVE_SCHEMAS", joined);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("it could not be started: {e}"))?;
    match tokio::time::timeout(crate::rollout::GATE_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(match status.code() {
            Some(code) => format!("it exited with {code}"),
            None => "it was killed by a signal".to_owned(),
        }),
        Ok(Err(e)) => Err(format!("waiting for it failed: {e}")),
        Err(_) => {
            // Everything the command started is in its process group.
            if let Some(pid) = child.id() {
                let killed = tokio::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status()
                    .await;
                if !killed.is_ok_and(|s| s.success()) {
                    tracing::warn!("could not stop the gate command's process group {pid}");
                }
            }
            if let Err(e) = child.kill().await {
                tracing::warn!("could not stop the gate command: {e}");
            }
            Err(format!(
                "it did not finish within {}s and was stopped",
                crate::rollout::GATE_TIMEOUT.as_secs()
            ))
        }
    }
}
