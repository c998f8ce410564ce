//! Pure planning: plugins x ledger -> the steps each schema still needs, in order, plus
//! drift and unknown ledger rows. No I/O here; everything is testable without a database.
//!
//! Architecture invariant: the plan for a schema is a function of the loaded plugins, the
//! selection and that schema's ledger rows only.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use thiserror::Error;

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
    /// `step_checksum(plugin, id, fingerprint)`: what the ledger records.
    pub checksum: String,
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

/// Why a set of plugins cannot be ordered.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    /// Two artifacts declare the same plugin name.
    #[error("plugin `{name}` is declared by two artifacts: {first} and {second}; keep one")]
    DuplicatePlugin {
        /// Plugin name.
        name: String,
        /// First artifact.
        first: String,
        /// Second artifact.
        second: String,
    },
    /// `requires` names a plugin that is not loaded.
    #[error("plugin `{plugin}` requires `{required}`, which is not in the plugins directory")]
    UnknownRequirement {
        /// The requiring plugin.
        plugin: String,
        /// The missing one.
        required: String,
    },
    /// A requirement that cannot run before its dependant.
    #[error("plugin `{plugin}` requires `{required}`, but {why}")]
    BadRequirement {
        /// The requiring plugin.
        plugin: String,
        /// The required plugin.
        required: String,
        /// Why the order is impossible.
        why: &'static str,
    },
    /// Requirements form a cycle.
    #[error("plugins require each other in a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// `--plugin` names a plugin that is not loaded.
    #[error("`--plugin {0}` names no loaded plugin (loaded: {1})")]
    UnknownSelection(String, String),
}

/// Orders plugins: shared before tenant, migrations before seeds, then by `requires`
/// (ties broken by name so the order is stable). Returns indexes into `plugins`.
pub fn order_plugins(plugins: &[PluginSpec]) -> Result<Vec<usize>, PlanError> {
    let by_name: HashMap<&str, usize> = plugins
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    for p in plugins {
        for r in &p.requires {
            let Some(&ri) = by_name.get(r.as_str()) else {
                return Err(PlanError::UnknownRequirement {
                    plugin: p.name.clone(),
                    required: r.clone(),
                });
            };
            let q = &plugins[ri];
            let why = if p.scope == Scope::Shared && q.scope == Scope::Tenant {
                Some("a shared plugin cannot require a tenant plugin (shared runs first)")
            } else if p.scope == q.scope && p.kind == Kind::Migration && q.kind == Kind::Seed {
                Some("a migration cannot require a seed (migrations run first)")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(PlanError::BadRequirement {
                    plugin: p.name.clone(),
                    required: r.clone(),
                    why,
                });
            }
        }
    }
    let mut order = Vec::with_capacity(plugins.len());
    let mut groups: BTreeMap<(Scope, Kind), Vec<usize>> = BTreeMap::new();
    for (i, p) in plugins.iter().enumerate() {
        groups.entry((p.scope, p.kind)).or_default().push(i);
    }
    for members in groups.values() {
        let in_group: BTreeSet<usize> = members.iter().copied().collect();
        let mut indegree: HashMap<usize, usize> = HashMap::new();
        for &i in members {
            let n = plugins[i]
                .requires
                .iter()
                .filter(|r| in_group.contains(&by_name[r.as_str()]))
                .count();
            indegree.insert(i, n);
        }
        let mut ready: BTreeSet<(&str, usize)> = members
            .iter()
            .filter(|i| indegree[i] == 0)
            .map(|&i| (plugins[i].name.as_str(), i))
            .collect();
        let mut done = 0;
        while let Some(next) = ready.pop_first() {
            order.push(next.1);
            done += 1;
            for &j in members {
                if plugins[j]
                    .requires
                    .iter()
                    .any(|r| r == &plugins[next.1].name)
                {
                    let d = indegree.get_mut(&j).expect("member has an indegree");
                    *d -= 1;
                    if *d == 0 {
                        ready.insert((plugins[j].name.as_str(), j));
                    }
                }
            }
        }
        if done < members.len() {
            let stuck: Vec<usize> = members
                .iter()
                .copied()
                .filter(|i| indegree[i] > 0)
                .collect();
            return Err(PlanError::Cycle(find_cycle(plugins, &stuck, &by_name)));
        }
    }
    Ok(order)
}

