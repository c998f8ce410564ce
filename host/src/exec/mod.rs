//! Running plans: one schema at a time under its advisory lock, each step in its own
//! transaction on the schema role's connection, its ledger row committed in that same
//! transaction; schemas fanned out over `jobs` workers, shared scope first.
//!
//! Architecture invariant: a step's changes and its ledger row commit together or not at
//! all (transactional steps); a failure stops only its own schema.

mod plugins;
mod queue;
mod schema;
mod step;

pub use plugins::RunPlugins;

/// The most sessions a run with `jobs` workers opens beyond the operator's own: the lock
/// watchdog's, and per worker its operator session, the schema role's session it works on
/// and the logins it keeps under way ahead.
pub fn sessions_needed(jobs: usize) -> usize {
    1 + jobs * (2 + queue::LOGINS_AHEAD)
}

/// The most workers whose sessions fit in `free` connection slots (0: not even one).
pub fn jobs_that_fit(free: usize, jobs: usize) -> usize {
    (0..=jobs)
        .rev()
        .find(|&j| j == 0 || sessions_needed(j) <= free)
        .unwrap_or(0)
}

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio_postgres::Client;

use crate::control::{self, GrantAction, StepGrant};
use crate::db::connect::DbTarget;
use crate::names::SchemaName;
use crate::plan::{Drift, LedgerEntry, PendingStep, Scope, Selection, StepRef, Target};
use crate::plugin::Runtime;

/// Everything a run needs, built once.
pub struct Fleet {
    /// Operator connection settings.
    pub target: DbTarget,
    /// Engine and limits.
    pub runtime: Runtime,
    /// The run's plugins with their limits and tiers.
    pub plugins: RunPlugins,
    /// Control secret (derives role passwords).
    pub secret: [u8; 32],
    /// Schema -> role, from the registry.
    pub roles: HashMap<SchemaName, String>,
    /// Dump each schema with pending steps before migrating it.
    pub backups: Option<crate::backup::Backups>,
    /// The locks held by running steps.
    pub watch: crate::watch::LockWatch,
    /// Further attempts of a step that lost a lock conflict.
    pub retries: u32,
    /// Attempts made again so far, per schema (taken into its report).
    pub retried: std::sync::Mutex<HashMap<SchemaName, u32>>,
}

impl Fleet {
    /// Counts one more attempt of a step in `schema`.
    pub(crate) fn count_retry(&self, schema: &SchemaName) {
        if let Ok(mut m) = self.retried.lock() {
            *m.entry(schema.clone()).or_default() += 1;
        }
    }

    /// The attempts made again in `schema` (and forgets them).
    pub(crate) fn take_retries(&self, schema: &SchemaName) -> u32 {
        self.retried
            .lock()
            .ok()
            .and_then(|mut m| m.remove(schema))
            .unwrap_or(0)
    }
}

/// How one schema ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Nothing to do.
    UpToDate,
    /// Every pending step applied.
    Applied {
        /// Steps applied, in order.
        steps: Vec<StepRef>,
    },
    /// A step failed; earlier steps of this run stay applied.
    Failed {
        /// Steps applied before the failure.
        applied: Vec<StepRef>,
        /// Plugin of the failed step.
        plugin: String,
        /// Failed step.
        step: String,
        /// SQLSTATE, if PostgreSQL reported one.
        sqlstate: Option<String>,
        /// The error.
        message: String,
    },
    /// Applied steps changed: the schema was refused.
    Drift {
        /// The drifted steps.
        drift: Vec<Drift>,
    },
    /// Ledger rows that wasmig did not write: the schema was refused.
    Forged {
        /// Each forged row's step.
        rows: Vec<StepRef>,
    },
    /// The selection cannot run here.
    Blocked {
        /// Why.
        reason: String,
    },
    /// Not attempted.
    Skipped {
        /// Why.
        reason: String,
    },
    /// wasmig could not work on the schema (connection, lock, ledger).
    Error {
        /// What went wrong.
        message: String,
    },
    /// The run was stopped by a signal before this schema was done: the steps in `applied`
    /// committed, the rest were not started (a rerun applies them).
    Interrupted {
        /// Steps applied before the signal.
        applied: Vec<StepRef>,
        /// `SIGINT` or `SIGTERM`.
        signal: String,
    },
}

impl Outcome {
    /// Whether this outcome makes the run exit non-zero.
    pub fn is_problem(&self) -> bool {
        !matches!(self, Outcome::UpToDate | Outcome::Applied { .. })
    }

