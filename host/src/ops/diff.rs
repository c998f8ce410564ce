//! `wasmig diff`: for every applied step whose content changed (drift, or a repeatable seed
//! step waiting to re-run), what it was applied with against what the loaded plugin says
//! now, as a unified diff of the SQL text. Schemas with the same change are shown once.

use std::collections::BTreeMap;

use anyhow::Result;

use super::{SchemaPick, Settings, load_plugins, registry};
use crate::Exit;
use crate::control;
use crate::names::SchemaName;
use crate::plan::Selection;
use crate::report::{self, Output};

/// Options of `wasmig diff`.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Only these schemas (none: every managed schema).
    pub schemas: Vec<SchemaName>,
    /// Only this plugin.
    pub plugin: Option<String>,
    /// Text or JSON.
    pub output: Output,
}

/// One change of an applied step, and the schemas that have it.
#[derive(Debug, Clone)]
pub struct StepChange {
    /// Plugin name.
    pub plugin: String,
    /// Step id.
    pub step: String,
    /// The checksum the ledger recorded.
    pub recorded: String,
    /// The checksum of the loaded plugin's step.
    pub current: String,
    /// A repeatable seed step that will re-run (else drift, refused).
    pub rerun: bool,
    /// The SQL text it was applied with, if kept (SQL steps applied by wasmig 0.3.0 on).
    pub applied_sql: Option<String>,
    /// The SQL text the loaded plugin has (none for a code step).
    pub current_sql: Option<String>,
    /// Where.
    pub schemas: Vec<SchemaName>,
}

/// Prints every change; exit 0 when nothing changed, 1 when something did.
pub async fn diff(s: &Settings, o: &DiffOptions) -> Result<Exit> {
    let plugins = load_plugins(s).await?;
    if let Some(p) = &o.plugin {
        super::baseline::check_plugin_step(s, &plugins.specs, p, None)?;
    }
    let op = s.connect_initialised().await?;
    let reg = registry(&op, s).await?;
    let schemas = if o.schemas.is_empty() {
        reg.clone()
    } else {
        SchemaPick {
            named: o.schemas.clone(),
            ..SchemaPick::default()
        }
        .resolve(&reg)?
    };
    let secret = control::read_secret(&op).await?;
    let ledger = control::read_ledger(&op, None, &secret).await?;
    let empty = Vec::new();
    // (plugin, step, recorded, current) -> change
    let mut changes: BTreeMap<(String, String, String, String), StepChange> = BTreeMap::new();
    for m in &schemas {
        let l = ledger.get(m.schema.as_str()).unwrap_or(&empty);
        let plan = crate::plan::plan_schema(
            &plugins.specs,
            &plugins.order,
            (m.schema.as_str(), m.scope),
            &Selection::default(),
            l,
        );
        let drifted = plan.drift.iter().map(|d| {
            (
                d.plugin.clone(),
                d.step.clone(),
                d.recorded.clone(),
                d.current.clone(),
                false,
            )
        });
        let reruns = plan.reruns.iter().filter_map(|p| {
            let spec = &plugins.specs[p.plugin];
            let st = &spec.steps[p.step];
            l.iter()
                .find(|e| e.plugin == spec.name && e.step_id == st.id)
                .map(|e| {
                    (
                        spec.name.clone(),
                        st.id.clone(),
                        e.checksum.clone(),
                        st.checksum.clone(),
                        true,
                    )
                })
        });
        for (plugin, step, recorded, current, rerun) in drifted.chain(reruns) {
            if o.plugin.as_ref().is_some_and(|p| *p != plugin) {
                continue;
            }
            let key = (
                plugin.clone(),
                step.clone(),
                recorded.clone(),
                current.clone(),
            );
            changes
                .entry(key)
                .or_insert_with(|| StepChange {
                    current_sql: plugins
                        .specs
                        .iter()
                        .find(|p| p.name == plugin)
                        .and_then(|p| p.steps.iter().find(|st| st.id == step))
                        .and_then(|st| st.sql.clone()),
                    plugin,
                    step,
                    recorded,
                    current,
                    rerun,
                    applied_sql: None,
                    schemas: Vec::new(),
                })
                .schemas
                .push(m.schema.clone());
        }
    }
    let recorded: Vec<&str> = changes.keys().map(|k| k.2.as_str()).collect();
    let texts = control::step_texts(&op, &recorded).await?;
    let mut changes: Vec<StepChange> = changes.into_values().collect();
    for c in &mut changes {
        c.applied_sql = texts.get(&c.recorded).cloned();
    }
    report::print_diff(&changes, o.output);
    Ok(if changes.is_empty() {
        Exit::Ok
    } else {
        Exit::Problems
    })
}
