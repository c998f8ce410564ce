//! Running plans: one schema at a time under its advisory lock, each step in its own
//! transaction on the schema role's connection, its ledger row committed in that same
//! transaction; schemas fanned out over `jobs` workers, shared scope first.
//!
//! Architecture invariant: a step's changes and its ledger row commit together or not at
//! all (transactional steps); a failure stops only its own schema.

mod plugins;

pub use plugins::RunPlugins;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio_postgres::Client;

use crate::control::{self, CLEAN_SESSION, END_STEP, StepGrant, step_sql};
use crate::db::PgError;
use crate::db::connect::DbTarget;
use crate::names::SchemaName;
use crate::plan::{Drift, LedgerEntry, PendingStep, PluginSpec, Scope, Selection, Target};
use crate::plugin::Runtime;
use crate::plugin::bindings::exports::wasmig::plugin::plugin::StepError;
use crate::plugin::sql::FailedStatement;
use crate::plugin::sql::SqlSession;
use crate::secret;

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
}

/// How one schema ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing to do.
    UpToDate,
    /// Every pending step applied.
    Applied {
        /// `plugin/step` applied, in order.
        steps: Vec<String>,
    },
    /// A step failed; earlier steps of this run stay applied.
    Failed {
        /// Steps applied before the failure.
        applied: Vec<String>,
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
        /// `plugin/step` of each forged row.
        rows: Vec<String>,
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
        applied: Vec<String>,
        /// `SIGINT` or `SIGTERM`.
        signal: String,
    },
}

impl Outcome {
    /// Whether this outcome makes the run exit non-zero.
    pub fn is_problem(&self) -> bool {
        !matches!(self, Outcome::UpToDate | Outcome::Applied { .. })
    }
}

/// One schema's result.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaReport {
    /// Schema.
    pub schema: SchemaName,
    /// Scope.
    pub scope: Scope,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Wall time spent on it.
    #[serde(serialize_with = "crate::report::round3")]
    pub duration_ms: f64,
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
}

#[derive(Default)]
struct StepFailure {
    sqlstate: Option<String>,
    message: String,
    /// The failing line with a caret under the error position (host-made, already inert).
    context: Option<String>,
    /// The server's DETAIL and HINT lines.
    detail: Option<String>,
    hint: Option<String>,
    /// A plugin statement ended the step's transaction (see [`SqlSession::lost_transaction`]).
    lost_transaction: bool,
}

impl StepFailure {
    /// The failure as wasmig shows and stores it. Its text may come from the plugin (its own
    /// error, its panic message, or SQL error text it raised), so control characters are
    /// made visible and the length is capped; a SQLSTATE that is not five digits or capital
    /// letters is not one.
    fn inert(self) -> StepFailure {
        let message = self.shown();
        StepFailure {
            sqlstate: self.sqlstate.filter(|c| {
                c.len() == 5
                    && c.bytes()
                        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            }),
            message,
            lost_transaction: self.lost_transaction,
            ..StepFailure::default()
        }
    }

    /// The message, then as psql shows them: the line with its caret, DETAIL, HINT, each on
    /// a line of its own (every part inert on its own, so none can add lines).
    fn shown(&self) -> String {
        let cap = crate::text::MAX_ERROR_CHARS;
        let mut out = crate::text::inert(&self.message, cap);
        for line in self.context.iter().flat_map(|c| c.lines()) {
            out.push_str("\n  ");
            out.push_str(line);
        }
        for (label, text) in [("DETAIL", &self.detail), ("HINT", &self.hint)] {
            if let Some(t) = text {
                out.push_str(&format!("\n  {label}: {}", crate::text::inert(t, cap)));
            }
        }
        out
    }
}

/// What a successful plugin call leaves for the host to finish the step with.
struct Called {
    /// The plugin sent no SQL: the step's transaction is still to be opened.
    begin_pending: bool,
    /// The id of the step's transaction, if it opened.
    xid: Option<String>,
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
            let plan = self.plugins.plan(t.scope, &opts.selection, ledger);
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
        reports.extend(self.run_queue(shared, &grants, opts, on_done).await);
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
        reports.extend(self.run_queue(tenants, &grants, opts, on_done).await);
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
            let plan = self.plugins.plan(t.scope, &opts.selection, ledger);
            let list = plan
                .pending
                .iter()
                .map(|p| (*p, self.grant(&t.schema, p)))
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

