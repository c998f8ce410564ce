//! Ledger operations for people: `repair` (accept a reviewed drift by recording the current
//! checksum, in one schema or many) and `restore` (a schema and its ledger rows from a dump).
//! `revert` has its own module.

use anyhow::{Result, bail};

use super::{Settings, load_plugins, registry};
use crate::Exit;
use crate::control::{self, GrantAction, RunOutcome, StepGrant};
use crate::names::SchemaName;
use crate::plan::{PendingStep, Scope};

/// Options of `wasmig resolve`.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// Where.
    pub schemas: super::SchemaPick,
    /// Only this plugin's failures.
    pub plugin: Option<String>,
    /// Only this step's failures.
    pub step: Option<String>,
    /// Why.
    pub reason: String,
}

/// `wasmig resolve`: marks the unresolved failures of the schemas picked resolved, in a run
/// of its own (so `history` shows who resolved what, when, and why). Exit 0, also when
/// there was nothing to resolve (it says so).
pub async fn resolve(s: &Settings, o: &ResolveOptions) -> Result<Exit> {
    let (op, schemas) = match super::connect_and_pick(s, &o.schemas).await? {
        Ok(picked) => picked,
        Err(exit) => return Ok(exit),
    };
    let run_id = control::start_run(&op, "resolve", &s.args).await?;
    let mut total = 0;
    for m in &schemas {
        let n = control::resolve_failures(
            &op,
            &m.schema,
            o.plugin.as_deref(),
            o.step.as_deref(),
            &o.reason,
            run_id,
        )
        .await?;
        crate::report::notes::resolved(&m.schema, n);
        total += n;
    }
    control::finish_run(&op, run_id, RunOutcome::Ok, 0, 0).await?;
    crate::report::notes::resolved_total(run_id, total, schemas.len());
    Ok(Exit::Ok)
}

/// Options of `wasmig repair`.
#[derive(Debug, Clone)]
pub struct RepairOptions {
    /// Where.
    pub schemas: super::SchemaPick,
    /// Plugin name.
    pub plugin: String,
    /// Step id.
    pub step: String,
}

/// `wasmig repair --plugin P --step ID` in the schemas picked: records the step's current
/// checksum where a person reviewed its drift, each schema under its lock, old -> new per
/// schema. One schema's refusal is an error (exit 2); over many, each is said and the others
/// go on (exit 1).
pub async fn repair(s: &Settings, o: &RepairOptions) -> Result<Exit> {
    let plugins = load_plugins(s).await?;
    super::baseline::check_plugin_step(s, &plugins.specs, &o.plugin, Some(&o.step))?;
    let pi = plugins
        .specs
        .iter()
        .position(|p| p.name == o.plugin)
        .unwrap_or(0);
    let (scope, step) = (
        plugins.specs[pi].scope,
        plugins.specs[pi]
            .steps
            .iter()
            .position(|st| st.id == o.step)
            .unwrap_or(0),
    );
    let op = s.connect_initialised().await?;
    let reg = registry(&op, s).await?;
    let schemas = o.schemas.resolve(&reg)?;
    if let Some(sel) = &o.schemas.selector
        && schemas.is_empty()
    {
        return Ok(super::nothing_picked(sel));
    }
    if let Some(m) = schemas.iter().find(|m| m.scope != scope) {
        bail!(
            "plugin `{}` runs in {} schemas, and `{}` is not one",
            o.plugin,
            scope.as_str(),
            m.schema
        );
    }
    let secret = control::read_secret(&op).await?;
    super::keep_step_texts(&op, &plugins.specs, [PendingStep { plugin: pi, step }]).await?;
    let run_id = control::start_run(&op, "repair", &s.args).await?;
    // Repairing runs no step: the grants it computes only carry the record's MAC.
    let fleet = super::fleet(s, plugins, secret, &reg, None, super::Enforcement::Guarded);
    let _clean_stop = crate::interrupt::CleanStop::begin();
    let g_of = |schema: &SchemaName| {
        fleet.grant(
            schema,
            &PendingStep { plugin: pi, step },
            GrantAction::Apply,
        )
    };
    let (mut repaired, mut failed, mut last_error) = (0usize, 0usize, None);
    for m in &schemas {
        if crate::interrupt::received().is_some() {
            break;
        }
        let g = g_of(&m.schema);
        match repair_one(&op, &fleet.secret, &m.schema, o, &g).await {
            Ok(old) => {
                repaired += 1;
                crate::report::notes::repaired(&m.schema, &o.plugin, &o.step, &old, &g.checksum);
            }
            Err(why) => {
                failed += 1;
                if schemas.len() > 1 {
                    crate::errln!("error: schema `{}`: {why}", m.schema);
                }
                last_error = Some(why);
            }
        }
    }
    let signal = crate::interrupt::received();
    let outcome = match (signal, failed) {
        (Some(_), _) => RunOutcome::Interrupted,
        (None, 0) => RunOutcome::Ok,
        (None, _) => RunOutcome::Failed,
    };
    if let Err(e) = control::finish_run(&op, run_id, outcome, repaired as i32, failed as i32).await
    {
        tracing::warn!("could not record the end of run {run_id}: {e}");
    }
    if repaired > 0 {
        let touched: Vec<&str> = schemas.iter().map(|m| m.schema.as_str()).collect();
        crate::report::notes::repair_changes_the_record_only(&touched);
    }
    if let (1, Some(why)) = (schemas.len(), last_error) {
        bail!("schema `{}`: {why}", schemas[0].schema);
    }
    Ok(match (signal, failed) {
        (Some(sig), _) => Exit::from_signal(sig),
        (None, 0) => Exit::Ok,
        (None, _) => Exit::Problems,
    })
}

