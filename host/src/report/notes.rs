//! The one-line confirmations of commands that change one thing: what `init`, `tenant`,
//! `pin`, `wait`, `baseline`, `repair` and `restore` did, on stdout.

use std::path::Path;

use crate::control::Ensured;
use crate::names::SchemaName;

/// `wasmig init` finished.
pub fn init_done(shared: &SchemaName, ensured: Ensured, role: &str) {
    let what = match ensured {
        Ensured::Created => "created",
        Ensured::Existed => "already present",
    };
    crate::outln!("control schema `wasmig` ready; shared schema `{shared}` {what} (role `{role}`)");
}

/// A tenant of `tenant create` exists now.
pub fn tenant_ensured(schema: &SchemaName, ensured: Ensured, role: &str) {
    match ensured {
        Ensured::Created => crate::outln!("tenant `{schema}` created (role `{role}`)"),
        Ensured::Existed => crate::outln!("tenant `{schema}` already exists (role `{role}`)"),
    }
}

/// `wasmig tenant drop` finished.
pub fn tenant_dropped(schema: &SchemaName) {
    crate::outln!("tenant `{schema}` dropped");
}

/// `wasmig pin` recorded `new` for `plugin` (which had `old`).
pub fn pinned(plugin: &str, old: Option<&str>, new: &str) {
    match old {
        Some(o) if o == new => crate::outln!("{plugin}: unchanged {o}"),
        Some(o) => crate::outln!("{plugin}: {o} -> {new}"),
        None => crate::outln!("{plugin}: pinned {new}"),
    }
}

/// `wasmig wait`: the database answered.
pub fn reachable(database: &impl std::fmt::Display, attempts: u32, took: std::time::Duration) {
    crate::outln!(
        "{database} accepts connections (after {attempts} attempt(s), {:.1}s)",
        took.as_secs_f64()
    );
}

/// `wasmig revert` found no applied step to revert.
pub fn nothing_to_revert(schema: &SchemaName) {
    crate::outln!("{schema}: nothing to revert");
}

/// `wasmig baseline` recorded `added` of `selected` steps (the others were recorded already).
pub fn baselined(schema: &SchemaName, plugin: &str, to: &str, added: u64, selected: u64) {
    crate::outln!(
        "{schema}: recorded {added} step(s) of `{plugin}` through `{to}` as applied without running them ({} already recorded)",
        selected - added
    );
}

/// `wasmig repair` recorded checksum `new` for a step that had `old`.
pub fn repaired(schema: &SchemaName, plugin: &str, step: &str, old: &str, new: &str) {
    if old == new {
        crate::outln!(
            "{schema}: `{plugin}/{step}` already has checksum {old} (row re-authenticated)"
        );
    } else {
        crate::outln!("{schema}: `{plugin}/{step}` checksum {old} -> {new}");
    }
}

/// `wasmig restore` finished.
pub fn restored(schema: &SchemaName, file: &Path) {
    crate::outln!(
        "{schema}: restored from {} (schema and ledger rows)",
        file.display()
    );
}