    async fn run_queue(
        self: &Arc<Self>,
        targets: Vec<Target>,
        grants: &Grants,
        opts: &RunOptions,
        on_done: &(dyn Fn(&SchemaReport) + Sync),
    ) -> Vec<SchemaReport> {
        if targets.is_empty() {
            return Vec::new();
        }
        let queue: Mutex<VecDeque<(Target, u32)>> =
            Mutex::new(targets.into_iter().map(|t| (t, 0)).collect());
        // How long a schema may stay locked by another runner before this run gives up on it.
        // That runner's steps are bounded by the same limit, and it may hold the lock through
        // the schema before (taken ahead) as well as this one's steps.
        let lock_wait = self.runtime.limits().step_timeout * 4;
        let busy_since: Mutex<HashMap<SchemaName, Instant>> = Mutex::new(HashMap::new());
        let reports = Mutex::new(Vec::new());
        let workers = opts
            .jobs
            .max(1)
            .min(queue.lock().map(|q| q.len()).unwrap_or(1));
        let worker = |_: usize| async {
            let mut op = match self.target.connect().await {
                Ok(c) => c,
                Err(e) => {
                    // Without a connection this worker can do nothing; report what it would
                    // have taken so that no schema silently disappears from the summary.
                    let msg = e.to_string();
                    while let Some((t, _)) = pop(&queue) {
                        let r = report(
                            t,
                            Outcome::Error {
                                message: msg.clone(),
                            },
                            Instant::now(),
                        );
                        on_done(&r);
                        push(&reports, r);
                    }
                    return;
                }
            };
            // While one schema runs, the next ones' role logins are already under way: a
            // login is a new server backend (fork, authentication, cold caches), and starting
            // it early overlaps it with the current schema's work.
            let mut ahead: VecDeque<(Target, u32, Prefetch)> = VecDeque::new();
            // The lock of the schema just done: its release travels with the next request on
            // the operator connection rather than costing a round trip of its own.
            let mut locked: Option<SchemaName> = None;
            // The lock and ledger of `ahead.front()`, read while the current schema ran: it
            // belongs to the schema the loop takes next (nothing reorders `ahead` in between).
            let mut prelocked: Option<LockResult> = None;
            loop {
                if let Some(sig) = crate::interrupt::received() {
                    // Start nothing more: what this worker took ahead and what is still
                    // queued is reported as not done, so no schema goes missing from the
                    // summary.
                    if let (Some(Ok(Some(_))), Some((next, _, _))) = (&prelocked, ahead.front()) {
                        // Locked ahead for the schema that now will not run.
                        release(&op, Some(next.schema.clone())).await;
                    }
                    drop(prelocked.take());
                    let mut left: Vec<Target> = Vec::new();
                    for (t, _, login) in ahead.drain(..) {
                        login.abort();
                        left.push(t);
                    }
                    while let Some((t, _)) = pop(&queue) {
                        left.push(t);
                    }
                    for t in left {
                        let r = report(t, interrupted(Vec::new(), sig), Instant::now());
                        on_done(&r);
                        push(&reports, r);
                    }
                    break;
                }
                let Some((t, attempts, login)) = ahead.pop_front().or_else(|| {
                    pop(&queue).map(|(t, a)| {
                        let login = self.prefetch_login(&t);
                        (t, a, login)
                    })
                }) else {
                    break;
                };
                // Only from a queue long enough that every other worker still finds work:
                // schemas taken ahead are not available to the others.
                while ahead.len() < LOGINS_AHEAD && queue.lock().map_or(0, |q| q.len()) > workers {
                    let Some((t2, a2)) = pop(&queue) else { break };
                    let login2 = self.prefetch_login(&t2);
                    ahead.push_back((t2, a2, login2));
                }
                let started = Instant::now();
                if op.is_closed() {
                    // The server restarted or dropped us: the schema in flight was reported
                    // failed, and session locks went with the session. Reconnect (the server
                    // may still be starting) and go on.
                    locked = None;
                    prelocked = None;
                    match self.reconnect().await {
                        Ok(c) => op = c,
                        Err(message) => {
                            login.abort();
                            let r = report(t, Outcome::Error { message }, started);
                            on_done(&r);
                            push(&reports, r);
                            continue;
                        }
                    }
                }
                let ledger = match prelocked.take() {
                    Some(r) => r,
                    None => {
                        let (_, r) = tokio::join!(
                            release(&op, locked.take()),
                            control::try_lock_and_read(&op, &t.schema, &self.secret)
                        );
                        r
                    }
                };
                let ledger = match ledger {
                    Ok(Some(l)) => l,
                    Ok(None) => {
                        // Another runner is on it: go on with other schemas and come back
                        // later; never block on the lock, which would serialise the fleet.
                        login.abort();
                        release(&op, locked.take()).await;
                        let since = busy_since
                            .lock()
                            .map(|mut m| *m.entry(t.schema.clone()).or_insert(started))
                            .unwrap_or(started);
                        if since.elapsed() > lock_wait {
                            let message = format!(
                                "schema `{}` stayed locked by another wasmig run for more than {}s; skipped",
                                t.schema,
                                lock_wait.as_secs()
                            );
                            let r = report(t, Outcome::Error { message }, since);
                            on_done(&r);
                            push(&reports, r);
                            continue;
                        }
                        if attempts > 0 {
                            let backoff = 10u64 << attempts.min(5);
                            tokio::time::sleep(std::time::Duration::from_millis(backoff)).await;
                        }
                        if let Ok(mut q) = queue.lock() {
                            q.push_back((t, attempts + 1));
                        }
                        continue;
                    }
                    Err(e) => {
                        login.abort();
                        release(&op, locked.take()).await;
                        // The statement may have failed after taking the lock (a session lock
                        // outlives the failed statement): let it go rather than hold the
                        // schema until this worker's connection closes. Unlocking a lock
                        // not held only draws a server warning; a closed connection took
                        // its locks with it.
                        if !op.is_closed() {
                            release(&op, Some(t.schema.clone())).await;
                        }
                        let r = report(
                            t,
                            Outcome::Error {
                                message: e.to_string(),
                            },
                            started,
                        );
                        on_done(&r);
                        push(&reports, r);
                        continue;
                    }
                };
                let issued = grants.get(&t.schema).map_or(&[][..], Vec::as_slice);
                // The schema runs; meanwhile the operator connection releases the previous
                // schema and locks and reads the next one.
                let next = ahead.front().map(|(n, _, _)| n.schema.clone());
                let (outcome, (), next_lock) = tokio::join!(
                    self.migrate_locked(&op, &t, ledger, issued, login, opts),
                    release(&op, locked.take()),
                    async {
                        match &next {
                            Some(n) => Some(control::try_lock_and_read(&op, n, &self.secret).await),
                            None => None,
                        }
                    }
                );
                prelocked = next_lock;
                locked = Some(t.schema.clone());
                let r = report(t, outcome, started);
                on_done(&r);
                push(&reports, r);
            }
            // The loop ends only with `ahead` empty, so nothing was locked ahead.
            release(&op, locked).await;
        };
        let futures: Vec<_> = (0..workers).map(worker).collect();
        // Workers share borrowed state, so they run concurrently on this task rather than as
        // spawned tasks; their I/O interleaves at every await.
        futures_util::future::join_all(futures).await;
        reports.into_inner().unwrap_or_default()
    }

