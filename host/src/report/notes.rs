//! The one-line confirmations of commands that change one thing: what `init`, `tenant`,
//! `pin`, `wait`, `baseline`, `repair` and `restore` did, on stdout.

use std::path::Path;

use crate::control::{AdoptMode, Adopted, Ensured};
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
pub fn tenant_ensured(schema: &SchemaName, ensured: Ensured, role: &str, changed: &[String]) {
    match ensured {
        Ensured::Created => crate::outln!("tenant `{schema}` created (role `{role}`)"),
        Ensured::Existed if changed.is_empty() => {
            crate::outln!("tenant `{schema}` already exists (role `{role}`); nothing changed")
        }
        Ensured::Existed => crate::outln!(
            "tenant `{schema}` already exists (role `{role}`); changed {}",
            changed.join(", ")
        ),
    }
}

/// `wasmig tenant label` changed these tenants.
pub fn labelled(schemas: &[SchemaName], set: &crate::labels::Labels, remove: &[String]) {
    let mut what = vec![];
    if !set.is_empty() {
        what.push(format!("set {}", crate::labels::display(set)));
    }
    if !remove.is_empty() {
        what.push(format!("removed {}", remove.join(",")));
    }
    crate::outln!("{} tenant(s) labelled: {}", schemas.len(), what.join("; "));
}

/// `migrate` runs fewer workers than asked, to fit the server's connection limits.
pub fn jobs_lowered(wanted: usize, fit: usize, sessions: usize, why: &str) {
    crate::errln!(
        "note: running {fit} job(s) instead of {wanted}, which would open more sessions than the server accepts ({why}); {fit} job(s) open at most {sessions}"
    );
}

