//! Pure planning: plugins x ledger -> the steps each schema still needs, in order, plus
//! drift and unknown ledger rows. No I/O here; everything is testable without a database.
//!
//! Architecture invariant: the plan for a schema is a function of the loaded plugins, the
//! selection and that schema's ledger rows only.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::names::SchemaName;

/// Structure or data; migrations run before seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Schema changes.
    Migration,
    /// Data.
    Seed,
}

/// What a tenant plugin's steps may do in their schema, granted by the operator and enforced
/// by PostgreSQL (the object guard event trigger and the step's own role). Ordered from
/// least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Read and write rows; no DDL at all (the default for seeds).
    Data,
    /// Create and change tables, indexes, sequences, views and types, but nothing that
    /// executes code on someone else's behalf (the default for migrations).
    Schema,
    /// Anything the schema's owner may do (trusted by name).
    Full,
}

impl Tier {
    /// The tier a plugin of `kind` gets unless the operator grants another.
    pub fn default_for(kind: Kind) -> Tier {
        match kind {
            Kind::Seed => Tier::Data,
            Kind::Migration => Tier::Schema,
        }
    }

    /// The tier's name, as in flags, config and the control schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Data => "data",
            Tier::Schema => "schema",
            Tier::Full => "full",
        }
    }

    /// Parses `data`, `schema` or `full`.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "data" => Some(Tier::Data),
            "schema" => Some(Tier::Schema),
            "full" => Some(Tier::Full),
            _ => None,
        }
    }

    /// The tier a plugin runs with: shared plugins and plugins trusted by name get `full`;
    /// otherwise what the operator granted it (`--grant`), else its kind's default.
    pub fn granted(spec: &PluginSpec, trusted: &[String], grants: &[(String, Tier)]) -> Tier {
        if spec.scope == Scope::Shared || trusted.contains(&spec.name) {
            return Tier::Full;
        }
        grants
            .iter()
            .rev()
            .find(|(name, _)| *name == spec.name)
            .map_or_else(|| Tier::default_for(spec.kind), |(_, t)| *t)
    }
}

/// A plugin that declares it needs more than the operator granted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierShortfall {
    /// The plugin.
    pub plugin: String,
    /// What its manifest declares.
    pub needs: Tier,
    /// What the operator granted.
    pub granted: Tier,
}

impl std::fmt::Display for TierShortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.plugin;
        write!(
            f,
            "plugin `{p}` needs the `{}` tier but is granted `{}`; ",
            self.needs, self.granted
        )?;
        match self.needs {
            Tier::Full => write!(
                f,
                "`full` lets it create code (functions, triggers, ...) that runs as whoever touches its objects, so review it, then trust it by name: --trust {p} (or WASMIG_TRUSTED, or `trusted = [\"{p}\"]` in wasmig.toml)"
            ),
            t => write!(
                f,
                "after reviewing it, grant it: --grant {p}={t} (or WASMIG_GRANTS, or `grants = [\"{p}={t}\"]` in wasmig.toml)"
            ),
        }
    }
}

impl Tier {
    /// The tier a plugin runs with, given what the operator `granted` it: exactly the tier
    /// its manifest declares when that is within the grant (never more than it asked for),
    /// the grant itself when the plugin cannot declare one (WIT 0.1.0), and a shortfall when
    /// it declares more than it was granted.
    pub fn effective(spec: &PluginSpec, granted: Tier) -> Result<Tier, TierShortfall> {
        match spec.needs {
            None => Ok(granted),
            Some(needs) if needs <= granted => Ok(needs),
            Some(needs) => Err(TierShortfall {
                plugin: spec.name.clone(),
                needs,
                granted,
            }),
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a plugin runs; shared runs before tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The shared schema.
    Shared,
    /// Every tenant schema.
    Tenant,
}

impl Scope {
    /// The value in `wasmig.managed_schema.scope` (and in reports).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Shared => "shared",
            Scope::Tenant => "tenant",
        }
    }

    /// Reads [`Scope::as_str`] back.
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "shared" => Some(Scope::Shared),
            "tenant" => Some(Scope::Tenant),
            _ => None,
        }
    }
}

mod order;

pub use order::{PlanError, order_plugins};

mod revert;
pub use revert::{RevertOf, revert_plan};

