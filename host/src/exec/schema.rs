//! One schema under its lock: log in as its role, grant what its pending steps need, and run
//! them in order, stopping at the first failure. Apply and revert share the loop and the way
//! a failure is recorded.

use std::sync::Arc;

use tokio_postgres::Client;

use super::step::{StepCall, StepFailure};
use super::{Fleet, Outcome, RunOptions, interrupted, refusal};
use crate::control::{self, GrantAction, StepGrant};
use crate::names::SchemaName;
use crate::plan::{LedgerEntry, PendingStep, PluginSpec, Scope, StepRef, StepSpec, Target};
use crate::secret;

/// The first pause before a step is tried again; it doubles with every attempt, up to
/// [`MAX_RETRY_PAUSE`], and is jittered (half to all of it) so that schemas that met the
/// same lock do not all come back at once.
const FIRST_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);
/// The longest pause between two attempts of a step.
const MAX_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// The pause before attempt `attempt + 1` (`attempt` >= 1), jittered.
fn retry_pause(attempt: u32) -> std::time::Duration {
    let full = FIRST_RETRY_PAUSE
        .saturating_mul(1 << (attempt - 1).min(16))
        .min(MAX_RETRY_PAUSE);
    let jitter = getrandom::u32().unwrap_or(u32::MAX / 2);
    full / 2 + full.mul_f64(f64::from(jitter) / f64::from(u32::MAX) / 2.0)
}

/// A schema-role login started ahead of time.
pub(crate) struct Prefetch(tokio::task::JoinHandle<Option<Client>>);

impl Prefetch {
    pub(crate) fn abort(&self) {
        self.0.abort();
    }
}

/// The steps one schema runs, in order, with their grants.
pub(crate) struct SchemaSteps<'a> {
    pub(crate) target: &'a Target,
    pub(crate) steps: &'a [(PendingStep, StepGrant)],
    pub(crate) action: GrantAction,
    pub(crate) run_id: i64,
}

