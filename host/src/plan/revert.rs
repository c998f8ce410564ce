//! Which applied steps a revert undoes in one schema, or every reason it is refused: pure,
//! over the loaded plugins, their order and the schema's ledger. `revert --plugin` undoes a
//! plugin's steps after a kept one; `revert --run` undoes the steps one run applied. Either
//! is checked whole before anything changes.

use std::collections::BTreeSet;

use super::{LedgerEntry, PendingStep, PluginSpec};

/// What to revert in a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevertOf {
    /// The applied steps of plugin `plugin` from index `from` on (0: all of them).
    Plugin {
        /// Index of the plugin.
        plugin: usize,
        /// The first step index to revert; those before it stay applied.
        from: usize,
    },
    /// The steps whose ledger rows run `N` wrote.
    Run(i64),
}

/// The steps to revert in one schema, newest first (across plugins: dependants before what
/// they require), or every reason the revert is refused there.
pub fn revert_plan(
    specs: &[PluginSpec],
    order: &[usize],
    ledger: &[LedgerEntry],
    of: RevertOf,
) -> Result<Vec<PendingStep>, Vec<String>> {
    let mut problems = Vec::new();
    let mut steps = Vec::new();
    match of {
        RevertOf::Plugin { plugin, from } => {
            let spec = &specs[plugin];
            // Plugins that build on this one must not lose what they rely on.
            for d in dependants(specs, plugin) {
                if ledger.iter().any(|e| e.plugin == specs[d].name) {
                    problems.push(format!(
                        "plugin `{}` is required by `{}`, applied here; revert `{}` first",
                        spec.name, specs[d].name, specs[d].name
                    ));
                }
            }
            for (i, st) in spec.steps.iter().enumerate().skip(from) {
                if let Some(e) = recorded(ledger, &spec.name, &st.id) {
                    steps.push((PendingStep { plugin, step: i }, e));
                }
            }
        }
        RevertOf::Run(run) => {
            for e in ledger.iter().filter(|e| e.run_id == Some(run)) {
                match locate(specs, e) {
                    Ok(p) => steps.push((p, e)),
                    Err(why) => problems.push(why),
                }
            }
            problems.extend(built_on_later(specs, ledger, run, &steps));
        }
    }
    for (p, e) in &steps {
        let (spec, st) = (&specs[p.plugin], &specs[p.plugin].steps[p.step]);
        if !e.authentic || (e.checksum != st.checksum && !st.accepts.contains(&e.checksum)) {
            problems.push(format!(
                "step `{}` of plugin `{}` was applied with other content than the loaded plugin declares (drift or a forged row); review it (`wasmig repair`) before reverting",
                st.id, spec.name
            ));
        }
        match st.reversible {
            Some(true) => {}
            Some(false) => problems.push(format!(
                "step `{}` of plugin `{}` is irreversible (it declares no revert)",
                st.id, spec.name
            )),
            // Only `revert --run` promises to find this out before anything changes; a plugin
            // revert of an older plugin stops at the step, as it always did.
            None if matches!(of, RevertOf::Run(_)) => problems.push(format!(
                "plugin `{}` was built for a WIT version that does not say whether its steps can be undone; rebuild it with the current wasmig-sdk, or revert it with `wasmig revert --plugin {}`",
                spec.name, spec.name
            )),
            None => {}
        }
    }
    if !problems.is_empty() {
        problems.dedup();
        return Err(problems);
    }
    let rank = |p: &PendingStep| {
        let at = order.iter().position(|&o| o == p.plugin).unwrap_or(0);
        (at, p.step)
    };
    let mut out: Vec<PendingStep> = steps.into_iter().map(|(p, _)| p).collect();
    out.sort_by_key(|p| std::cmp::Reverse(rank(p)));
    Ok(out)
}

fn recorded<'a>(ledger: &'a [LedgerEntry], plugin: &str, step: &str) -> Option<&'a LedgerEntry> {
    ledger
        .iter()
        .find(|e| e.plugin == plugin && e.step_id == step)
}

/// The loaded step a ledger row names, or why it cannot be reverted.
fn locate(specs: &[PluginSpec], e: &LedgerEntry) -> Result<PendingStep, String> {
    // Names read from the ledger, shown inert (a row no loaded plugin declares was not
    // validated by this run).
    let (id, name) = (
        crate::text::inert(&e.step_id, 200),
        crate::text::inert(&e.plugin, 200),
    );
    let Some(plugin) = specs.iter().position(|p| p.name == e.plugin) else {
        return Err(format!(
            "step `{id}` of plugin `{name}` was applied, but no loaded plugin is named `{name}`; put its component in the plugins directory"
        ));
    };
    let Some(step) = specs[plugin].steps.iter().position(|st| st.id == e.step_id) else {
        return Err(format!(
            "step `{id}` of plugin `{name}` was applied, but the loaded plugin no longer declares it"
        ));
    };
    Ok(PendingStep { plugin, step })
}

/// Every plugin that requires `plugin`, directly or through others.
fn dependants(specs: &[PluginSpec], plugin: usize) -> BTreeSet<usize> {
    let mut found = BTreeSet::new();
    let mut todo = vec![plugin];
    while let Some(p) = todo.pop() {
        for (i, s) in specs.iter().enumerate() {
            if s.requires.contains(&specs[p].name) && found.insert(i) {
                todo.push(i);
            }
        }
    }
    found
}

/// Steps a later run applied on top of the run's own: a later step of the same plugin, or
/// any step of a plugin that requires it. Reverting under them would pull away what they
/// were applied on.
fn built_on_later(
    specs: &[PluginSpec],
    ledger: &[LedgerEntry],
    run: i64,
    steps: &[(PendingStep, &LedgerEntry)],
) -> Vec<String> {
    let mut problems = Vec::new();
    let later = ledger
        .iter()
        .filter(|e| e.run_id.is_some_and(|r| r > run))
        .filter_map(|e| locate(specs, e).ok().map(|p| (p, e)));
    for (lp, le) in later {
        let on_top = steps.iter().any(|(p, _)| {
            (lp.plugin == p.plugin && lp.step > p.step)
                || dependants(specs, p.plugin).contains(&lp.plugin)
        });
        if on_top {
            let later = le.run_id.unwrap_or_default();
            problems.push(format!(
                "step `{}` of plugin `{}` was applied on top of run {run}'s steps by a later run, {later}; revert run {later} first",
                le.step_id, le.plugin
            ));
        }
    }
    problems
}