    /// A new operator connection, retried with backoff for up to 30 s.
    async fn reconnect(&self) -> Result<Client, String> {
        let started = Instant::now();
        let mut delay = std::time::Duration::from_millis(200);
        loop {
            match self.target.connect().await {
                Ok(c) => return Ok(c),
                Err(e) if started.elapsed() > std::time::Duration::from_secs(30) => {
                    return Err(format!("lost the connection and could not reconnect: {e}"));
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                }
            }
        }
    }

    /// Starts logging in as the schema's role in the background.
    fn prefetch_login(self: &Arc<Self>, t: &Target) -> Prefetch {
        let fleet = self.clone();
        let schema = t.schema.clone();
        Prefetch(tokio::spawn(async move {
            let role = fleet.roles.get(&schema)?;
            let password = secret::role_password(&fleet.secret, role);
            let group = control::tenant_group_for(fleet.target.dbname());
            let options = fleet
                .runtime
                .limits()
                .session
                .startup_options(&schema, &group);
            let client = fleet
                .target
                .connect_as(role, &password, &options)
                .await
                .ok()?;
            if let Err(e) = client.batch_execute(control::WARM_UP_SQL).await {
                // Only a lost optimisation: the first step pays for the lookups instead.
                tracing::debug!("{schema}: warming up the session failed: {e}");
            }
            Some(client)
        }))
    }

