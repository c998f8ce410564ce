//! `wasmig baseline`: record steps as applied without running them, in one schema or many,
//! either through a named step of one plugin or from each schema's own Django migration
//! history (`--from-django`). Each schema is done under its lock; a schema that cannot be
//! baselined is reported and the others go on.

use std::collections::{BTreeSet, HashMap};

use anyhow::{Result, bail};

use super::{Settings, load_plugins, registry};
use crate::Exit;
use crate::control::{self, GrantAction, ManagedSchema, RunOutcome, StepGrant};
use crate::exec::Fleet;
use crate::plan::{PendingStep, Scope, StepRef};

/// What to record.
#[derive(Debug, Clone)]
pub enum BaselineWhat {
    /// The steps of `plugin` up to and including `to`.
    Through {
        /// Plugin name.
        plugin: String,
        /// Its last step to record.
        to: String,
    },
    /// The steps whose (plugin, step id) Django recorded as (app label, migration name) in
    /// the schema's own `django_migrations`; `map` renames app labels to plugin names.
    FromDjango {
        /// `app_label -> plugin`; an app not mapped is looked up under its own name.
        map: HashMap<String, String>,
    },
}

/// Options of `wasmig baseline`.
#[derive(Debug, Clone)]
pub struct BaselineOptions {
    /// Where.
    pub schemas: super::SchemaPick,
    /// What.
    pub what: BaselineWhat,
}

/// What one schema's baseline did.
#[derive(Debug, Default)]
pub struct SchemaBaseline {
    /// Steps recorded now.
    pub added: u64,
    /// Steps selected that were recorded already.
    pub already: u64,
    /// Steps of loaded plugins that Django never applied here (left pending).
    pub pending: Vec<StepRef>,
    /// Migrations Django recorded that no loaded plugin declares (kept, never guessed).
    pub undeclared: Vec<StepRef>,
}

/// Baselines every selected schema; exit 1 when one could not be.
pub async fn baseline(s: &Settings, o: &BaselineOptions) -> Result<Exit> {
    let plugins = load_plugins(s).await?;
    if let BaselineWhat::Through { plugin, to } = &o.what {
        check_plugin_step(s, &plugins.specs, plugin, Some(to))?;
    }
    let mut op = s.connect_initialised().await?;
    let reg = registry(&op, s).await?;
    let schemas = o.schemas.resolve(&reg)?;
    if let Some(sel) = &o.schemas.selector
        && schemas.is_empty()
    {
        return Ok(super::nothing_picked(sel));
    }
    let secret = control::read_secret(&op).await?;
    let run_id = control::start_run(&op, "baseline", &s.args).await?;
    // Baselining runs no step: the grants it writes only carry the record.
    let fleet = super::fleet(s, plugins, secret, &reg, None, super::Enforcement::Guarded);
    let _clean_stop = crate::interrupt::CleanStop::begin();
    let (mut added, mut failed) = (0u64, 0usize);
    for m in &schemas {
        if crate::interrupt::received().is_some() {
            break;
        }
        match baseline_one(&fleet, &mut op, m, &o.what, run_id).await {
            Ok(b) => {
                added += b.added;
                crate::report::notes::baseline_done(&m.schema, &o.what, &b);
            }
            Err(e) => {
                failed += 1;
                crate::errln!("error: schema `{}`: {e:#}", m.schema);
            }
        }
    }
    let outcome = match (crate::interrupt::received(), failed) {
        (Some(_), _) => RunOutcome::Interrupted,
        (None, 0) => RunOutcome::Ok,
        (None, _) => RunOutcome::Failed,
    };
    let counts = (i32::try_from(added).unwrap_or(i32::MAX), failed as i32);
    if let Err(e) = control::finish_run(&op, run_id, outcome, counts.0, counts.1).await {
        tracing::warn!("could not record the end of run {run_id}: {e}");
    }
    Ok(match (crate::interrupt::received(), failed) {
        (Some(sig), _) => Exit::from_signal(sig),
        (None, 0) => Exit::Ok,
        (None, _) => Exit::Problems,
    })
}