/// A `--where` picked no tenant.
pub fn no_tenant_matches(selector: &crate::labels::Selector) {
    crate::errln!(
        "no tenant matches --where `{selector}` (see the labels with `wasmig tenant list`)"
    );
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
pub fn nothing_to_revert(schemas: &[crate::control::ManagedSchema]) {
    match schemas {
        [one] => crate::outln!("{}: nothing to revert", one.schema),
        many => crate::outln!("nothing to revert in {} schema(s)", many.len()),
    }
}

/// Why `wasmig revert` refused, every reason in every schema; nothing was changed.
pub fn revert_refused(problems: &[(SchemaName, String)]) {
    for (schema, why) in problems {
        crate::errln!("error: schema `{schema}`: {why}");
    }
    let schemas: std::collections::BTreeSet<&SchemaName> =
        problems.iter().map(|(s, _)| s).collect();
    crate::errln!(
        "nothing was reverted: {} problem(s) in {} schema(s); fix them, or narrow the revert with --schema or --where",
        problems.len(),
        schemas.len()
    );
}

/// What a revert over many schemas came to: `schemas` reverted whole, `left` not reached
/// (it stops at the first schema that fails, or at a signal).
pub fn reverted(run_id: i64, steps: usize, schemas: usize, left: usize) {
    crate::outln!(
        "run {run_id}: reverted {steps} step(s) in {schemas} schema(s){}",
        if left > 0 {
            format!(
                "; stopped with {left} schema(s) not reverted: fix the cause and run the same revert again for the rest"
            )
        } else {
            String::new()
        }
    );
}

/// What `wasmig baseline` recorded in one schema.
pub fn baseline_done(
    schema: &SchemaName,
    what: &crate::ops::baseline::BaselineWhat,
    b: &crate::ops::baseline::SchemaBaseline,
) {
    use crate::ops::baseline::BaselineWhat;
    let list = |steps: &[crate::plan::StepRef]| {
        steps
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match what {
        BaselineWhat::Through { plugin, to } => crate::outln!(
            "{schema}: recorded {} step(s) of `{plugin}` through `{to}` as applied without running them ({} already recorded)",
            b.added,
            b.already
        ),
        BaselineWhat::FromDjango { .. } => {
            crate::outln!(
                "{schema}: recorded {} step(s) that django_migrations lists as applied, without running them ({} already recorded); {} pending",
                b.added,
                b.already,
                b.pending.len()
            );
            if !b.pending.is_empty() {
                crate::outln!(
                    "  pending (Django never applied them here): {}",
                    list(&b.pending)
                );
            }
            if !b.undeclared.is_empty() {
                crate::outln!(
                    "  recorded by Django but declared by no loaded plugin (left alone): {}",
                    crate::text::inert(&list(&b.undeclared), 2000)
                );
            }
        }
    }
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

/// What `tenant adopt` did with one schema (refusals on stderr).
pub fn adopted(p: &super::Progress, schema: &SchemaName, adopted: &Adopted) {
    match adopted {
        Adopted::Done {
            role,
            registered,
            transferred,
            changed,
        } => p.out(&format!(
            "{schema}: adopted{} (role `{role}`; {} object(s) given to it){}",
            if *registered { "" } else { " already" },
            transferred.len(),
            if changed.is_empty() {
                String::new()
            } else {
                format!("; changed {}", changed.join(", "))
            }
        )),
        Adopted::Planned {
            role,
            register,
            transfer,
        } => {
            let mut lines = vec![format!(
                "{schema}: would {}give {} object(s) to role `{role}`",
                if *register {
                    "create role and registry row, and "
                } else {
                    ""
                },
                transfer.len()
            )];
            // Object names are the schema's own: whoever could create objects there chose
            // them, so they are shown inert.
            lines.extend(
                transfer
                    .iter()
                    .map(|o| format!("  {}", crate::text::inert(o, 400))),
            );
            p.out(&lines.join("\n"));
        }
        Adopted::Refused { objects } => {
            let mut lines = vec![format!(
                "error: schema `{schema}` was not adopted (nothing in it changed): {} object(s) cannot be given to its role",
                objects.len()
            )];
            lines.extend(
                objects
                    .iter()
                    .map(|o| format!("  {}", crate::text::inert(o, 400))),
            );
            p.err(&lines.join("\n"));
        }
    }
}

/// After `tenant adopt`: objects of an adopted schema still owned by another role than its
/// own (created while it was being adopted, say).
pub fn adoption_leftover(schema: &str, role: &str, objects: &[String]) {
    crate::errln!(
        "error: schema `{schema}`: {} object(s) are still not owned by its role `{role}` (created while it was being adopted?); run `wasmig tenant adopt {schema}` again:",
        objects.len()
    );
    for o in objects {
        crate::errln!("  {}", crate::text::inert(o, 400));
    }
}

/// `tenant adopt` finished: how many schemas were taken over and refused (and, after a
/// signal, how many were not reached).
pub fn adopt_summary(total: usize, refused: usize, not_reached: usize, mode: AdoptMode) {
    let done = total.saturating_sub(refused + not_reached);
    let not_reached = if not_reached > 0 {
        format!("; {not_reached} not reached (stopped by a signal; run again to go on)")
    } else {
        String::new()
    };
    match mode {
        AdoptMode::Apply => {
            crate::outln!("adopt: {done} schema(s) adopted, {refused} refused{not_reached}")
        }
        AdoptMode::DryRun => crate::outln!(
            "adopt (dry run): {done} schema(s) can be adopted, {refused} would be refused{not_reached}; nothing was changed"
        ),
    }
}

/// `wasmig new` wrote a crate.
pub fn scaffolded<'a>(name: &str, root: &Path, files: impl Iterator<Item = &'a str>) {
    crate::outln!("created plugin crate `{name}` in {}:", root.display());
    for f in files {
        crate::outln!("  {f}");
    }
    crate::outln!(
        "next: add steps as sql/NNNN_name.sql, then `wasmig build {}` (needs `rustup target add wasm32-wasip2`)",
        root.display()
    );
}

/// `wasmig build` put a component into the plugins directory.
pub fn built(spec: &crate::plan::PluginSpec, size: u64, dest: &Path) {
    crate::outln!(
        "built {} {} ({} step(s), {size} bytes) -> {}",
        spec.name,
        crate::text::inert(&spec.version, 64),
        spec.steps.len(),
        dest.display()
    );
}

/// `wasmig build` found another file that looks like the same plugin's component.
pub fn stale_component(file: &Path, name: &str) {
    crate::errln!(
        "warning: `{}` looks like another component of plugin `{name}` (cargo's file name); remove it, or every command will find the plugin twice",
        file.display()
    );
}

/// `init --tenant-app-roles`: every tenant has an application role of its own; `given` of them
/// got theirs now.
pub fn tenant_app_roles_on(app: &str, given: usize) {
    crate::outln!(
        "tenant application roles on: `{app}` may SET ROLE to each tenant's own (wasmig_api.use_tenant); {given} tenant(s) got theirs now"
    );
}

/// `resolve`: one schema's failures marked resolved.
pub fn resolved(schema: &SchemaName, count: u64) {
    crate::outln!("{schema}: {count} failure(s) resolved");
}

/// `resolve`: what the run did.
pub fn resolved_total(run_id: i64, count: u64, schemas: usize) {
    crate::outln!("run {run_id}: {count} failure(s) resolved in {schemas} schema(s)");
}

/// After `repair`: it changed the ledger, not the schemas, which may still differ from the
/// ones that applied the step as it is now.
pub fn repair_changes_the_record_only(schemas: &[&str]) {
    crate::errln!(
        "note: repair changed only the record of the step in {} schema(s), not the schemas: one that applied the step's earlier text still has what that text made. Compare every tenant at the same ledger state with `wasmig verify --structure`",
        schemas.len()
    );
}

/// `hold`: one schema held (or its hold's reason changed).
pub fn held(schema: &SchemaName, plugin: Option<&str>, new: bool) {
    let what = plugin.map_or_else(String::new, |p| format!(" (plugin `{p}`)"));
    if new {
        crate::outln!("{schema}{what}: held");
    } else {
        crate::outln!("{schema}{what}: already held; the reason is updated");
    }
}

/// `release`: one schema's holds released.
pub fn released(schema: &SchemaName, count: u64) {
    if count == 0 {
        crate::outln!("{schema}: not held; nothing to release");
    } else {
        crate::outln!("{schema}: {count} hold(s) released");
    }
}

/// After `restore` or `revert` without `--hold`: what was rolled back comes back with the
/// next run that applies steps, unless it is held.
pub fn rolled_back_not_held(schemas: &[&str]) {
    let shown = crate::text::inert(&schemas.join(" --schema "), 300);
    crate::errln!(
        "note: the next `wasmig migrate` or `wasmig verify --fix` applies again what was rolled back in {} schema(s); to keep them where they are: `wasmig hold --schema {shown} --reason TEXT` (or pass --hold REASON)",
        schemas.len()
    );
}

/// Before a run: the schemas whose steps wait on an operator's hold (`schemas`: each with how
/// many steps wait), with the holds' reasons. Nothing when none.
pub fn held_back<'a>(schemas: impl Iterator<Item = (&'a str, usize)>, holds: &[crate::plan::Hold]) {
    let schemas: Vec<(&str, usize)> = schemas.collect();
    if schemas.is_empty() {
        return;
    }
    let steps: usize = schemas.iter().map(|(_, n)| n).sum();
    let shown: Vec<String> = schemas
        .iter()
        .take(5)
        .map(|(s, _)| {
            let why: Vec<&str> = holds
                .iter()
                .filter(|h| h.schema == *s)
                .map(|h| h.reason.as_str())
                .collect();
            format!("{s} ({})", crate::text::inert(&why.join("; "), 200))
        })
        .collect();
    let more = match schemas.len().saturating_sub(5) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    crate::errln!(
        "held: {} schema(s), {steps} step(s) not applied: {}{more}; `wasmig release --schema S` lets them run",
        schemas.len(),
        shown.join(", ")
    );
}

/// After a run with `--backup-keep-days`: how many old dumps went.
pub fn backups_pruned(dir: &Path, count: usize, days: u32) {
    if count > 0 {
        crate::errln!(
            "backups: {count} dump(s) older than {days} day(s) removed from {} (the newest of each schema is kept)",
            dir.display()
        );
    }
}