    async fn migrate_locked(
        &self,
        op: &Client,
        t: &Target,
        ledger: Vec<LedgerEntry>,
        issued: &[(PendingStep, StepGrant)],
        login: Prefetch,
        opts: &RunOptions,
    ) -> Outcome {
        let plan = self.plugins.plan(t.scope, &opts.selection, &ledger);
        if plan.refused() || plan.pending.is_empty() {
            login.abort();
            return if plan.refused() {
                refusal(plan)
            } else {
                Outcome::UpToDate
            };
        }
        let Some(role) = self.roles.get(&t.schema) else {
            return Outcome::Error {
                message: format!(
                    "schema `{}` is not registered; create it with `wasmig tenant create`",
                    t.schema
                ),
            };
        };
        if let Some(b) = &self.backups {
            // Under the lock and before any change: a schema whose dump fails is not touched.
            match b.dump(&self.target, op, &t.schema).await {
                Ok(file) => tracing::info!("{}: backed up to {}", t.schema, file.display()),
                Err(e) => {
                    login.abort();
                    return Outcome::Error {
                        message: format!("{e}; the schema was not migrated"),
                    };
                }
            }
        }
        // Normally every pending step was granted up front. A step that was not (the ledger
        // changed since the snapshot) is granted now, while the role login is under way.
        let mut grants: Vec<StepGrant> = Vec::with_capacity(plan.pending.len());
        let mut missing = Vec::new();
        for p in &plan.pending {
            match issued.iter().find(|(q, _)| q == p) {
                Some((_, g)) => grants.push(g.clone()),
                None => {
                    let g = self.grant(&t.schema, p);
                    missing.push(g.clone());
                    grants.push(g);
                }
            }
        }
        let rows: Vec<(&str, &SchemaName, &StepGrant)> = missing
            .iter()
            .map(|g| (role.as_str(), &t.schema, g))
            .collect();
        let (granted, client) =
            tokio::join!(control::insert_grants(op, opts.run_id, &rows), async {
                match login.0.await {
                    Ok(Some(c)) => Ok(c),
                    // The prefetch failed (e.g. the plugin changed its role's password): log in
                    // again on the path that repairs what it can and reports what it cannot.
                    _ => self.connect_schema_role(op, role, &t.schema).await,
                }
            });
        if let Err(e) = granted {
            return Outcome::Error {
                message: e.to_string(),
            };
        }
        let client = match client {
            Ok(c) => Arc::new(c),
            Err(message) => return Outcome::Error { message },
        };
        let mut applied = Vec::new();
        for (p, g) in plan.pending.iter().zip(&grants) {
            if let Some(sig) = crate::interrupt::received() {
                return interrupted(applied, sig);
            }
            let (pl, st) = self.step(p);
            let name = format!("{}/{}", pl.name, st.id);
            match self.run_shared_first(op, &client, *p, t, &g.token).await {
                Ok(()) => {
                    tracing::debug!("{}: applied {name}", t.schema);
                    applied.push(name);
                }
                Err(f) => {
                    let f = f.inert();
                    if let Err(e) = control::record_failure(
                        op,
                        opts.run_id,
                        &t.schema,
                        &pl.name,
                        &st.id,
                        f.sqlstate.as_deref(),
                        &f.message,
                    )
                    .await
                    {
                        tracing::warn!("{}: could not record the failure: {e}", t.schema);
                    }
                    return Outcome::Failed {
                        applied,
                        plugin: pl.name.clone(),
                        step: st.id.clone(),
                        sqlstate: f.sqlstate,
                        message: f.message,
                    };
                }
            }
        }
        Outcome::Applied { steps: applied }
    }

    /// [`Fleet::run_step`], except that a shared-schema step that could not get a lock (or
    /// was chosen as a deadlock victim) ends the tenant sessions holding locks in the shared
    /// schema and is tried again, up to [`SHARED_LOCK_ATTEMPTS`] times: a tenant step must not
    /// keep the shared schema from migrating, which would skip every tenant of the run.
    async fn run_shared_first(
        &self,
        op: &Client,
        client: &Arc<Client>,
        p: PendingStep,
        t: &Target,
        token: &[u8; 32],
    ) -> Result<(), StepFailure> {
        let mut attempt = 1;
        loop {
            let ran = self.run_step(client, p, &t.schema, token).await;
            let conflict = matches!(&ran, Err(f)
                if matches!(f.sqlstate.as_deref(), Some("55P03" | "40P01")));
            if t.scope != Scope::Shared || !conflict || attempt == SHARED_LOCK_ATTEMPTS {
                return ran;
            }
            let (pl, st) = self.step(&p);
            match control::end_tenant_sessions_locking(op, &t.schema).await {
                Ok(n) => tracing::warn!(
                    "{}: {}/{} could not get its locks; ended {n} tenant session(s) holding locks in the shared schema, trying again ({}/{SHARED_LOCK_ATTEMPTS})",
                    t.schema,
                    pl.name,
                    st.id,
                    attempt + 1
                ),
                Err(e) => tracing::warn!("{}: {e}", t.schema),
            }
            tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            attempt += 1;
        }
    }