/// One schema under its lock: the old checksum, or why it was not repaired.
async fn repair_one(
    op: &tokio_postgres::Client,
    secret: &[u8; 32],
    schema: &SchemaName,
    o: &RepairOptions,
    g: &StepGrant,
) -> Result<String, String> {
    let ledger = match control::try_lock_and_read(op, schema, secret).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            return Err(
                "it is being migrated by another wasmig run; try again when it is done".into(),
            );
        }
        Err(e) => {
            // The lock may have been taken before the read failed.
            if let Err(release) = control::release_schema(op, schema).await {
                tracing::warn!("{release}");
            }
            return Err(e.to_string());
        }
    };
    let entry = ledger
        .iter()
        .find(|e| e.plugin == o.plugin && e.step_id == o.step);
    let result = match entry {
        None => Err(format!(
            "step `{}` of `{}` is not recorded here; nothing to repair (use baseline to record it)",
            o.step, o.plugin
        )),
        Some(e) if !e.authentic => Err(format!(
            "the ledger row of `{}/{}` was not written by wasmig (forged); repair only accepts reviewed drift: delete that row instead",
            o.plugin, o.step
        )),
        Some(_) => match control::repair_row(op, schema, g).await {
            Ok(Some(old)) => Ok(old),
            Ok(None) => Err(format!(
                "step `{}` of `{}` is not recorded here; nothing to repair",
                o.step, o.plugin
            )),
            Err(e) => Err(e.to_string()),
        },
    };
    if let Err(e) = control::release_schema(op, schema).await {
        tracing::warn!("{e}");
    }
    result
}

/// Options of `wasmig restore`.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The `.dump` file.
    pub file: std::path::PathBuf,
    /// The tenant schema restored.
    pub schema: SchemaName,
    /// Hold the schema where the dump puts it, with this reason.
    pub hold: Option<String>,
}

/// `wasmig restore FILE --schema S`: puts back a tenant schema and its ledger rows from a dump
/// made by `migrate --backup-dir`. Failures that a later success had answered stay resolved;
/// with `hold`, the schema is held where the dump puts it (otherwise the next run that
/// applies steps would bring back what the restore took away, and the command says so).
pub async fn restore(s: &Settings, o: &RestoreOptions) -> Result<Exit> {
    let (file, schema) = (o.file.as_path(), &o.schema);
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
    control::settle_answered_failures(&op, schema, run_id).await?;
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
    let result = match (result, &o.hold) {
        (Ok(()), Some(reason)) => {
            super::hold::hold_in_run(&op, std::slice::from_ref(schema), None, reason, run_id).await
        }
        (result, _) => result.map_err(anyhow::Error::from),
    };
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
    if o.hold.is_none() {
        crate::report::notes::rolled_back_not_held(&[schema.as_str()]);
    }
    Ok(crate::interrupt::received().map_or(Exit::Ok, Exit::from_signal))
}