    /// Its name in `--json` and in the run history: `up_to_date`, `applied`, `failed`,
    /// `drift`, `forged`, `blocked`, `skipped`, `error` or `interrupted`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::UpToDate => "up_to_date",
            Outcome::Applied { .. } => "applied",
            Outcome::Failed { .. } => "failed",
            Outcome::Drift { .. } => "drift",
            Outcome::Forged { .. } => "forged",
            Outcome::Blocked { .. } => "blocked",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Error { .. } => "error",
            Outcome::Interrupted { .. } => "interrupted",
        }
    }

    /// A problem of the schema itself (what the failure budget counts), not one of the run:
    /// not a schema skipped or left unfinished by a signal.
    pub fn is_failure(&self) -> bool {
        self.is_problem() && !matches!(self, Outcome::Skipped { .. } | Outcome::Interrupted { .. })
    }
}

/// One schema's result.
#[derive(Debug, Clone)]
pub struct SchemaReport {
    /// Schema.
    pub schema: SchemaName,
    /// Scope.
    pub scope: Scope,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time spent on it.
    pub duration: std::time::Duration,
    /// Step attempts made again after a lock conflict, a deadlock or a serialization failure.
    pub retries: u32,
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run record id.
    pub run_id: i64,
    /// Plugin selection.
    pub selection: Selection,
    /// Parallel schemas.
    pub jobs: usize,
    /// Once more schemas than this failed, no new schema starts (`--max-failures`).
    pub max_failures: Option<usize>,
    /// Schemas of the run that failed before this call (drawn on the same budget).
    pub failed_before: usize,
}

impl Fleet {
    /// Migrates `targets`: shared ones first (tenants are skipped if one fails), then tenants
    /// over `opts.jobs` workers. `snapshot` is the whole ledger read once up front: schemas it
    /// shows as up to date (or refused) cost no further round trip. `on_done` sees each
    /// report as it completes.
    pub async fn migrate(
        self: &Arc<Self>,
        op: &Client,
        targets: Vec<Target>,
        snapshot: &HashMap<String, Vec<LedgerEntry>>,
        opts: &RunOptions,
        on_done: &(dyn Fn(&SchemaReport) + Sync),
    ) -> Vec<SchemaReport> {
        let mut reports = Vec::new();
        let mut work = Vec::new();
        let empty = Vec::new();
        for t in targets {
            let ledger = snapshot.get(t.schema.as_str()).unwrap_or(&empty);
            let plan = self
                .plugins
                .plan((t.schema.as_str(), t.scope), &opts.selection, ledger);
            // Steps are only ever added to a ledger, so a schema complete in the snapshot is
            // complete now; anything else is re-checked under the schema's lock.
            let settled = if plan.refused() {
                Some(refusal(plan))
            } else if plan.pending.is_empty() {
                Some(Outcome::UpToDate)
            } else {
                None
            };
            match settled {
                Some(outcome) => {
                    let r = report(t, outcome, Instant::now());
                    on_done(&r);
                    reports.push(r);
                }
                None => work.push(t),
            }
        }
        if work.is_empty() {
            return reports;
        }
        // Refusals settled from the snapshot count against the failure budget like any other.
        let settled = reports.iter().filter(|r| r.outcome.is_failure()).count();
        let mut opts = opts.clone();
        if let Some(max) = opts.max_failures
            && opts.failed_before + settled > max
        {
            for t in work {
                let reason = over_budget(max);
                let r = report(t, Outcome::Skipped { reason }, Instant::now());
                on_done(&r);
                reports.push(r);
            }
            return reports;
        }
        opts.failed_before += settled;
        let opts = &opts;
        // While steps run, one more operator session watches the locks they hold.
        let watcher = match self.target.connect().await {
            Ok(c) => {
                self.watch.size_from_server(&c, opts.jobs).await;
                Some(c)
            }
            Err(e) => {
                tracing::warn!(
                    "no session for the lock watchdog ({e}); this run's steps are not stopped at their lock limit"
                );
                None
            }
        };
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (worked, ()) = tokio::join!(
            async {
                let r = self.migrate_work(op, work, snapshot, opts, on_done).await;
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                r
            },
            async {
                if let Some(c) = &watcher {
                    self.watch.run(c, &stop).await;
                }
            }
        );
        reports.extend(worked);
        reports
    }