/// A validated step of a loaded plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSpec {
    /// Step id, unique within the plugin.
    pub id: String,
    /// Human description.
    pub description: String,
    /// Fingerprint declared by the plugin.
    pub fingerprint: String,
    /// Runs inside one transaction with its ledger row.
    pub transactional: bool,
    /// Whether `revert` can undo it (`None`: the plugin's WIT version, before 0.3.0, does
    /// not say).
    pub reversible: Option<bool>,
    /// A seed step re-run whenever its checksum changes, instead of being refused as drift.
    pub repeatable: bool,
    /// Checksums of earlier fingerprints of the same content: a ledger row recording one of
    /// them is not drift.
    pub accepts: Vec<String>,
    /// The SQL a SQL step runs (WIT 0.3.0 on), for `wasmig diff` and the step-text store.
    pub sql: Option<String>,
    /// `step_checksum(plugin, id, fingerprint)`: what the ledger records.
    pub checksum: String,
}

/// The fingerprint the SDK gives a SQL step's text: `sql:` and the blake3 of its lines with
/// line endings and trailing whitespace normalised (`wasmig_sdk::fingerprint("sql", text)`).
pub fn sql_fingerprint(text: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    for line in text.trim().lines() {
        hasher.update(line.trim_end().as_bytes());
        hasher.update(b"\n");
    }
    format!("sql:{}", hasher.finalize().to_hex())
}

/// A validated plugin manifest plus its artifact's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// Plugin name (unique among loaded plugins).
    pub name: String,
    /// Version the plugin declares.
    pub version: String,
    /// Migration or seed.
    pub kind: Kind,
    /// Shared or tenant.
    pub scope: Scope,
    /// The tier the manifest declares it needs (`None`: built for WIT 0.1.0, which cannot
    /// declare one).
    pub needs: Option<Tier>,
    /// Plugins that must be applied first.
    pub requires: Vec<String>,
    /// Steps in apply order.
    pub steps: Vec<StepSpec>,
    /// blake3 of the `.wasm` file.
    pub artifact_checksum: String,
}

/// The ledger checksum of a step: blake3 over length-prefixed plugin, step id and
/// fingerprint (length prefixes make the encoding unambiguous).
pub fn step_checksum(plugin: &str, step_id: &str, fingerprint: &str) -> String {
    let mut h = blake3::Hasher::new();
    for part in [plugin, step_id, fingerprint] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// One applied step as the ledger has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Plugin name.
    pub plugin: String,
    /// Step id.
    pub step_id: String,
    /// Recorded checksum.
    pub checksum: String,
    /// Whether the row's MAC verifies (written through a host-issued grant).
    pub authentic: bool,
    /// The run that wrote the row (informational: not covered by the MAC).
    pub run_id: Option<i64>,
    /// blake3 of the artifact that applied the step.
    pub artifact_checksum: String,
}

/// A pending step: indexes into the plugin list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PendingStep {
    /// Index of the plugin.
    pub plugin: usize,
    /// Index of the step within the plugin.
    pub step: usize,
}

/// A step by name, as reports and documents name it (`plugin/step` in text).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct StepRef {
    /// Plugin name.
    pub plugin: String,
    /// Step id.
    pub step: String,
}

impl StepRef {
    /// The step `step` of `plugin`.
    pub fn new(plugin: &str, step: &str) -> Self {
        StepRef {
            plugin: plugin.to_owned(),
            step: step.to_owned(),
        }
    }
}

impl std::fmt::Display for StepRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.plugin, self.step)
    }
}

/// An applied step whose content changed since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// Plugin name.
    pub plugin: String,
    /// Step id.
    pub step: String,
    /// Checksum in the ledger.
    pub recorded: String,
    /// Checksum of the loaded plugin's step.
    pub current: String,
}

/// What one schema needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SchemaPlan {
    /// Steps not yet applied, in order. They run only if [`SchemaPlan::refused`] is false.
    pub pending: Vec<PendingStep>,
    /// Of `pending`, the repeatable seed steps applied before whose content changed: they
    /// run again ("changed, will re-run").
    pub reruns: Vec<PendingStep>,
    /// Applied steps whose checksum changed.
    pub drift: Vec<Drift>,
    /// Ledger rows for steps that no loaded plugin declares (reported, never deleted).
    pub unknown: Vec<StepRef>,
    /// Steps of loaded plugins already applied with a matching checksum.
    pub applied: usize,
    /// Why the schema cannot run its selection (e.g. a required plugin is not selected).
    pub blocked: Option<String>,
    /// Steps an operator's hold keeps from running here (see [`Hold`]), in order: not
    /// pending, not a problem, shown as held.
    pub on_hold: Vec<PendingStep>,
    /// Ledger rows whose MAC does not verify: not written by wasmig.
    pub forged: Vec<StepRef>,
}

