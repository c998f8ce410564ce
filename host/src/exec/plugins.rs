//! The plugins of one run: each loaded component with its manifest, its limits and its
//! capability tier, and the run order. One type with private fields, so that no index into
//! one list is ever read against another; planning a schema is a method of it.

use crate::plan::{LedgerEntry, PluginSpec, SchemaPlan, Scope, Selection, Tier, plan_schema};
use crate::plugin::{Limits, LoadedPlugin};

/// One plugin as a run uses it.
struct RunPlugin {
    loaded: LoadedPlugin,
    limits: Limits,
    tier: Tier,
}

/// The plugins of a run, indexed as [`crate::plan::PendingStep::plugin`] indexes them.
pub struct RunPlugins {
    plugins: Vec<RunPlugin>,
    /// The manifests, in the same order (what [`plan_schema`] reads).
    specs: Vec<PluginSpec>,
    /// Run order, from [`crate::plan::order_plugins`].
    order: Vec<usize>,
}

impl RunPlugins {
    /// The run's plugins, with each one's limits and tier as the settings give them.
    pub fn new(
        loaded: Vec<LoadedPlugin>,
        order: Vec<usize>,
        limits: impl Fn(&PluginSpec) -> Limits,
        tier: impl Fn(&PluginSpec) -> Tier,
    ) -> Self {
        let specs: Vec<PluginSpec> = loaded.iter().map(|p| p.spec.clone()).collect();
        let plugins = loaded
            .into_iter()
            .map(|loaded| RunPlugin {
                limits: limits(&loaded.spec),
                tier: tier(&loaded.spec),
                loaded,
            })
            .collect();
        RunPlugins {
            plugins,
            specs,
            order,
        }
    }

    /// What is pending, drifted or refused in a schema of `scope` with these `ledger` rows.
    pub fn plan(
        &self,
        at: (&str, Scope),
        selection: &Selection,
        ledger: &[LedgerEntry],
    ) -> SchemaPlan {
        plan_schema(&self.specs, &self.order, at, selection, ledger)
    }

    /// The steps to revert in a schema with `ledger`, newest first, or why not (see
    /// [`crate::plan::revert_plan`]).
    pub fn revert_plan(
        &self,
        ledger: &[LedgerEntry],
        of: crate::plan::RevertOf,
    ) -> Result<Vec<crate::plan::PendingStep>, Vec<String>> {
        crate::plan::revert_plan(&self.specs, &self.order, ledger, of)
    }

    /// Every manifest, in load order.
    pub fn specs(&self) -> &[PluginSpec] {
        &self.specs
    }

    /// Plugin `i`'s manifest.
    pub fn spec(&self, i: usize) -> &PluginSpec {
        &self.specs[i]
    }

    /// Plugin `i`'s component.
    pub fn loaded(&self, i: usize) -> &LoadedPlugin {
        &self.plugins[i].loaded
    }

    /// Plugin `i`'s limits.
    pub fn limits(&self, i: usize) -> &Limits {
        &self.plugins[i].limits
    }

    /// The longest result row any of the run's plugins may receive (its `max_result_bytes`,
    /// plus the row's framing): what a plugin session's connection lets through.
    pub fn row_cap(&self) -> usize {
        self.plugins
            .iter()
            .map(|p| p.limits.max_result_bytes)
            .max()
            .unwrap_or(0)
            .saturating_add(64 * 1024)
    }

    /// Plugin `i`'s capability tier.
    pub fn tier(&self, i: usize) -> Tier {
        self.plugins[i].tier
    }
}