    /// The part of [`Fleet::migrate`] that touches schemas: grants, then the shared schema,
    /// then the tenants.
    async fn migrate_work(
        self: &Arc<Self>,
        op: &Client,
        work: Vec<Target>,
        snapshot: &HashMap<String, Vec<LedgerEntry>>,
        opts: &RunOptions,
        on_done: &(dyn Fn(&SchemaReport) + Sync),
    ) -> Vec<SchemaReport> {
        let mut reports = Vec::new();
        // One statement (one commit) grants every step the snapshot shows pending, for all
        // schemas; the per-schema path then writes nothing on the operator's connection.
        let grants = self.grant_all(op, &work, snapshot, opts).await;
        let (shared, tenants): (Vec<Target>, Vec<Target>) =
            work.into_iter().partition(|t| t.scope == Scope::Shared);
        reports.extend(
            queue::Queue::new(self, shared, &grants, opts, on_done)
                .drain()
                .await,
        );
        if let Some(sig) = crate::interrupt::received() {
            for t in tenants {
                let r = report(t, interrupted(Vec::new(), sig), Instant::now());
                on_done(&r);
                reports.push(r);
            }
            if let Err(e) = control::clear_run_grants(op, opts.run_id).await {
                tracing::warn!("{e}");
            }
            return reports;
        }
        if let Some(bad) = reports
            .iter()
            .find(|r| r.scope == Scope::Shared && r.outcome.is_problem())
        {
            let reason = format!("the shared schema `{}` did not migrate cleanly", bad.schema);
            for t in tenants {
                let r = report(
                    t,
                    Outcome::Skipped {
                        reason: reason.clone(),
                    },
                    Instant::now(),
                );
                on_done(&r);
                reports.push(r);
            }
            return reports;
        }
        reports.extend(
            queue::Queue::new(self, tenants, &grants, opts, on_done)
                .drain()
                .await,
        );
        if let Err(e) = control::clear_run_grants(op, opts.run_id).await {
            tracing::warn!("{e}");
        }
        reports
    }

    async fn grant_all(
        &self,
        op: &Client,
        work: &[Target],
        snapshot: &HashMap<String, Vec<LedgerEntry>>,
        opts: &RunOptions,
    ) -> Grants {
        let empty = Vec::new();
        let mut grants: Grants = HashMap::new();
        for t in work {
            let ledger = snapshot.get(t.schema.as_str()).unwrap_or(&empty);
            let plan = self
                .plugins
                .plan((t.schema.as_str(), t.scope), &opts.selection, ledger);
            let list = plan
                .pending
                .iter()
                .map(|p| (*p, self.grant(&t.schema, p, apply_action(&plan, p))))
                .collect();
            grants.insert(t.schema.clone(), list);
        }
        let rows: Vec<(&str, &SchemaName, &StepGrant)> = grants
            .iter()
            .filter_map(|(schema, list)| self.roles.get(schema).map(|role| (role, schema, list)))
            .flat_map(|(role, schema, list)| {
                list.iter().map(move |(_, g)| (role.as_str(), schema, g))
            })
            .collect();
        for chunk in rows.chunks(10_000) {
            if let Err(e) = control::insert_grants(op, opts.run_id, chunk).await {
                // Each schema then grants its own steps (and reports the error if it recurs).
                tracing::warn!("{e}");
                return HashMap::new();
            }
        }
        grants
    }
}

/// One-time grants per schema, for the steps pending in the up-front snapshot.
type Grants = HashMap<SchemaName, Vec<(PendingStep, StepGrant)>>;

fn refusal(plan: crate::plan::SchemaPlan) -> Outcome {
    if !plan.forged.is_empty() {
        Outcome::Forged { rows: plan.forged }
    } else if !plan.drift.is_empty() {
        Outcome::Drift { drift: plan.drift }
    } else {
        Outcome::Blocked {
            reason: plan.blocked.unwrap_or_default(),
        }
    }
}

fn interrupted(applied: Vec<StepRef>, sig: crate::interrupt::Signal) -> Outcome {
    Outcome::Interrupted {
        applied,
        signal: sig.name().to_owned(),
    }
}

fn report(t: Target, outcome: Outcome, started: Instant) -> SchemaReport {
    SchemaReport {
        schema: t.schema,
        scope: t.scope,
        outcome,
        duration: started.elapsed(),
        retries: 0,
    }
}

/// How a pending step of `plan` is recorded: a first apply, or a repeatable step run again.
pub(crate) fn apply_action(plan: &crate::plan::SchemaPlan, p: &PendingStep) -> GrantAction {
    if plan.reruns.contains(p) {
        GrantAction::Rerun
    } else {
        GrantAction::Apply
    }
}

/// Why a schema was not started once the run's failure budget was spent.
pub(crate) fn over_budget(max: usize) -> String {
    format!("not started: more than {max} schema(s) of the run failed (--max-failures)")
}

#[cfg(test)]
mod tests {
    use super::{jobs_that_fit, sessions_needed};

    #[test]
    fn workers_are_as_many_as_the_free_connections_allow() {
        assert_eq!(sessions_needed(1), 5);
        assert_eq!(jobs_that_fit(100, 8), 8);
        assert_eq!(jobs_that_fit(sessions_needed(3), 8), 3);
        assert_eq!(jobs_that_fit(sessions_needed(3) - 1, 8), 2);
        assert_eq!(jobs_that_fit(4, 8), 0);
    }
}
