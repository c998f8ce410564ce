//! `wasmig revert`: undo applied steps, newest first, each in its own transaction with the
//! removal of its ledger row: a plugin's steps in the schemas picked (`--plugin P [--to
//! STEP]`), or exactly the steps one run applied (`--run N`), in every schema it touched.
//! Every schema is checked before anything changes (irreversible steps, steps changed since,
//! steps a later run built on); then each is reverted under its lock and checked again there.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{Result, bail};

use super::{SchemaPick, Settings, load_plugins, registry};
use crate::Exit;
use crate::control::{self, GrantAction, ManagedSchema, RunOutcome};
use crate::exec::{Fleet, Outcome};
use crate::names::SchemaName;
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
    /// Hold what was reverted, with this reason (see `wasmig hold`).
    pub hold: Option<String>,
}

/// Checks every schema, locks them all and checks again, then reverts each (tenants before
/// the shared schema), stopping at the first that fails; exit 1 when the check refuses
/// (nothing changed) or a schema's revert stopped.
pub async fn revert(s: &Settings, o: &RevertOptions) -> Result<Exit> {
    // Long: load, pick, check, lock, check again, revert each, close the run; one story.
    let plugins = load_plugins(s).await?;
    if let RevertWhat::Plugin { plugin, to } = &o.what {
        super::baseline::check_plugin_step(s, &plugins.specs, plugin, to.as_deref())?;
    }
    let op = s.connect_initialised().await?;
    let reg = registry(&op, s).await?;
    let secret = control::read_secret(&op).await?;
    let ledger = control::read_ledger(&op, None, &secret).await?;
    let mut schemas = match &o.what {
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
        && o.schemas.resolve(&reg)?.is_empty()
    {
        return Ok(super::nothing_picked(sel));
    }
    // Tenant steps may build on shared ones: the shared schema is reverted last.
    schemas.sort_by_key(|m| m.scope == Scope::Shared);
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
    let work = match check(&fleet, &o.what, &schemas, &ledger) {
        Ok(work) => work,
        Err(refused) => {
            crate::report::notes::revert_refused(&refused);
            return Ok(Exit::Problems);
        }
    };
    if work.is_empty() {
        crate::report::notes::nothing_to_revert(&schemas);
        return Ok(Exit::Ok);
    }
    // Every schema to revert is locked, and checked again under the locks, before the first
    // step is undone: a run that changed one since the check refuses the whole revert.
    let locked: Vec<SchemaName> = work.iter().map(|w| w.schema.schema.clone()).collect();
    let busy = control::try_lock_schemas(&op, &locked).await?;
    if !busy.is_empty() {
        let named: Vec<String> = busy.iter().take(5).map(|b| format!("`{b}`")).collect();
        bail!(
            "{}{} being migrated by another wasmig run; nothing was reverted: try again when it is done",
            named.join(", "),
            match busy.len() {
                1 => " is".to_owned(),
                n if n > 5 => format!(" and {} more are", n - 5),
                _ => " are".to_owned(),
            }
        );
    }
    let result = revert_locked(s, &fleet, &op, o, &schemas, &work).await;
    if let Err(e) = control::release_schemas(&op, &locked).await {
        tracing::warn!("{e}");
    }
    result
}

/// One schema's share of a revert: what to undo there.
struct SchemaRevert<'a> {
    schema: &'a ManagedSchema,
    steps: Vec<PendingStep>,
}

/// What to revert in each of `schemas` (those with nothing to revert left out), or every
/// problem in every schema.
fn check<'a>(
    fleet: &Fleet,
    what: &RevertWhat,
    schemas: &'a [ManagedSchema],
    ledger: &HashMap<String, Vec<LedgerEntry>>,
) -> Result<Vec<SchemaRevert<'a>>, Vec<(SchemaName, String)>> {
    let empty = Vec::new();
    let mut work = Vec::new();
    let mut refused = Vec::new();
    for m in schemas {
        let mut l = ledger.get(m.schema.as_str()).unwrap_or(&empty).clone();
        if m.scope == Scope::Shared {
            l.extend(tenant_rows_built_on_shared(fleet, what, ledger, &m.schema));
        }
        let planned = revert_of(fleet, what, &l).and_then(|of| fleet.plugins.revert_plan(&l, of));
        match planned {
            Ok(steps) if steps.is_empty() => {}
            Ok(steps) => work.push(SchemaRevert { schema: m, steps }),
            Err(problems) => refused.extend(problems.into_iter().map(|p| (m.schema.clone(), p))),
        }
    }
    if refused.is_empty() {
        Ok(work)
    } else {
        Err(refused)
    }
}

/// Rows of tenant plugins in the tenants' ledgers, for the check of the shared schema: a
/// tenant step may build on a shared step (a tenant plugin requiring a shared one). With
/// `--run N`, the run's own tenant rows are left out (they are reverted first). One row per
/// plugin, step and run is enough to find them.
fn tenant_rows_built_on_shared(
    fleet: &Fleet,
    what: &RevertWhat,
    ledger: &HashMap<String, Vec<LedgerEntry>>,
    shared: &SchemaName,
) -> Vec<LedgerEntry> {
    let tenant_plugins: HashSet<&str> = fleet
        .plugins
        .specs()
        .iter()
        .filter(|p| p.scope == Scope::Tenant)
        .map(|p| p.name.as_str())
        .collect();
    let mut seen = HashSet::new();
    ledger
        .iter()
        .filter(|(schema, _)| schema.as_str() != shared.as_str())
        .flat_map(|(_, rows)| rows)
        .filter(|e| tenant_plugins.contains(e.plugin.as_str()))
        .filter(|e| !matches!(what, RevertWhat::Run(run) if e.run_id == Some(*run)))
        .filter(|e| seen.insert((e.plugin.clone(), e.step_id.clone(), e.run_id)))
        .cloned()
        .collect()
}