/// Refuses `--plugin P [--to STEP]` naming no loaded plugin or no step of it.
pub(super) fn check_plugin_step(
    s: &Settings,
    specs: &[crate::plan::PluginSpec],
    plugin: &str,
    to: Option<&str>,
) -> Result<()> {
    let Some(spec) = specs.iter().find(|p| p.name == plugin) else {
        let loaded: Vec<&str> = specs.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "{}",
            crate::names::unknown_plugin(
                &format!("`--plugin {plugin}`"),
                plugin,
                &s.plugins_dir,
                &loaded
            )
        );
    };
    if let Some(to) = to
        && !spec.steps.iter().any(|st| st.id == to)
    {
        bail!("plugin `{plugin}` has no step `{to}`");
    }
    Ok(())
}

/// One schema under its lock: the steps to record, recorded.
async fn baseline_one(
    fleet: &Fleet,
    op: &mut tokio_postgres::Client,
    m: &ManagedSchema,
    what: &BaselineWhat,
    run_id: i64,
) -> Result<SchemaBaseline> {
    let mut out = SchemaBaseline::default();
    let steps: Vec<PendingStep> = match what {
        BaselineWhat::Through { plugin, to } => {
            let pi = fleet
                .plugins
                .specs()
                .iter()
                .position(|p| &p.name == plugin)
                .unwrap_or(usize::MAX);
            let spec = fleet.plugins.spec(pi);
            if spec.scope != m.scope {
                bail!(
                    "plugin `{plugin}` runs in {} schemas, and `{}` is not one",
                    spec.scope.as_str(),
                    m.schema
                );
            }
            let last = spec.steps.iter().position(|st| &st.id == to).unwrap_or(0);
            (0..=last)
                .map(|step| PendingStep { plugin: pi, step })
                .collect()
        }
        BaselineWhat::FromDjango { map } => {
            let Some(recorded) = control::django_migrations(op, &m.schema).await? else {
                bail!(
                    "it has no `django_migrations` table, so there is no Django history to baseline from"
                );
            };
            from_django(fleet, m.scope, map, &recorded, &mut out)
        }
    };
    let rows: Vec<StepGrant> = steps
        .iter()
        .map(|p| fleet.grant(&m.schema, p, GrantAction::Apply))
        .collect();
    if rows.is_empty() {
        return Ok(out);
    }
    super::keep_step_texts(op, fleet.plugins.specs(), steps.iter().copied()).await?;
    let Some(_ledger) = control::try_lock_and_read(op, &m.schema, &fleet.secret).await? else {
        bail!("it is being migrated by another wasmig run; try again when that run is done");
    };
    let added = control::baseline_rows(op, run_id, &m.schema, &rows).await;
    if let Err(e) = control::release_schema(op, &m.schema).await {
        tracing::warn!("{e}");
    }
    out.added = added?;
    out.already = rows.len() as u64 - out.added;
    Ok(out)
}

/// The steps Django's history in one schema says were applied; what it lacks and what it
/// has that no plugin declares go into `out`.
fn from_django(
    fleet: &Fleet,
    scope: Scope,
    map: &HashMap<String, String>,
    recorded: &[(String, String)],
    out: &mut SchemaBaseline,
) -> Vec<PendingStep> {
    let by_plugin = |app: &str| map.get(app).map_or(app, String::as_str).to_owned();
    let applied: BTreeSet<(String, &str)> = recorded
        .iter()
        .map(|(app, name)| (by_plugin(app), name.as_str()))
        .collect();
    let specs = fleet.plugins.specs();
    let mut steps = Vec::new();
    for (pi, p) in specs.iter().enumerate().filter(|(_, p)| p.scope == scope) {
        for (si, st) in p.steps.iter().enumerate() {
            if applied.contains(&(p.name.clone(), st.id.as_str())) {
                steps.push(PendingStep {
                    plugin: pi,
                    step: si,
                });
            } else {
                out.pending.push(StepRef::new(&p.name, &st.id));
            }
        }
    }
    for (app, name) in recorded {
        let plugin = by_plugin(app);
        let declared = specs.iter().any(|p| {
            p.name == plugin && p.scope == scope && p.steps.iter().any(|st| &st.id == name)
        });
        if !declared {
            out.undeclared.push(StepRef::new(app, name));
        }
    }
    steps
}