fn find_cycle(
    plugins: &[PluginSpec],
    stuck: &[usize],
    by_name: &HashMap<&str, usize>,
) -> Vec<String> {
    // Walk requirements among stuck plugins until a plugin repeats: that loop is a cycle.
    let stuck_set: BTreeSet<usize> = stuck.iter().copied().collect();
    let mut path = vec![stuck[0]];
    loop {
        let cur = *path.last().expect("path is never empty");
        let next = plugins[cur]
            .requires
            .iter()
            .map(|r| by_name[r.as_str()])
            .find(|i| stuck_set.contains(i))
            .expect("a stuck plugin requires another stuck plugin");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut names: Vec<String> = path[pos..]
                .iter()
                .map(|&i| plugins[i].name.clone())
                .collect();
            names.push(plugins[next].name.clone());
            return names;
        }
        path.push(next);
    }
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
}

/// A pending step: indexes into the plugin list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingStep {
    /// Index of the plugin.
    pub plugin: usize,
    /// Index of the step within the plugin.
    pub step: usize,
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
    /// Applied steps whose checksum changed.
    pub drift: Vec<Drift>,
    /// Ledger rows for steps that no loaded plugin declares (reported, never deleted).
    pub unknown: Vec<(String, String)>,
    /// Steps of loaded plugins already applied with a matching checksum.
    pub applied: usize,
    /// Why the schema cannot run its selection (e.g. a required plugin is not selected).
    pub blocked: Option<String>,
    /// Ledger rows whose MAC does not verify: not written by wasmig (`plugin/step`).
    pub forged: Vec<String>,
}

/// Which plugins a run covers.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these plugins (empty = all).
    pub plugins: Vec<String>,
}

impl Selection {
    fn includes(&self, name: &str) -> bool {
        self.plugins.is_empty() || self.plugins.iter().any(|p| p == name)
    }

    /// Checks that every selected plugin is loaded.
    pub fn validate(&self, plugins: &[PluginSpec]) -> Result<(), PlanError> {
        for s in &self.plugins {
            if !plugins.iter().any(|p| &p.name == s) {
                let mut loaded: Vec<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
                loaded.sort_unstable();
                return Err(PlanError::UnknownSelection(s.clone(), loaded.join(", ")));
            }
        }
        Ok(())
    }
}