    fn grant(&self, schema: &SchemaName, p: &PendingStep) -> StepGrant {
        let (pl, st) = self.step(p);
        let mac = secret::ledger_mac(
            &self.secret,
            &crate::secret::LedgerMacFields {
                schema: schema.as_str(),
                plugin: &pl.name,
                step_id: &st.id,
                checksum: &st.checksum,
                artifact_checksum: &pl.artifact_checksum,
                plugin_version: &pl.version,
            },
        );
        StepGrant {
            token: secret::token(),
            plugin: pl.name.clone(),
            step_id: st.id.clone(),
            checksum: st.checksum.clone(),
            artifact_checksum: pl.artifact_checksum.clone(),
            plugin_version: pl.version.clone(),
            mac,
            action: "apply",
            tier: self.plugins.tier(p.plugin),
            temp_limit_kb: self
                .plugins
                .limits(p.plugin)
                .max_temp_mb
                .map(|mb| i64::try_from(mb.saturating_mul(1024)).unwrap_or(i64::MAX)),
        }
    }

    /// Logs in as the schema's own role. A plugin can change its own role's password (any
    /// PostgreSQL role may), so on an authentication failure the operator restores the derived
    /// password once and retries.
    async fn connect_schema_role(
        &self,
        op: &Client,
        role: &str,
        schema: &SchemaName,
    ) -> Result<Client, String> {
        let password = secret::role_password(&self.secret, role);
        let group = control::tenant_group_for(self.target.dbname());
        let options = self
            .runtime
            .limits()
            .session
            .startup_options(schema, &group);
        match self.target.connect_as(role, &password, &options).await {
            Ok(c) => Ok(c),
            Err(crate::db::connect::ConnectError::Connect { error, .. })
                if error.sqlstate.as_deref() == Some("28P01") =>
            {
                tracing::warn!("{schema}: role `{role}` refused its password; restoring it");
                control::reset_role_password(op, role, &self.secret)
                    .await
                    .map_err(|e| e.to_string())?;
                self.target
                    .connect_as(role, &password, &options)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn step(&self, p: &PendingStep) -> (&PluginSpec, &crate::plan::StepSpec) {
        let pl = self.plugins.spec(p.plugin);
        (pl, &pl.steps[p.step])
    }

    /// One step: the plugin's SQL (the transaction's `BEGIN` rides with its first script),
    /// then the ledger record, `COMMIT` and `RESET ALL` in a single round trip.
    async fn run_step(
        &self,
        client: &Arc<Client>,
        p: PendingStep,
        schema: &SchemaName,
        token: &[u8; 32],
    ) -> Result<(), StepFailure> {
        let (pl, st) = self.step(&p);
        let transactional = st.transactional;
        let started = Instant::now();
        let role = self.roles.get(schema).map_or("", String::as_str);
        self.watch
            .start(role, self.plugins.limits(p.plugin).max_locks);
        let called = self
            .call_plugin(client, p, schema, transactional, Call::Apply, token)
            .await;
        let lost = matches!(&called, Err(f) if f.lost_transaction);
        let outcome = match called {
            Ok(called) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                // `RESET ALL` first: the ledger record and the COMMIT (which fires deferred
                // constraints) run under the session's own settings, not the plugin's
                // `search_path` or `statement_timeout`. The token is a one-time secret
                // consumed by this very statement; `record_step` also checks that this is
                // still the transaction the step's SQL ran in, and that the step left no
                // object outside its schema.
                let finish = format!(
                    "{begin}RESET ALL; RESET ROLE; {record}; {commit} {CLEAN_SESSION}",
                    begin = if transactional && called.begin_pending {
                        format!("BEGIN; {}; ", step_sql::begin_step(token))
                    } else {
                        String::new()
                    },
                    record = step_sql::record_step(token, ms, called.xid.as_deref()),
                    commit = if transactional { "COMMIT;" } else { "" },
                );
                self.bounded(client, &finish)
                    .await
                    .map_err(|e| StepFailure {
                        message: format!("recording and committing the step failed: {}", e.message),
                        sqlstate: e.sqlstate,
                        lost_transaction: false,
                        ..StepFailure::default()
                    })
            }
            Err(f) => Err(f),
        };
        if outcome.is_err() {
            // Undo the step and any SET it made, so the next step starts clean.
            // A non-transactional step's `begin_step` committed: close it.
            // A non-transactional step that left a transaction block open has it rolled back.
            let undo = match (transactional, lost) {
                (true, _) => format!("ROLLBACK; RESET ALL; RESET ROLE; {CLEAN_SESSION}"),
                (false, true) => {
                    format!("ROLLBACK; RESET ALL; RESET ROLE; {END_STEP}; {CLEAN_SESSION}")
                }
                (false, false) => format!("RESET ALL; RESET ROLE; {END_STEP}; {CLEAN_SESSION}"),
            };
            let _ = self.bounded(client, &undo).await;
            if lost {
                self.roll_back_prepared(client, schema).await;
            }
        }
        tracing::trace!(
            "{schema}: {}/{} took {:?}",
            pl.name,
            st.id,
            started.elapsed()
        );
        match (self.watch.finish(role), outcome) {
            // The watchdog ended the session: that, not the broken connection, is the cause.
            (Some(over), Err(_)) => Err(StepFailure {
                sqlstate: None,
                message: over.message(),
                lost_transaction: false,
                ..StepFailure::default()
            }),
            (_, outcome) => outcome,
        }
    }

    /// A plugin statement ended the step's transaction: a `PREPARE TRANSACTION` it slipped
    /// through would otherwise keep its locks and changes pending after the session ends.
    /// Any transaction the schema's role prepared is rolled back (the role may do that).
    async fn roll_back_prepared(&self, client: &Client, schema: &SchemaName) {
        let gids = client
            .query(
                "SELECT gid FROM pg_catalog.pg_prepared_xacts
                  WHERE owner = current_user AND database = pg_catalog.current_database()",
                &[],
            )
            .await;
        for row in gids.into_iter().flatten() {
            let gid: String = row.get(0);
            let Some(gid_lit) = crate::db::quote::literal(&gid) else {
                continue;
            };
            match self
                .bounded(client, &format!("ROLLBACK PREPARED {gid_lit}"))
                .await
            {
                Ok(()) => tracing::warn!(
                    "{schema}: rolled back a transaction the plugin prepared ({})",
                    crate::text::inert(&gid, 80)
                ),
                Err(e) => tracing::error!(
                    "{schema}: could not roll back a transaction the plugin prepared: {}",
                    e.message
                ),
            }
        }
    }

    /// Instantiates the plugin in a fresh store and calls `apply` or `revert`.
    async fn call_plugin(
        &self,
        client: &Arc<Client>,
        p: PendingStep,
        schema: &SchemaName,
        transactional: bool,
        call: Call,
        token: &[u8; 32],
    ) -> Result<Called, StepFailure> {
        let (pl, st) = self.step(&p);
        let limits = self.plugins.limits(p.plugin);
        let begin_step = step_sql::begin_step(token);
        if !transactional {
            // Each statement commits on its own, so the step is opened for the object guard
            // before the first one (a transactional step opens it with its `BEGIN`).
            self.bounded(client, &begin_step)
                .await
                .map_err(|e| StepFailure {
                    message: format!("opening the step failed: {}", e.message),
                    sqlstate: e.sqlstate,
                    lost_transaction: false,
                    ..StepFailure::default()
                })?;
        }
        let session = SqlSession::new(client.clone(), transactional, limits, begin_step);
        let mut store = self
            .runtime
            .store(format!("{}@{schema}", pl.name), Some(session), limits);
        let plugin = self.plugins.loaded(p.plugin);
        let called = async {
            let inst = plugin.pre.instantiate_async(&mut store).await?;
            let exports = inst.wasmig_plugin_plugin();
            match call {
                Call::Apply => exports.call_apply(&mut store, &st.id).await,
                Call::Revert => exports.call_revert(&mut store, &st.id).await,
            }
        }
        .await;
        store.data().flush_output(if called.is_err() {
            crate::plugin::Flush::StdoutOnly
        } else {
            crate::plugin::Flush::Both
        });
        let session = store.data().sql.as_ref();
        let broken = session.and_then(SqlSession::broken).map(str::to_owned);
        let lost_transaction = session.is_some_and(SqlSession::lost_transaction);
        if lost_transaction {
            // Whatever the plugin made of the refusal, the step has failed.
            return Err(StepFailure {
                sqlstate: None,
                message: broken.unwrap_or_default(),
                lost_transaction,
                ..StepFailure::default()
            });
        }
        match called {
            Ok(Ok(())) if broken.is_some() => Err(StepFailure {
                sqlstate: None,
                message: broken.unwrap_or_default(),
                lost_transaction: false,
                ..StepFailure::default()
            }),
            Ok(Ok(())) => Ok(Called {
                begin_pending: session.is_some_and(SqlSession::begin_pending),
                xid: session.and_then(SqlSession::xid).map(str::to_owned),
            }),
            Ok(Err(StepError::Irreversible)) if call == Call::Revert => Err(StepFailure {
                sqlstate: None,
                message: format!(
                    "step `{}` of plugin `{}` is irreversible (it declares no revert); it and the steps before it stay applied",
                    st.id, pl.name
                ),
                lost_transaction: false,
                ..StepFailure::default()
            }),
            Ok(Err(e)) => Err(step_error(
                e,
                session.and_then(SqlSession::failed_statement).as_ref(),
            )),
            Err(trap) => Err(StepFailure {
                sqlstate: None,
                message: store.data().describe_failure(&trap, limits),
                lost_transaction: false,
                ..StepFailure::default()
            }),
        }
    }
}

impl Fleet {
    /// Reverts `steps` (newest first) of one schema, each in its own transaction together
    /// with the removal of its ledger row; stops at the first failure or irreversible step.
    /// The caller holds the schema's lock and has inserted the revert `grants`.
    pub async fn revert_steps(
        &self,
        op: &Client,
        schema: &SchemaName,
        steps: &[(PendingStep, StepGrant)],
        run_id: i64,
    ) -> Outcome {
        let Some(role) = self.roles.get(schema) else {
            return Outcome::Error {
                message: format!("schema `{schema}` is not registered"),
            };
        };
        let client = match self.connect_schema_role(op, role, schema).await {
            Ok(c) => Arc::new(c),
            Err(message) => return Outcome::Error { message },
        };
        let mut reverted = Vec::new();
        for (p, g) in steps {
            if let Some(sig) = crate::interrupt::received() {
                return interrupted(reverted, sig);
            }
            let (pl, st) = self.step(p);
            match self.revert_one(&client, *p, schema, &g.token).await {
                Ok(()) => reverted.push(format!("{}/{}", pl.name, st.id)),
                Err(f) => {
                    let f = f.inert();
                    if let Err(e) = control::record_failure(
                        op,
                        run_id,
                        schema,
                        &pl.name,
                        &st.id,
                        f.sqlstate.as_deref(),
                        &f.message,
                    )
                    .await
                    {
                        tracing::warn!("{schema}: could not record the failure: {e}");
                    }
                    return Outcome::Failed {
                        applied: reverted,
                        plugin: pl.name.clone(),
                        step: st.id.clone(),
                        sqlstate: f.sqlstate,
                        message: f.message,
                    };
                }
            }
        }
        Outcome::Applied { steps: reverted }
    }

    async fn revert_one(
        &self,
        client: &Arc<Client>,
        p: PendingStep,
        schema: &SchemaName,
        token: &[u8; 32],
    ) -> Result<(), StepFailure> {
        let outcome = match self
            .call_plugin(client, p, schema, true, Call::Revert, token)
            .await
        {
            Ok(called) => {
                let finish = format!(
                    "{}RESET ALL; RESET ROLE; {}; COMMIT; {CLEAN_SESSION}",
                    if called.begin_pending {
                        format!("BEGIN; {}; ", step_sql::begin_step(token))
                    } else {
                        String::new()
                    },
                    step_sql::unrecord_step(token, called.xid.as_deref()),
                );
                self.bounded(client, &finish)
                    .await
                    .map_err(|e| StepFailure {
                        message: format!("removing the step from the ledger failed: {}", e.message),
                        sqlstate: e.sqlstate,
                        lost_transaction: false,
                        ..StepFailure::default()
                    })
            }
            Err(f) => Err(f),
        };
        if outcome.is_err() {
            let _ = self
                .bounded(
                    client,
                    &format!("ROLLBACK; RESET ALL; RESET ROLE; {CLEAN_SESSION}"),
                )
                .await;
        }
        outcome
    }

    /// Runs `sql` on a schema-role session within the step time limit; past it the statement
    /// is cancelled server-side (a deferred trigger must not hold the schema's lock forever).
    async fn bounded(&self, client: &Client, sql: &str) -> Result<(), PgError> {
        let limit = self.runtime.limits().step_timeout;
        match tokio::time::timeout(limit, client.batch_execute(sql)).await {
            Ok(r) => r.map_err(PgError::from),
            Err(_) => {
                let _ = client
                    .cancel_token()
                    .cancel_query(tokio_postgres::NoTls)
                    .await;
                Err(PgError {
                    sqlstate: None,
                    message: format!(
                        "PostgreSQL did not finish within {}s; the statement was cancelled",
                        limit.as_secs_f64()
                    ),
                    detail: None,
                    hint: None,
                })
            }
        }
    }

    /// A grant for `p` in `schema` (`apply` or `revert`).
    pub fn grant_for(
        &self,
        schema: &SchemaName,
        p: &PendingStep,
        action: &'static str,
    ) -> StepGrant {
        StepGrant {
            action,
            ..self.grant(schema, p)
        }
    }
}

/// Which plugin export a step calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Apply,
    Revert,
}

/// What taking a schema's lock gives: its ledger, or `None` when another runner holds it.
type LockResult = Result<Option<Vec<LedgerEntry>>, control::ControlError>;

/// Releases a schema's lock, if there is one to release; a failure is only logged (the lock
/// goes with the session at the latest).
async fn release(op: &Client, schema: Option<SchemaName>) {
    if let Some(s) = schema
        && let Err(e) = control::release_schema(op, &s).await
    {
        tracing::warn!("{e}");
    }
}

/// How many times a shared-schema step is tried when it meets a lock a tenant session holds.
const SHARED_LOCK_ATTEMPTS: u32 = 3;

/// How many schema-role logins each worker keeps under way beyond the schema it is on.
const LOGINS_AHEAD: usize = 2;

/// A schema-role login started ahead of time.
struct Prefetch(tokio::task::JoinHandle<Option<Client>>);

impl Prefetch {
    fn abort(self) {
        self.0.abort();
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

/// The failure a plugin returned. When it is the server's error the host last saw in this
/// step, the failing line with a caret comes from the host's own record (the plugin only
/// chooses whether to return it).
fn step_error(e: StepError, placed: Option<&FailedStatement>) -> StepFailure {
    match e {
        StepError::Sql(s) => {
            let context = placed
                .filter(|f| f.message == s.message)
                .and_then(|f| crate::text::caret(&f.text, f.position));
            StepFailure {
                sqlstate: s.sqlstate,
                message: s.message,
                context,
                detail: s.detail,
                hint: s.hint,
                lost_transaction: false,
            }
        }
        StepError::Failed(m) => StepFailure {
            sqlstate: None,
            message: m,
            lost_transaction: false,
            ..StepFailure::default()
        },
        StepError::UnknownStep(id) => StepFailure {
            sqlstate: None,
            message: format!(
                "the plugin does not know step `{}` although its manifest lists it",
                crate::text::inert(&id, 200)
            ),
            lost_transaction: false,
            ..StepFailure::default()
        },
        StepError::Irreversible => StepFailure {
            sqlstate: None,
            message: "the plugin answered `irreversible` to apply".into(),
            lost_transaction: false,
            ..StepFailure::default()
        },
    }
}

fn interrupted(applied: Vec<String>, sig: crate::interrupt::Signal) -> Outcome {
    Outcome::Interrupted {
        applied,
        signal: sig.name().to_owned(),
    }
}

fn pop<T>(q: &Mutex<VecDeque<T>>) -> Option<T> {
    q.lock().ok().and_then(|mut q| q.pop_front())
}

fn push<T>(v: &Mutex<Vec<T>>, x: T) {
    if let Ok(mut v) = v.lock() {
        v.push(x);
    }
}

fn report(t: Target, outcome: Outcome, started: Instant) -> SchemaReport {
    SchemaReport {
        schema: t.schema,
        scope: t.scope,
        outcome,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}