impl Fleet {
    /// Migrates one schema whose lock is held and whose `ledger` was read under it:
    /// re-plans, backs it up if asked, grants what the up-front grants (`issued`) missed,
    /// takes the role login started ahead (`login`) and runs the pending steps.
    pub(crate) async fn migrate_locked(
        &self,
        op: &Client,
        t: &Target,
        ledger: Vec<LedgerEntry>,
        issued: &[(PendingStep, StepGrant)],
        login: Prefetch,
        opts: &RunOptions,
    ) -> Outcome {
        let plan = self
            .plugins
            .plan((t.schema.as_str(), t.scope), &opts.selection, &ledger);
        if plan.refused() || plan.pending.is_empty() {
            login.abort();
            return if plan.refused() {
                refusal(plan)
            } else {
                Outcome::UpToDate
            };
        }
        let Some(role) = self.roles.get(&t.schema) else {
            login.abort();
            return Outcome::Error {
                message: format!(
                    "schema `{}` is not registered; create it with `wasmig tenant create`",
                    t.schema
                ),
            };
        };
        if let Err(refused) = self.back_up(op, &t.schema).await {
            login.abort();
            return refused;
        }
        // Normally every pending step was granted up front. A step that was not (the ledger
        // changed since the snapshot) is granted now, while the role login is under way.
        let mut steps = Vec::with_capacity(plan.pending.len());
        let mut missing = Vec::new();
        for p in &plan.pending {
            // A grant issued from the snapshot is used only for the same action: the ledger
            // may have changed since (a row written or removed by another command).
            let action = super::apply_action(&plan, p);
            let g = match issued.iter().find(|(q, g)| q == p && g.action == action) {
                Some((_, g)) => g.clone(),
                None => {
                    let g = self.grant(&t.schema, p, action);
                    missing.push(g.clone());
                    g
                }
            };
            steps.push((*p, g));
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
        let run = SchemaSteps {
            target: t,
            steps: &steps,
            action: GrantAction::Apply,
            run_id: opts.run_id,
        };
        self.run_steps(op, &client, &run).await
    }

    /// Dumps the schema if the run keeps backups: under the lock and before any change, so a
    /// schema whose dump fails is not touched.
    async fn back_up(&self, op: &Client, schema: &SchemaName) -> Result<(), Outcome> {
        let Some(b) = &self.backups else {
            return Ok(());
        };
        match b.dump(&self.target, op, schema).await {
            Ok(file) => {
                tracing::info!("{schema}: backed up to {}", file.display());
                Ok(())
            }
            Err(e) => Err(Outcome::Error {
                message: format!("{e}; the schema was not migrated"),
            }),
        }
    }

    /// Reverts `steps` (newest first) of one schema, each in its own transaction together
    /// with the removal of its ledger row; stops at the first failure or irreversible step.
    /// The caller holds the schema's lock and has inserted the revert grants.
    pub async fn revert_steps(
        &self,
        op: &Client,
        target: &Target,
        steps: &[(PendingStep, StepGrant)],
        run_id: i64,
    ) -> Outcome {
        let schema = &target.schema;
        let Some(role) = self.roles.get(schema) else {
            return Outcome::Error {
                message: format!("schema `{schema}` is not registered"),
            };
        };
        let client = match self.connect_schema_role(op, role, schema).await {
            Ok(c) => Arc::new(c),
            Err(message) => return Outcome::Error { message },
        };
        let run = SchemaSteps {
            target,
            steps,
            action: GrantAction::Revert,
            run_id,
        };
        self.run_steps(op, &client, &run).await
    }

    /// Runs the steps of one schema in order on its role's session; the first failure is
    /// recorded in `wasmig.failure` and ends the schema (the steps before it stay done).
    async fn run_steps(&self, op: &Client, client: &Arc<Client>, run: &SchemaSteps<'_>) -> Outcome {
        let schema = &run.target.schema;
        let mut done = Vec::new();
        for (p, g) in run.steps {
            if let Some(sig) = crate::interrupt::received() {
                return interrupted(done, sig);
            }
            let (pl, st) = self.step(p);
            let call = StepCall {
                step: *p,
                schema,
                token: &g.token,
                action: run.action,
            };
            let Err(f) = self.run_retrying(op, client, &call, run.target.scope).await else {
                tracing::debug!("{schema}: {} {}/{}", run.action.as_sql(), pl.name, st.id);
                done.push(StepRef::new(&pl.name, &st.id));
                continue;
            };
            let f = f.inert();
            // What the refused step left outside its schema is removed now, by the operator,
            // so that it is never blamed on a later step; a non-transactional step's changes
            // to its own role (committed before its check) are undone.
            if let Some(role) = self.roles.get(schema) {
                if !st.transactional
                    && let Err(e) = control::restore_role(
                        op,
                        role,
                        schema,
                        &self.runtime.limits().session,
                        &self.secret,
                    )
                    .await
                {
                    tracing::warn!("{schema}: {e}");
                }
                match control::remove_leftovers(op, role).await {
                    Ok(said) => {
                        for s in said {
                            tracing::warn!("{schema}: {}", crate::text::inert(&s, 300));
                        }
                    }
                    Err(e) => tracing::warn!("{schema}: {e}"),
                }
            }
            if let Err(e) = control::record_failure(
                op,
                run.run_id,
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
                applied: done,
                plugin: pl.name.clone(),
                step: st.id.clone(),
                sqlstate: f.sqlstate,
                message: f.message,
            };
        }
        Outcome::Applied { steps: done }
    }

    /// [`Fleet::run_step`], tried again up to `retries` times (each attempt its own
    /// transaction, after [`retry_pause`]) when the server rolled it back for a lock it could
    /// not get, a deadlock or a serialization failure. A step that is not transactional is
    /// not tried again (what it did before the failure stays done). Before a shared-schema
    /// step is tried again, the tenant sessions holding locks in the shared schema are ended:
    /// a tenant step must not keep the shared schema from migrating, which would skip every
    /// tenant of the run.
    async fn run_retrying(
        &self,
        op: &Client,
        client: &Arc<Client>,
        call: &StepCall<'_>,
        scope: Scope,
    ) -> Result<(), StepFailure> {
        let (pl, st) = self.step(&call.step);
        let transactional = st.transactional || call.action == GrantAction::Revert;
        let mut attempt = 1;
        loop {
            let ran = self.run_step(client, call).await;
            let retryable = matches!(&ran, Err(f) if f.is_retryable());
            if !retryable || !transactional || attempt > self.retries {
                return ran;
            }
            if crate::interrupt::received().is_some() {
                return ran;
            }
            let code = ran
                .as_ref()
                .err()
                .and_then(|f| f.sqlstate.clone())
                .unwrap_or_default();
            if scope == Scope::Shared {
                match control::end_tenant_sessions_locking(op, call.schema).await {
                    Ok(n) => tracing::warn!(
                        "{}: ended {n} tenant session(s) holding locks in the shared schema",
                        call.schema
                    ),
                    Err(e) => tracing::warn!("{}: {e}", call.schema),
                }
            }
            let pause = retry_pause(attempt);
            tracing::warn!(
                "{}: {}/{} was rolled back (SQLSTATE {code}); trying again in {} ms ({}/{})",
                call.schema,
                pl.name,
                st.id,
                pause.as_millis(),
                attempt,
                self.retries
            );
            self.count_retry(call.schema);
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// A one-time grant for `p` in `schema`: its token, and the MAC of the ledger row it
    /// will produce.
    pub fn grant(&self, schema: &SchemaName, p: &PendingStep, action: GrantAction) -> StepGrant {
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
            action,
            tier: self.plugins.tier(p.plugin),
            temp_limit_kb: Some({
                let limits = self.plugins.limits(p.plugin);
                limits.max_temp_mb.map_or(
                    i64::try_from(limits.session.temp_file_limit_kb).unwrap_or(i64::MAX),
                    |mb| i64::try_from(mb.saturating_mul(1024)).unwrap_or(i64::MAX),
                )
            }),
            write_limit: i64::try_from(
                self.plugins
                    .limits(p.plugin)
                    .max_write_mb
                    .saturating_mul(1 << 20),
            )
            .unwrap_or(i64::MAX),
        }
    }

    /// The password and startup options a schema role logs in with (its session limits and
    /// its schema as the search path).
    fn login_for(&self, role: &str, schema: &SchemaName) -> (String, String) {
        let password = secret::role_password(&self.secret, role);
        let group = control::tenant_group_for(self.target.dbname());
        let options = self
            .runtime
            .limits()
            .session
            .startup_options(schema, &group);
        (password, options)
    }

    /// Starts logging in as the schema's role in the background.
    pub(crate) fn prefetch_login(self: &Arc<Self>, t: &Target) -> Prefetch {
        let fleet = self.clone();
        let schema = t.schema.clone();
        Prefetch(tokio::spawn(async move {
            let role = fleet.roles.get(&schema)?;
            let (password, options) = fleet.login_for(role, &schema);
            let client = fleet
                .target
                .connect_session(role, &password, &options, fleet.plugins.row_cap())
                .await
                .ok()?;
            if let Err(e) = client.batch_execute(control::WARM_UP_SQL).await {
                // Only a lost optimisation: the first step pays for the lookups instead.
                tracing::debug!("{schema}: warming up the session failed: {e}");
            }
            Some(client)
        }))
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
        let (password, options) = self.login_for(role, schema);
        let row_cap = self.plugins.row_cap();
        match self
            .target
            .connect_session(role, &password, &options, row_cap)
            .await
        {
            Ok(c) => Ok(c),
            Err(crate::db::connect::ConnectError::Connect { error, .. })
                if error.sqlstate.as_deref() == Some("28P01") =>
            {
                tracing::warn!("{schema}: role `{role}` refused its password; restoring it");
                control::reset_role_password(op, role, &self.secret)
                    .await
                    .map_err(|e| e.to_string())?;
                self.target
                    .connect_session(role, &password, &options, row_cap)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// The manifest of a step's plugin, and the step's.
    pub(crate) fn step(&self, p: &PendingStep) -> (&PluginSpec, &StepSpec) {
        let pl = self.plugins.spec(p.plugin);
        (pl, &pl.steps[p.step])
    }
}