/// Which plugins a run covers.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these plugins (empty = all).
    pub plugins: Vec<String>,
    /// Steps no schema may apply now, each with why: a step edited after it was applied
    /// somewhere (see [`held_edited_steps`]) would otherwise reach the schemas that had not
    /// run it with its new text while the others are refused, splitting the fleet.
    pub held: Vec<(StepRef, String)>,
    /// The operators' holds (`wasmig hold`), of any schema: a held schema (or plugin in a
    /// schema) stays where it is until released.
    pub holds: Vec<Hold>,
}

/// An operator's hold: `schema` (only `plugin`'s steps there, when given) stays where it is
/// until released, whatever `migrate` or `verify --fix` would apply. A plugin that requires
/// a held plugin with steps waiting waits too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    /// The schema held.
    pub schema: String,
    /// Only this plugin's steps (the whole schema when none).
    pub plugin: Option<String>,
    /// Why, as the operator said it.
    pub reason: String,
    /// When it was set (RFC 3339).
    pub since: String,
}

impl Hold {
    /// Whether this hold keeps plugin `name`'s steps from running.
    pub fn covers(&self, name: &str) -> bool {
        self.plugin.as_deref().is_none_or(|p| p == name)
    }
}

impl Selection {
    /// Whether plugin `name` is selected.
    pub fn includes(&self, name: &str) -> bool {
        self.plugins.is_empty() || self.plugins.iter().any(|p| p == name)
    }

    /// Checks that every selected plugin is loaded.
    pub fn validate(&self, plugins: &[PluginSpec]) -> Result<(), PlanError> {
        for s in &self.plugins {
            if !plugins.iter().any(|p| &p.name == s) {
                let mut loaded: Vec<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
                loaded.sort_unstable();
                let hint = crate::names::file_name_hint(s, &loaded)
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                return Err(PlanError::UnknownSelection(
                    s.clone(),
                    loaded.join(", "),
                    hint,
                ));
            }
        }
        Ok(())
    }
}

/// The steps to hold fleet-wide: every applied step whose text changed (drift) in some
/// schema, with why, naming up to five of those schemas. `plans` are every schema's plans from
/// one ledger snapshot. Until a person reviews the change (`wasmig diff`) and accepts it
/// (`wasmig repair`) or restores the step, no schema applies it: the edited text would
/// otherwise reach the schemas that had not run it yet while the others are refused.
pub fn held_edited_steps<'a>(
    plans: impl IntoIterator<Item = (&'a str, &'a SchemaPlan)>,
) -> Vec<(StepRef, String)> {
    let mut edited: std::collections::BTreeMap<StepRef, Vec<&str>> = Default::default();
    for (schema, plan) in plans {
        for d in &plan.drift {
            edited
                .entry(StepRef::new(&d.plugin, &d.step))
                .or_default()
                .push(schema);
        }
    }
    edited
        .into_iter()
        .map(|(step, schemas)| {
            let why = format!(
                "step `{}` of plugin `{}` was changed after it was applied (drift in {} schema(s): {}), so its new text is applied nowhere until a person reviews it: see `wasmig diff --plugin {}`, then restore the step as it was applied, or accept the change with `wasmig repair`",
                step.step,
                step.plugin,
                schemas.len(),
                {
                    let shown = schemas.iter().take(5).copied().collect::<Vec<_>>().join(", ");
                    match schemas.len().saturating_sub(5) {
                        0 => shown,
                        more => format!("{shown} and {more} more"),
                    }
                },
                step.plugin
            );
            (step, why)
        })
        .collect()
}

