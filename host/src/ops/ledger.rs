//! Ledger operations for people: `revert` (run a plugin's revert steps, newest first),
//! `repair` (accept a reviewed drift by recording the current checksum) and `restore`.

use std::sync::Arc;

use anyhow::{Result, bail};

use super::{Settings, load_plugins, registry};
use crate::Exit;
use crate::control::{self, GrantAction, RunOutcome, StepGrant};
use crate::exec::{Fleet, Outcome};
use crate::names::SchemaName;
use crate::plan::{LedgerEntry, PendingStep, Scope};

/// Which steps of which plugin in which schema.
#[derive(Debug, Clone)]
pub struct StepSelection {
    /// Schema (tenant or shared).
    pub schema: SchemaName,
    /// Plugin name.
    pub plugin: String,
}

struct Ctx {
    /// A signal stops the command between steps, not in the middle of one.
    _clean_stop: crate::interrupt::CleanStop,
    fleet: Arc<Fleet>,
    op: tokio_postgres::Client,
    plugin: usize,
    ledger: Vec<LedgerEntry>,
    run_id: i64,
}

/// Loads the plugins, checks that `sel` (and `step`, when the command names one) exists,
/// locks the schema and opens the run.
async fn prepare(
    s: &Settings,
    sel: &StepSelection,
    step: Option<&str>,
    command: &str,
) -> Result<Ctx> {
    let plugins = load_plugins(s).await?;
    let Some(plugin) = plugins.specs.iter().position(|p| p.name == sel.plugin) else {
        let loaded: Vec<&str> = plugins.specs.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "{}",
            crate::names::unknown_plugin(
                &format!("`--plugin {}`", sel.plugin),
                &sel.plugin,
                &s.plugins_dir,
                &loaded
            )
        );
    };
    let op = s.connect_initialised().await?;
    let reg = registry(&op, s).await?;
    let Some(managed) = reg.iter().find(|m| m.schema == sel.schema) else {
        bail!(
            "schema `{}` is not managed by wasmig (see `wasmig tenant list`)",
            sel.schema
        );
    };
    if managed.scope != plugins.specs[plugin].scope {
        bail!(
            "plugin `{}` runs in {} schemas, and `{}` is not one",
            sel.plugin,
            if plugins.specs[plugin].scope == Scope::Shared {
                "the shared"
            } else {
                "tenant"
            },
            sel.schema
        );
    }
    if let Some(step) = step
        && !plugins.specs[plugin].steps.iter().any(|st| st.id == step)
    {
        bail!("plugin `{}` has no step `{step}`", sel.plugin);
    }
    let secret = control::read_secret(&op).await?;
    let Some(ledger) = control::try_lock_and_read(&op, &sel.schema, &secret).await? else {
        bail!(
            "schema `{}` is being migrated by another wasmig run; try again when it is done",
            sel.schema
        );
    };
    // Only the plugin whose steps are reverted runs.
    super::check_tiers_granted(s, std::slice::from_ref(&plugins.specs[plugin]))?;
    let enforcement = super::check_tiers_enforced(&op, s, &plugins.specs).await?;
    let run_id = control::start_run(&op, command, &s.args).await?;
    let fleet = super::fleet(s, plugins, secret, &reg, None, enforcement);
    Ok(Ctx {
        _clean_stop: crate::interrupt::CleanStop::begin(),
        fleet,
        op,
        plugin,
        ledger,
        run_id,
    })
}

impl Ctx {
    fn recorded(&self, step: &str) -> Option<&LedgerEntry> {
        let name = &self.fleet.plugins.spec(self.plugin).name;
        self.ledger
            .iter()
            .find(|e| &e.plugin == name && e.step_id == step)
    }

    /// Clears the run's grants, releases the schema and closes the run record; what cannot
    /// be done is said, not swallowed (the command's own result stands either way).
    async fn finish(
        &self,
        schema: &SchemaName,
        outcome: RunOutcome,
        applied: usize,
        failed: usize,
    ) {
        if let Err(e) = control::clear_run_grants(&self.op, self.run_id).await {
            tracing::warn!("{e}");
        }
        if let Err(e) = control::release_schema(&self.op, schema).await {
            tracing::warn!("{e}");
        }
        if let Err(e) = control::finish_run(
            &self.op,
            self.run_id,
            outcome,
            applied as i32,
            failed as i32,
        )
        .await
        {
            tracing::warn!("could not record the end of run {}: {e}", self.run_id);
        }
    }
}

