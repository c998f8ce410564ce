//! `wasmig revert`: undo applied steps, newest first, each in its own transaction with the
//! removal of its ledger row: a plugin's steps in the schemas picked (`--plugin P [--to
//! STEP]`), or exactly the steps one run applied (`--run N`), in every schema it touched.
//! Every schema is checked before anything changes (irreversible steps, steps changed since,
//! steps a later run built on); then each is reverted under its lock and checked again there.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Result, bail};

use super::{SchemaPick, Settings, load_plugins, registry};
use crate::Exit;
use crate::control::{self, GrantAction, ManagedSchema, RunOutcome};
use crate::exec::{Fleet, Outcome};
use crate::plan::{LedgerEntry, PendingStep, RevertOf, Scope, Target};

/// What to revert.
#[derive(Debug, Clone)]
pub enum RevertWhat {
    /// A plugin's applied steps after `to` (all of them without it).
    Plugin {
        /// Plugin name.
        plugin: String,
        /// The last step to keep applied.
        to: Option<String>,
    },
    /// The steps run `N` applied.
    Run(i64),
}

/// Options of `wasmig revert`.
#[derive(Debug, Clone)]
pub struct RevertOptions {
    /// What.
    pub what: RevertWhat,
    /// Where (with `--run`, narrows the schemas the run touched; may be empty).
    pub schemas: SchemaPick,
}

/// Checks every schema, then reverts each; exit 1 when the check refuses (nothing changed)
/// or a schema's revert stopped.
pub async fn revert(s: &Settings, o: &RevertOptions) -> Result<Exit> {
    // Long: load, pick, check all, then revert each and close the run; one story.
    let plugins = load_plugins(s).await?;
    if let RevertWhat::Plugin { plugin, to } = &o.what {
        super::baseline::check_plugin_step(s, &plugins.specs, plugin, to.as_deref())?;
    }
    let op = s.connect_initialised().await?;
    let reg = registry(&op, s).await?;
    let secret = control::read_secret(&op).await?;
    let ledger = control::read_ledger(&op, None, &secret).await?;
    let schemas = match &o.what {
        RevertWhat::Plugin { plugin, .. } => {
            let scope = plugins
                .specs
                .iter()
                .find(|p| &p.name == plugin)
                .map_or(Scope::Tenant, |p| p.scope);
            plugin_schemas(&o.schemas, &reg, plugin, scope)?
        }
        RevertWhat::Run(run) => run_schemas(&op, &o.schemas, &reg, &ledger, *run).await?,
    };
    if let Some(sel) = &o.schemas.selector
        && schemas.is_empty()
    {
        return Ok(super::nothing_picked(sel));
    }
    // Only the plugins whose steps are reverted must be granted what they need.
    let involved: Vec<_> = plugins
        .specs
        .iter()
        .filter(|p| match &o.what {
            RevertWhat::Plugin { plugin, .. } => &p.name == plugin,
            RevertWhat::Run(run) => ledger
                .values()
                .flatten()
                .any(|e| e.run_id == Some(*run) && e.plugin == p.name),
        })
        .cloned()
        .collect();
    super::check_tiers_granted(s, &involved)?;
    let enforcement = super::check_tiers_enforced(&op, s, &plugins.specs).await?;
    let fleet = super::fleet(s, plugins, secret, &reg, None, enforcement);
    let empty = Vec::new();
    let mut work = Vec::new();
    let mut refused = Vec::new();
    for m in &schemas {
        let l = ledger.get(m.schema.as_str()).unwrap_or(&empty);
        match revert_of(&fleet, &o.what, l)
            .and_then(|of| fleet.plugins.revert_plan(l, of).map(|steps| (of, steps)))
        {
            Ok((_, steps)) if steps.is_empty() => {}
            Ok((of, steps)) => work.push((m, of, steps)),
            Err(problems) => refused.extend(problems.into_iter().map(|p| (m.schema.clone(), p))),
        }
    }
    if !refused.is_empty() {
        crate::report::notes::revert_refused(&refused);
        return Ok(Exit::Problems);
    }
    if work.is_empty() {
        crate::report::notes::nothing_to_revert(&schemas);
        return Ok(Exit::Ok);
    }
    let run_id = control::start_run(&op, "revert", &s.args).await?;
    // A signal stops the command between steps, not in the middle of one.
    let _clean_stop = crate::interrupt::CleanStop::begin();
    let (mut reverted, mut failed) = (0usize, 0usize);
    for (m, of, steps) in &work {
        if crate::interrupt::received().is_some() {
            break;
        }
        let outcome = revert_one(&fleet, &op, m, *of, steps, run_id).await;
        crate::report::print_revert(&m.schema, &outcome);
        reverted += crate::report::applied_steps_of(&outcome);
        failed += usize::from(outcome.is_problem());
    }
    if let Err(e) = control::clear_run_grants(&op, run_id).await {
        tracing::warn!("{e}");
    }
    let signal = crate::interrupt::received();
    let outcome = match (signal, failed) {
        (Some(_), _) => RunOutcome::Interrupted,
        (None, 0) => RunOutcome::Ok,
        (None, _) => RunOutcome::Failed,
    };
    let counts = (i32::try_from(reverted).unwrap_or(i32::MAX), failed as i32);
    if let Err(e) = control::finish_run(&op, run_id, outcome, counts.0, counts.1).await {
        tracing::warn!("could not record the end of run {run_id}: {e}");
    }
    if work.len() > 1 {
        crate::report::notes::reverted(run_id, reverted, work.len(), failed);
    }
    Ok(match (signal, failed) {
        (Some(sig), _) => Exit::from_signal(sig),
        (None, 0) => Exit::Ok,
        (None, _) => Exit::Problems,
    })
}