/// Plans schema `schema` of `scope`: `order` from [`order_plugins`], `ledger` = this schema's
/// rows.
pub fn plan_schema(
    plugins: &[PluginSpec],
    order: &[usize],
    (schema, scope): (&str, Scope),
    selection: &Selection,
    ledger: &[LedgerEntry],
) -> SchemaPlan {
    let mut plan = SchemaPlan {
        forged: ledger
            .iter()
            .filter(|e| !e.authentic)
            .map(|e| StepRef::new(&e.plugin, &e.step_id))
            .collect(),
        ..SchemaPlan::default()
    };
    // A forged row proves nothing: its step counts as not applied.
    let recorded: HashMap<(&str, &str), (&str, &str)> = ledger
        .iter()
        .filter(|e| e.authentic)
        .map(|e| {
            let key = (e.plugin.as_str(), e.step_id.as_str());
            (key, (e.checksum.as_str(), e.artifact_checksum.as_str()))
        })
        .collect();
    let mut has_pending: BTreeSet<&str> = BTreeSet::new();
    for &pi in order {
        let p = &plugins[pi];
        if p.scope != scope {
            continue;
        }
        for (si, s) in p.steps.iter().enumerate() {
            let here = PendingStep {
                plugin: pi,
                step: si,
            };
            match recorded.get(&(p.name.as_str(), s.id.as_str())) {
                Some(&(c, _)) if c == s.checksum || s.accepts.iter().any(|a| a == c) => {
                    plan.applied += 1
                }
                // The same artifact that applied it now declares another fingerprint: its
                // manifest is not deterministic, and re-running would never end.
                Some(&(_, art)) if s.repeatable && art != p.artifact_checksum => {
                    has_pending.insert(p.name.as_str());
                    if selection.includes(&p.name) {
                        plan.pending.push(here);
                        plan.reruns.push(here);
                    }
                }
                Some(&(c, _)) => plan.drift.push(Drift {
                    plugin: p.name.clone(),
                    step: s.id.clone(),
                    recorded: c.to_owned(),
                    current: s.checksum.clone(),
                }),
                None => {
                    has_pending.insert(p.name.as_str());
                    if selection.includes(&p.name) {
                        plan.pending.push(here);
                    }
                }
            }
        }
    }
    for e in ledger {
        let known = plugins
            .iter()
            .any(|p| p.name == e.plugin && p.steps.iter().any(|s| s.id == e.step_id));
        if !known {
            plan.unknown.push(StepRef::new(&e.plugin, &e.step_id));
        }
    }
    hold_back(&mut plan, plugins, schema, &selection.holds);
    if plan.blocked.is_none()
        && let Some((_, why)) = plan.pending.iter().find_map(|p| {
            let r = StepRef::new(&plugins[p.plugin].name, &plugins[p.plugin].steps[p.step].id);
            selection.held.iter().find(|(h, _)| *h == r)
        })
    {
        plan.blocked = Some(why.clone());
    }
    if !selection.plugins.is_empty() {
        'outer: for step in &plan.pending {
            for r in &plugins[step.plugin].requires {
                if has_pending.contains(r.as_str()) && !selection.includes(r) {
                    plan.blocked = Some(format!(
                        "plugin `{}` requires `{r}`, which has pending steps here; add `--plugin {r}` or drop `--plugin`",
                        plugins[step.plugin].name
                    ));
                    break 'outer;
                }
            }
        }
    }
    plan
}

/// Moves the pending steps `holds` keep from running in `schema` to `plan.on_hold`: those of
/// a held plugin (every plugin when the schema is held whole), and of any plugin that
/// requires a plugin with steps on hold. `pending` is in dependency order, so one pass finds
/// the plugins that wait on others.
fn hold_back(plan: &mut SchemaPlan, plugins: &[PluginSpec], schema: &str, holds: &[Hold]) {
    let here: Vec<&Hold> = holds.iter().filter(|h| h.schema == schema).collect();
    if here.is_empty() {
        return;
    }
    let mut waiting: BTreeSet<&str> = BTreeSet::new();
    let (mut keep, mut hold) = (Vec::new(), Vec::new());
    for p in std::mem::take(&mut plan.pending) {
        let spec = &plugins[p.plugin];
        let held = here.iter().any(|h| h.covers(&spec.name))
            || spec.requires.iter().any(|r| waiting.contains(r.as_str()));
        if held {
            waiting.insert(spec.name.as_str());
            hold.push(p);
        } else {
            keep.push(p);
        }
    }
    plan.reruns.retain(|r| !hold.contains(r));
    plan.pending = keep;
    plan.on_hold = hold;
}

impl SchemaPlan {
    /// Drift, forged ledger rows or a blocked selection: the schema must not run anything.
    pub fn refused(&self) -> bool {
        !self.drift.is_empty() || !self.forged.is_empty() || self.blocked.is_some()
    }
}

/// A schema to plan, with its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Schema name.
    pub schema: SchemaName,
    /// Shared or tenant.
    pub scope: Scope,
}

#[cfg(test)]
mod tests;