/// The applied steps of the selected plugin after `to`, newest first, each with its revert
/// grant; or why the revert is refused (nothing has been changed then).
fn revert_plan(
    ctx: &Ctx,
    sel: &StepSelection,
    to: Option<&str>,
) -> Result<Vec<(PendingStep, StepGrant)>, String> {
    let spec = &ctx.fleet.plugins.spec(ctx.plugin);
    let keep_through = match to {
        Some(step) => {
            if ctx.recorded(step).is_none() {
                return Err(format!(
                    "step `{step}` of `{}` is not applied in `{}`, so there is nothing to revert to",
                    spec.name, sel.schema
                ));
            }
            spec.steps
                .iter()
                .position(|st| st.id == step)
                .map_or(0, |i| i + 1)
        }
        None => 0,
    };
    // Plugins that build on this one must not lose what they rely on.
    let dependants: Vec<&str> = ctx
        .fleet
        .plugins
        .specs()
        .iter()
        .filter(|p| p.requires.contains(&spec.name))
        .filter(|p| ctx.ledger.iter().any(|e| e.plugin == p.name))
        .map(|p| p.name.as_str())
        .collect();
    if !dependants.is_empty() {
        return Err(format!(
            "plugin `{}` is required by {} applied in `{}`; revert those first",
            spec.name,
            dependants
                .iter()
                .map(|d| format!("`{d}`"))
                .collect::<Vec<_>>()
                .join(", "),
            sel.schema
        ));
    }
    let mut todo = Vec::new();
    for (i, st) in spec.steps.iter().enumerate().skip(keep_through).rev() {
        if let Some(e) = ctx.recorded(&st.id) {
            if !e.authentic || e.checksum != st.checksum {
                return Err(format!(
                    "step `{}` of `{}` in `{}` was applied with other content (drift or a forged row); repair or review it before reverting",
                    st.id, spec.name, sel.schema
                ));
            }
            let p = PendingStep {
                plugin: ctx.plugin,
                step: i,
            };
            todo.push((p, ctx.fleet.grant(&sel.schema, &p, GrantAction::Revert)));
        }
    }
    Ok(todo)
}

/// `wasmig revert --schema S --plugin P [--to STEP]`: reverts P's applied steps after STEP
/// (all of them without `--to`), newest first.
pub async fn revert(s: &Settings, sel: &StepSelection, to: Option<&str>) -> Result<Exit> {
    let ctx = prepare(s, sel, to, "revert").await?;
    let todo = match revert_plan(&ctx, sel, to) {
        Ok(todo) => todo,
        Err(refused) => {
            ctx.finish(&sel.schema, RunOutcome::Failed, 0, 1).await;
            bail!("{refused}");
        }
    };
    if todo.is_empty() {
        ctx.finish(&sel.schema, RunOutcome::Ok, 0, 0).await;
        crate::report::notes::nothing_to_revert(&sel.schema);
        return Ok(Exit::Ok);
    }
    let role = ctx
        .fleet
        .roles
        .get(&sel.schema)
        .cloned()
        .unwrap_or_default();
    let rows: Vec<_> = todo
        .iter()
        .map(|(_, g)| (role.as_str(), &sel.schema, g))
        .collect();
    control::insert_grants(&ctx.op, ctx.run_id, &rows).await?;
    let target = crate::plan::Target {
        schema: sel.schema.clone(),
        scope: if sel.schema == s.shared_schema {
            Scope::Shared
        } else {
            Scope::Tenant
        },
    };
    let outcome = ctx
        .fleet
        .revert_steps(&ctx.op, &target, &todo, ctx.run_id)
        .await;
    let (recorded, applied, failed, exit) = match &outcome {
        Outcome::Applied { steps } => (RunOutcome::Ok, steps.len(), 0, Exit::Ok),
        Outcome::Failed { applied, .. } => (RunOutcome::Failed, applied.len(), 1, Exit::Problems),
        Outcome::Interrupted { applied, .. } => (
            RunOutcome::Interrupted,
            applied.len(),
            0,
            crate::interrupt::received().map_or(Exit::Problems, Exit::from_signal),
        ),
        other => {
            ctx.finish(&sel.schema, RunOutcome::Failed, 0, 1).await;
            match other {
                Outcome::Error { message } => bail!("schema `{}`: {message}", sel.schema),
                other => bail!("schema `{}`: {other:?}", sel.schema),
            }
        }
    };
    ctx.finish(&sel.schema, recorded, applied, failed).await;
    crate::report::print_revert(&sel.schema, &outcome);
    Ok(exit)
}