/// With every schema of `work` locked: checks again, then reverts each, tenants first,
/// stopping at the first schema that fails.
async fn revert_locked(
    s: &Settings,
    fleet: &Arc<Fleet>,
    op: &tokio_postgres::Client,
    o: &RevertOptions,
    schemas: &[ManagedSchema],
    work: &[SchemaRevert<'_>],
) -> Result<Exit> {
    let fresh = control::read_ledger(op, None, &fleet.secret).await?;
    let again = match check(fleet, &o.what, schemas, &fresh) {
        Ok(again) => again,
        Err(refused) => {
            crate::report::notes::revert_refused(&refused);
            return Ok(Exit::Problems);
        }
    };
    let same = again.len() == work.len()
        && again
            .iter()
            .zip(work)
            .all(|(a, b)| a.schema.schema == b.schema.schema && a.steps == b.steps);
    if !same {
        bail!(
            "the ledger changed between the check and the locks (another command ran); nothing was reverted: run the revert again to check it anew"
        );
    }
    let run_id = control::start_run(op, "revert", &s.args).await?;
    // A signal stops the command between steps, not in the middle of one.
    let _clean_stop = crate::interrupt::CleanStop::begin();
    let (mut reverted, mut done, mut failed) = (0usize, 0usize, 0usize);
    for w in work {
        if crate::interrupt::received().is_some() || failed > 0 {
            break;
        }
        let outcome = revert_one(fleet, op, w, run_id).await;
        crate::report::print_revert(&w.schema.schema, &outcome);
        reverted += crate::report::applied_steps_of(&outcome);
        done += 1;
        failed += usize::from(outcome.is_problem());
    }
    if let Err(e) = control::clear_run_grants(op, run_id).await {
        tracing::warn!("{e}");
    }
    let touched: Vec<SchemaName> = work[..done]
        .iter()
        .map(|w| w.schema.schema.clone())
        .collect();
    // Said (or failed) before the run is closed; an error here is raised once it is.
    let held = match &o.hold {
        Some(reason) => {
            let plugin = match &o.what {
                RevertWhat::Plugin { plugin, .. } => Some(plugin.as_str()),
                RevertWhat::Run(_) => None,
            };
            super::hold::hold_in_run(op, &touched, plugin, reason, run_id).await
        }
        None => {
            if !touched.is_empty() {
                let names: Vec<&str> = touched.iter().map(SchemaName::as_str).collect();
                crate::report::notes::rolled_back_not_held(&names);
            }
            Ok(())
        }
    };
    let signal = crate::interrupt::received();
    let outcome = match (signal, failed) {
        (Some(_), _) => RunOutcome::Interrupted,
        (None, 0) => RunOutcome::Ok,
        (None, _) => RunOutcome::Failed,
    };
    let counts = (i32::try_from(reverted).unwrap_or(i32::MAX), failed as i32);
    if let Err(e) = control::finish_run(op, run_id, outcome, counts.0, counts.1).await {
        tracing::warn!("could not record the end of run {run_id}: {e}");
    }
    if work.len() > 1 || done < work.len() {
        crate::report::notes::reverted(run_id, reverted, done - failed, work.len() - done);
    }
    held?;
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
    ledger: &HashMap<String, Vec<LedgerEntry>>,
    run: i64,
) -> Result<Vec<ManagedSchema>> {
    let Some(record) = control::run_record(op, run).await? else {
        bail!("there is no run {run}; `wasmig history` lists the runs");
    };
    if record.outcome.is_none() {
        bail!(
            "run {run} is still running; revert it once it has ended (`wasmig history` shows it)"
        );
    }
    if record.command == "baseline" {
        bail!(
            "run {run} was a `baseline`: it recorded steps as applied without running them, so there is nothing it did to undo (`wasmig revert --plugin` runs a plugin's revert steps)"
        );
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

/// One schema, its lock held: the checked steps, with their revert grants.
async fn revert_one(
    fleet: &Arc<Fleet>,
    op: &tokio_postgres::Client,
    w: &SchemaRevert<'_>,
    run_id: i64,
) -> Outcome {
    let m = w.schema;
    if let Err(e) = control::settle_answered_failures(op, &m.schema, run_id).await {
        return Outcome::Error {
            message: e.to_string(),
        };
    }
    let todo: Vec<_> = w
        .steps
        .iter()
        .map(|p| (*p, fleet.grant(&m.schema, p, GrantAction::Revert)))
        .collect();
    let rows: Vec<_> = todo
        .iter()
        .map(|(_, g)| (m.role.as_str(), &m.schema, g))
        .collect();
    if let Err(e) = control::insert_grants(op, run_id, &rows).await {
        return Outcome::Error {
            message: e.to_string(),
        };
    }
    let target = Target {
        schema: m.schema.clone(),
        scope: m.scope,
    };
    fleet.revert_steps(op, &target, &todo, run_id).await
}
