//! Plugin order: shared before tenant, migrations before seeds, then by `requires`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use thiserror::Error;

use super::{Kind, PluginSpec, Scope};

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
    #[error("`--plugin {0}` names no loaded plugin (loaded: {1}){2}")]
    UnknownSelection(String, String, String),
}

/// Orders plugins: shared before tenant, migrations before seeds, then by `requires`
/// (ties broken by name so the order is stable). Returns indexes into `plugins`.
pub fn order_plugins(plugins: &[PluginSpec]) -> Result<Vec<usize>, PlanError> {
    // Long: validation and the topological sort share the name index; split, each half would rebuild it.
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