/// `wasmig repair --schema S --plugin P --step ID`: records the current checksum of a step
/// whose drift a person reviewed.
pub async fn repair(s: &Settings, sel: &StepSelection, step: &str) -> Result<Exit> {
    let ctx = prepare(s, sel, Some(step), "repair").await?;
    let spec = &ctx.fleet.plugins.spec(ctx.plugin);
    let i = spec.steps.iter().position(|st| st.id == step).unwrap_or(0);
    if ctx.recorded(step).is_some_and(|e| !e.authentic) {
        ctx.finish(&sel.schema, RunOutcome::Failed, 0, 1).await;
        bail!(
            "the ledger row of `{}/{step}` in `{}` was not written by wasmig (forged); repair only accepts reviewed drift: delete that row instead",
            spec.name,
            sel.schema
        );
    }
    let g = ctx.fleet.grant(
        &sel.schema,
        &PendingStep {
            plugin: ctx.plugin,
            step: i,
        },
        GrantAction::Apply,
    );
    let old = control::repair_row(&ctx.op, &sel.schema, &g).await;
    match old {
        Ok(Some(old)) => {
            ctx.finish(&sel.schema, RunOutcome::Ok, 1, 0).await;
            crate::report::notes::repaired(&sel.schema, &spec.name, step, &old, &g.checksum);
            Ok(Exit::Ok)
        }
        Ok(None) => {
            ctx.finish(&sel.schema, RunOutcome::Failed, 0, 1).await;
            bail!(
                "step `{step}` of `{}` is not recorded in `{}`; nothing to repair (use baseline to record it)",
                spec.name,
                sel.schema
            )
        }
        Err(e) => {
            ctx.finish(&sel.schema, RunOutcome::Failed, 0, 1).await;
            Err(e.into())
        }
    }
}

/// `wasmig restore FILE --schema S`: puts back a tenant schema and its ledger rows from a dump
/// made by `migrate --backup-dir`.
pub async fn restore(s: &Settings, file: &std::path::Path, schema: &SchemaName) -> Result<Exit> {
    if !file.is_file() {
        bail!("backup file `{}` does not exist", file.display());
    }
    let mut op = s.connect_initialised().await?;
    let reg = registry(&op, s).await?;
    let Some(managed) = reg.iter().find(|m| &m.schema == schema) else {
        bail!("schema `{schema}` is not managed by wasmig (see `wasmig tenant list`)");
    };
    if managed.scope != Scope::Tenant {
        bail!(
            "restoring the shared schema is not supported: tenants' objects may depend on it; restore it with pg_restore by hand"
        );
    }
    let secret = control::read_secret(&op).await?;
    if control::try_lock_and_read(&op, schema, &secret)
        .await?
        .is_none()
    {
        bail!(
            "schema `{schema}` is being migrated by another wasmig run; try again when it is done"
        );
    }
    let run_id = control::start_run(&op, "restore", &s.args).await?;
    // One unit: a signal while pg_restore runs is answered once the restore is complete.
    let _clean_stop = crate::interrupt::CleanStop::begin();
    let password = crate::secret::role_password(&secret, &managed.role);
    let who = crate::backup::RestoreAs {
        schema,
        role: &managed.role,
        password: &password,
    };
    let result = crate::backup::restore(&s.target, &mut op, &who, file).await;
    if result.is_ok() && s.app_role.is_some() {
        // The dump was restored without privileges: give the application role its grants again.
        control::ensure_schema(
            &mut op,
            &control::EnsureSchema {
                schema,
                scope: Scope::Tenant,
                name: None,
                domain: None,
                dbname: s.target.dbname(),
                connection_limit: 4,
                session: &s.limits.session,
                app_role: s.app_role.as_deref(),
                labels: &crate::labels::Labels::new(),
            },
        )
        .await?;
    }
    if let Err(e) = control::release_schema(&op, schema).await {
        tracing::warn!("{e}");
    }
    let outcome = if result.is_ok() {
        RunOutcome::Ok
    } else {
        RunOutcome::Failed
    };
    if let Err(e) = control::finish_run(&op, run_id, outcome, 0, i32::from(result.is_err())).await {
        tracing::warn!("could not record the end of run {run_id}: {e}");
    }
    result?;
    crate::report::notes::restored(schema, file);
    Ok(crate::interrupt::received().map_or(Exit::Ok, Exit::from_signal))
}