/// The schemas `revert --plugin` works on: those picked, each of the plugin's scope.
fn plugin_schemas(
    pick: &SchemaPick,
    reg: &[ManagedSchema],
    plugin: &str,
    scope: Scope,
) -> Result<Vec<ManagedSchema>> {
    let picked = pick.resolve(reg)?;
    if scope == Scope::Shared && pick.named.is_empty() {
        bail!(
            "plugin `{plugin}` runs in the shared schema; name it with --schema, not --all-tenants or --where"
        );
    }
    if let Some(m) = picked.iter().find(|m| m.scope != scope) {
        bail!(
            "plugin `{plugin}` runs in {} schemas, and `{}` is not one",
            scope.as_str(),
            m.schema
        );
    }
    Ok(picked)
}

/// The schemas in which run `run` applied steps still in the ledger (narrowed by `pick`),
/// in registry order; a run that does not exist is refused.
async fn run_schemas(
    op: &tokio_postgres::Client,
    pick: &SchemaPick,
    reg: &[ManagedSchema],
    ledger: &std::collections::HashMap<String, Vec<LedgerEntry>>,
    run: i64,
) -> Result<Vec<ManagedSchema>> {
    if control::run_detail(op, run).await?.is_none() {
        bail!("there is no run {run}; `wasmig history` lists the runs");
    }
    let touched: HashSet<&str> = ledger
        .iter()
        .filter(|(_, rows)| rows.iter().any(|e| e.run_id == Some(run)))
        .map(|(schema, _)| schema.as_str())
        .collect();
    let picked = if pick.is_empty() {
        reg.to_vec()
    } else {
        pick.resolve(reg)?
    };
    Ok(picked
        .into_iter()
        .filter(|m| touched.contains(m.schema.as_str()))
        .collect())
}

/// What to revert in a schema with `ledger`; `--to STEP` must be applied there.
fn revert_of(
    fleet: &Fleet,
    what: &RevertWhat,
    ledger: &[LedgerEntry],
) -> Result<RevertOf, Vec<String>> {
    match what {
        RevertWhat::Run(run) => Ok(RevertOf::Run(*run)),
        RevertWhat::Plugin { plugin, to } => {
            let specs = fleet.plugins.specs();
            let pi = specs.iter().position(|p| &p.name == plugin).unwrap_or(0);
            let from = match to {
                None => 0,
                Some(step) => {
                    if !ledger
                        .iter()
                        .any(|e| &e.plugin == plugin && &e.step_id == step)
                    {
                        return Err(vec![format!(
                            "step `{step}` of `{plugin}` is not applied here, so there is nothing to revert to"
                        )]);
                    }
                    specs[pi]
                        .steps
                        .iter()
                        .position(|st| &st.id == step)
                        .map_or(0, |i| i + 1)
                }
            };
            Ok(RevertOf::Plugin { plugin: pi, from })
        }
    }
}

/// One schema under its lock: checked again against the ledger read with the lock (another
/// command may have changed it since the check), then reverted.
async fn revert_one(
    fleet: &Arc<Fleet>,
    op: &tokio_postgres::Client,
    m: &ManagedSchema,
    of: RevertOf,
    checked: &[PendingStep],
    run_id: i64,
) -> Outcome {
    let error = |message: String| Outcome::Error { message };
    let ledger = match control::try_lock_and_read(op, &m.schema, &fleet.secret).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            return error(
                "it is being migrated by another wasmig run; revert it again when that run is done"
                    .into(),
            );
        }
        Err(e) => return error(e.to_string()),
    };
    let outcome = match fleet.plugins.revert_plan(&ledger, of) {
        Ok(now) if now == checked => {
            let todo: Vec<_> = now
                .iter()
                .map(|p| (*p, fleet.grant(&m.schema, p, GrantAction::Revert)))
                .collect();
            let rows: Vec<_> = todo
                .iter()
                .map(|(_, g)| (m.role.as_str(), &m.schema, g))
                .collect();
            match control::insert_grants(op, run_id, &rows).await {
                Ok(()) => {
                    let target = Target {
                        schema: m.schema.clone(),
                        scope: m.scope,
                    };
                    fleet.revert_steps(op, &target, &todo, run_id).await
                }
                Err(e) => error(e.to_string()),
            }
        }
        _ => error(
            "its ledger changed between the check and the revert; nothing was reverted in it: run the revert again to check it anew".into(),
        ),
    };
    if let Err(e) = control::release_schema(op, &m.schema).await {
        tracing::warn!("{e}");
    }
    outcome
}