/// Plans one schema of `scope`: `order` from [`order_plugins`], `ledger` = this schema's rows.
pub fn plan_schema(
    plugins: &[PluginSpec],
    order: &[usize],
    scope: Scope,
    selection: &Selection,
    ledger: &[LedgerEntry],
) -> SchemaPlan {
    let mut plan = SchemaPlan {
        forged: ledger
            .iter()
            .filter(|e| !e.authentic)
            .map(|e| format!("{}/{}", e.plugin, e.step_id))
            .collect(),
        ..SchemaPlan::default()
    };
    // A forged row proves nothing: its step counts as not applied.
    let recorded: HashMap<(&str, &str), &str> = ledger
        .iter()
        .filter(|e| e.authentic)
        .map(|e| ((e.plugin.as_str(), e.step_id.as_str()), e.checksum.as_str()))
        .collect();
    let mut has_pending: BTreeSet<&str> = BTreeSet::new();
    for &pi in order {
        let p = &plugins[pi];
        if p.scope != scope {
            continue;
        }
        for (si, s) in p.steps.iter().enumerate() {
            match recorded.get(&(p.name.as_str(), s.id.as_str())) {
                Some(&c) if c == s.checksum => plan.applied += 1,
                Some(&c) => plan.drift.push(Drift {
                    plugin: p.name.clone(),
                    step: s.id.clone(),
                    recorded: c.to_owned(),
                    current: s.checksum.clone(),
                }),
                None => {
                    has_pending.insert(p.name.as_str());
                    if selection.includes(&p.name) {
                        plan.pending.push(PendingStep {
                            plugin: pi,
                            step: si,
                        });
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
            plan.unknown.push((e.plugin.clone(), e.step_id.clone()));
        }
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
mod tests {
    use super::*;

    fn plugin(
        name: &str,
        scope: Scope,
        kind: Kind,
        requires: &[&str],
        steps: &[(&str, &str)],
    ) -> PluginSpec {
        PluginSpec {
            name: name.into(),
            version: "1".into(),
            kind,
            scope,
            requires: requires.iter().map(|s| (*s).into()).collect(),
            steps: steps
                .iter()
                .map(|(id, fp)| StepSpec {
                    id: (*id).into(),
                    description: String::new(),
                    fingerprint: (*fp).into(),
                    transactional: true,
                    checksum: step_checksum(name, id, fp),
                })
                .collect(),
            artifact_checksum: String::new(),
        }
    }

    #[test]
    fn tiers_default_by_kind_and_are_raised_only_by_the_operator() {
        let seed = plugin("demo-seed", Scope::Tenant, Kind::Seed, &[], &[("1", "a")]);
        let mig = plugin("notes", Scope::Tenant, Kind::Migration, &[], &[("1", "a")]);
        let shared = plugin(
            "reference",
            Scope::Shared,
            Kind::Migration,
            &[],
            &[("1", "a")],
        );
        assert_eq!(Tier::granted(&seed, &[], &[]), Tier::Data);
        assert_eq!(Tier::granted(&mig, &[], &[]), Tier::Schema);
        assert_eq!(Tier::granted(&shared, &[], &[]), Tier::Full);
        assert_eq!(
            Tier::granted(&seed, &[], &[("demo-seed".into(), Tier::Schema)]),
            Tier::Schema
        );
        assert_eq!(Tier::granted(&mig, &["notes".into()], &[]), Tier::Full);
        // A grant for another plugin changes nothing; the last grant of a name wins.
        assert_eq!(
            Tier::granted(&mig, &[], &[("other".into(), Tier::Full)]),
            Tier::Schema
        );
        assert_eq!(
            Tier::granted(
                &mig,
                &[],
                &[("notes".into(), Tier::Full), ("notes".into(), Tier::Data)]
            ),
            Tier::Data
        );
        assert!(Tier::Data < Tier::Schema && Tier::Schema < Tier::Full);
        for t in [Tier::Data, Tier::Schema, Tier::Full] {
            assert_eq!(Tier::parse(t.as_str()), Some(t));
        }
        assert_eq!(Tier::parse("root"), None);
    }

    fn names(plugins: &[PluginSpec], order: &[usize]) -> Vec<String> {
        order.iter().map(|&i| plugins[i].name.clone()).collect()
    }

    fn workload() -> Vec<PluginSpec> {
        use Kind::*;
        use Scope::*;
        vec![
            plugin("seed", Tenant, Seed, &["customers"], &[("1", "a")]),
            plugin(
                "finance",
                Tenant,
                Migration,
                &["customers", "suppliers"],
                &[("1", "a")],
            ),
            plugin("suppliers", Tenant, Migration, &["carriers"], &[("1", "a")]),
            plugin("customers", Tenant, Migration, &["carriers"], &[("1", "a")]),
            plugin(
                "carriers",
                Tenant,
                Migration,
                &[],
                &[("1", "a"), ("2", "b")],
            ),
            plugin("reference", Shared, Migration, &[], &[("1", "a")]),
        ]
    }

    #[test]
    fn orders_shared_first_then_requirements_then_seeds() {
        let p = workload();
        let order = order_plugins(&p).unwrap();
        assert_eq!(
            names(&p, &order),
            [
                "reference",
                "carriers",
                "customers",
                "suppliers",
                "finance",
                "seed"
            ]
        );
    }

    #[test]
    fn refuses_unknown_requirement_cycle_and_bad_direction() {
        use Kind::*;
        use Scope::*;
        let p = vec![plugin("a", Tenant, Migration, &["zzz"], &[])];
        assert!(matches!(
            order_plugins(&p),
            Err(PlanError::UnknownRequirement { .. })
        ));
        let p = vec![
            plugin("a", Tenant, Migration, &["b"], &[]),
            plugin("b", Tenant, Migration, &["c"], &[]),
            plugin("c", Tenant, Migration, &["a"], &[]),
            plugin("d", Tenant, Migration, &[], &[]),
        ];
        let Err(PlanError::Cycle(c)) = order_plugins(&p) else {
            panic!("cycle expected")
        };
        assert_eq!(c.first(), c.last());
        assert_eq!(c.len(), 4);
        let p = vec![
            plugin("s", Shared, Migration, &["t"], &[]),
            plugin("t", Tenant, Migration, &[], &[]),
        ];
        assert!(matches!(
            order_plugins(&p),
            Err(PlanError::BadRequirement { .. })
        ));
        let p = vec![
            plugin("m", Tenant, Migration, &["s"], &[]),
            plugin("s", Tenant, Seed, &[], &[]),
        ];
        assert!(matches!(
            order_plugins(&p),
            Err(PlanError::BadRequirement { .. })
        ));
    }

    fn entry(p: &PluginSpec, step: usize) -> LedgerEntry {
        LedgerEntry {
            plugin: p.name.clone(),
            step_id: p.steps[step].id.clone(),
            checksum: p.steps[step].checksum.clone(),
            authentic: true,
        }
    }

    #[test]
    fn pending_drift_and_unknown() {
        let p = workload();
        let order = order_plugins(&p).unwrap();
        let all = Selection::default();
        let fresh = plan_schema(&p, &order, Scope::Tenant, &all, &[]);
        assert_eq!(fresh.pending.len(), 6);
        assert_eq!(p[fresh.pending[0].plugin].name, "carriers");

        let carriers = &p[4];
        let ledger = vec![entry(carriers, 0)];
        let partial = plan_schema(&p, &order, Scope::Tenant, &all, &ledger);
        assert_eq!(partial.applied, 1);
        assert_eq!(partial.pending.len(), 5);
        assert_eq!(partial.pending[0], PendingStep { plugin: 4, step: 1 });

        let mut drifted = ledger.clone();
        drifted[0].checksum = "0".repeat(64);
        drifted.push(LedgerEntry {
            plugin: "gone".into(),
            step_id: "x".into(),
            checksum: "c".into(),
            authentic: true,
        });
        let d = plan_schema(&p, &order, Scope::Tenant, &all, &drifted);
        assert!(d.refused(), "a drifted schema runs nothing");
        assert_eq!(d.pending.len(), 5, "the drifted step itself is not pending");
        assert_eq!(d.drift.len(), 1);
        assert_eq!(d.drift[0].recorded, "0".repeat(64));
        assert_eq!(d.unknown, vec![("gone".to_string(), "x".to_string())]);

        let shared = plan_schema(&p, &order, Scope::Shared, &all, &[]);
        assert_eq!(shared.pending.len(), 1);
    }

    #[test]
    fn forged_rows_refuse_the_schema_and_count_as_not_applied() {
        let p = workload();
        let order = order_plugins(&p).unwrap();
        let mut forged = entry(&p[4], 0);
        forged.authentic = false;
        let plan = plan_schema(&p, &order, Scope::Tenant, &Selection::default(), &[forged]);
        assert_eq!(plan.forged, vec!["carriers/1".to_string()]);
        assert!(plan.refused());
        assert_eq!(plan.applied, 0);
        assert_eq!(plan.pending.len(), 6);
    }

    #[test]
    fn selection_is_blocked_by_pending_requirements() {
        let p = workload();
        let order = order_plugins(&p).unwrap();
        let sel = Selection {
            plugins: vec!["customers".into()],
        };
        let blocked = plan_schema(&p, &order, Scope::Tenant, &sel, &[]);
        assert!(
            blocked
                .blocked
                .as_deref()
                .unwrap()
                .contains("--plugin carriers")
        );
        let ledger: Vec<_> = (0..2).map(|s| entry(&p[4], s)).collect();
        let ok = plan_schema(&p, &order, Scope::Tenant, &sel, &ledger);
        assert!(ok.blocked.is_none());
        assert_eq!(ok.pending.len(), 1);
        assert!(
            Selection {
                plugins: vec!["nope".into()]
            }
            .validate(&p)
            .is_err()
        );
    }

    #[test]
    fn checksum_is_unambiguous() {
        assert_ne!(step_checksum("ab", "c", "d"), step_checksum("a", "bc", "d"));
        assert_eq!(step_checksum("a", "b", "c").len(), 64);
    }
}
