//! What `status` and `verify` print: a row per schema (applied, pending, drifted, unknown,
//! forged steps and the last unresolved failure), as a table or as the `wasmig.status/1` and
//! `wasmig.verify/1` documents.

use serde::Serialize;

use super::run::{drift_line, forged_line};
use super::{FailureJson, Output, print_document, sqlstate_note};
use crate::control::{ManagedSchema, StepFailureRecord};
use crate::plan::{Drift, Hold, PluginSpec, SchemaPlan, Scope, StepRef};

/// The last failure of a schema not since fixed, shown on one line.
#[derive(Debug, Clone)]
pub struct LastFailure {
    /// The failed step.
    pub step: StepRef,
    /// Its SQLSTATE, if it had one.
    pub sqlstate: Option<String>,
    /// The error's first line (the caret, DETAIL and HINT stay in `wasmig.failure`).
    pub message: String,
}

impl std::fmt::Display for LastFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}{}",
            self.step,
            self.message,
            sqlstate_note(self.sqlstate.as_deref())
        )
    }
}

/// One row of `wasmig status` / `verify`.
#[derive(Debug, Clone)]
pub struct SchemaStatus {
    /// Schema.
    pub schema: String,
    /// Scope.
    pub scope: Scope,
    /// Tenant domain.
    pub domain: Option<String>,
    /// Applied steps with matching checksums.
    pub applied_count: usize,
    /// Pending steps, in order.
    pub pending: Vec<StepRef>,
    /// Of those, repeatable seed steps whose content changed: "changed, will re-run".
    pub rerun: Vec<StepRef>,
    /// Drifted steps.
    pub drift: Vec<Drift>,
    /// Ledger rows no loaded plugin declares.
    pub unknown: Vec<StepRef>,
    /// Ledger rows not written by wasmig (MAC does not verify).
    pub forged: Vec<StepRef>,
    /// Last failure not since fixed.
    pub last_failure: Option<LastFailure>,
    /// Operators' holds on this schema.
    pub holds: Vec<Hold>,
    /// Steps not pending because a hold keeps them (not a problem; shown as held).
    pub held: Vec<StepRef>,
    /// Per plugin of the schema's scope, its last applied step (`None`: none yet), as the
    /// plan of every plugin says (a drifted step counts as applied).
    pub at: Vec<(String, Option<String>)>,
}

impl SchemaStatus {
    /// Builds a row from a plan.
    pub fn new(
        m: &ManagedSchema,
        specs: &[PluginSpec],
        plan: &SchemaPlan,
        failure: Option<&StepFailureRecord>,
    ) -> Self {
        let inert = |t: &str, cap| crate::text::inert(t, cap);
        SchemaStatus {
            schema: m.schema.to_string(),
            scope: m.scope,
            domain: m.domain.clone(),
            applied_count: plan.applied,
            pending: plan
                .pending
                .iter()
                .map(|p| StepRef::new(&specs[p.plugin].name, &specs[p.plugin].steps[p.step].id))
                .collect(),
            held: plan
                .on_hold
                .iter()
                .map(|p| StepRef::new(&specs[p.plugin].name, &specs[p.plugin].steps[p.step].id))
                .collect(),
            holds: Vec::new(),
            at: specs
                .iter()
                .enumerate()
                .filter(|(_, p)| p.scope == m.scope)
                .map(|(pi, p)| {
                    let waiting = plan
                        .pending
                        .iter()
                        .chain(&plan.on_hold)
                        .filter(|s| s.plugin == pi)
                        .map(|s| s.step)
                        .min();
                    let last = match waiting {
                        Some(0) => None,
                        Some(i) => Some(i - 1),
                        None => p.steps.len().checked_sub(1),
                    };
                    (p.name.clone(), last.map(|i| p.steps[i].id.clone()))
                })
                .collect(),
            rerun: plan
                .reruns
                .iter()
                .map(|p| StepRef::new(&specs[p.plugin].name, &specs[p.plugin].steps[p.step].id))
                .collect(),
            drift: plan.drift.clone(),
            unknown: plan.unknown.clone(),
            forged: plan.forged.clone(),
            // Stored failures may predate the cap, or come from another tool: made inert
            // here too.
            last_failure: failure.map(|f| LastFailure {
                step: StepRef::new(&inert(&f.plugin, 200), &inert(&f.step, 200)),
                sqlstate: f.sqlstate.as_deref().map(|c| inert(c, 5)),
                message: inert(
                    f.message.lines().next().unwrap_or(""),
                    crate::text::MAX_ERROR_CHARS,
                ),
            }),
        }
    }

    /// The row as if only `plugins` were loaded: pending, held, drifted, forged steps and the
    /// last failure of the others left out.
    pub fn only_plugins(&self, plugins: &[String]) -> SchemaStatus {
        let keep = |p: &str| plugins.iter().any(|n| n == p);
        let steps = |v: &[StepRef]| -> Vec<StepRef> {
            v.iter().filter(|s| keep(&s.plugin)).cloned().collect()
        };
        SchemaStatus {
            pending: steps(&self.pending),
            rerun: steps(&self.rerun),
            held: steps(&self.held),
            forged: steps(&self.forged),
            unknown: steps(&self.unknown),
            drift: self
                .drift
                .iter()
                .filter(|d| keep(&d.plugin))
                .cloned()
                .collect(),
            last_failure: self.last_failure.clone().filter(|f| keep(&f.step.plugin)),
            holds: self
                .holds
                .iter()
                .filter(|h| h.plugin.as_deref().is_none_or(keep))
                .cloned()
                .collect(),
            at: self.at.iter().filter(|(p, _)| keep(p)).cloned().collect(),
            ..self.clone()
        }
    }

    /// The last applied step of `plugin` here (`None`: none yet, or not of this scope).
    pub fn last_applied(&self, plugin: &str) -> Option<&str> {
        self.at
            .iter()
            .find(|(p, _)| p == plugin)
            .and_then(|(_, s)| s.as_deref())
    }

    /// With the holds on this schema.
    pub fn with_holds<'a>(mut self, holds: impl Iterator<Item = &'a Hold>) -> Self {
        self.holds = holds.cloned().collect();
        self
    }

    /// The holds, in words: `reason (since …)` per hold, plugin named when it is one.
    pub fn holds_text(&self) -> String {
        self.holds
            .iter()
            .map(|h| match &h.plugin {
                Some(p) => format!("plugin `{p}` held: {} (since {})", h.reason, h.since),
                None => format!("held: {} (since {})", h.reason, h.since),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Nothing pending, drifted, forged or failed (steps an operator holds are not pending).
    pub fn is_ok(&self) -> bool {
        self.pending.is_empty()
            && self.drift.is_empty()
            && self.forged.is_empty()
            && self.last_failure.is_none()
    }
}

/// A schema row in `wasmig.status/1` and `wasmig.verify/1`.
#[derive(Serialize)]
struct SchemaStatusJson<'a> {
    schema: &'a str,
    scope: Scope,
    domain: Option<&'a str>,
    applied_count: usize,
    pending: &'a [StepRef],
    /// Of `pending`: repeatable seed steps that changed and will re-run.
    rerun: &'a [StepRef],
    drift: &'a [Drift],
    unknown: &'a [StepRef],
    forged: &'a [StepRef],
    last_failure: Option<FailureJson<'a>>,
    /// Operators' holds on the schema (`wasmig hold`).
    holds: &'a [Hold],
    /// Steps a hold keeps from running (not in `pending`).
    held: &'a [StepRef],
}

impl<'a> SchemaStatusJson<'a> {
    fn new(r: &'a SchemaStatus) -> Self {
        SchemaStatusJson {
            schema: &r.schema,
            scope: r.scope,
            domain: r.domain.as_deref(),
            applied_count: r.applied_count,
            pending: &r.pending,
            rerun: &r.rerun,
            drift: &r.drift,
            unknown: &r.unknown,
            forged: &r.forged,
            last_failure: r.last_failure.as_ref().map(|f| FailureJson {
                plugin: &f.step.plugin,
                step: &f.step.step,
                sqlstate: f.sqlstate.as_deref(),
                message: &f.message,
            }),
            holds: &r.holds,
            held: &r.held,
        }
    }
}

#[derive(Serialize)]
struct PluginJson<'a> {
    plugin: &'a str,
    version: &'a str,
    kind: crate::plan::Kind,
    scope: Scope,
    step_count: usize,
    artifact_blake3: &'a str,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    plugins: Vec<PluginJson<'a>>,
    summary: &'a super::Summary,
    /// Every schema picked (absent when only the summary was asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    schemas: Option<Vec<SchemaStatusJson<'a>>>,
}

/// The `wasmig.status/1` document: the plugins, the summary and, when `whole`, every row.
pub fn status_json(
    specs: &[PluginSpec],
    rows: &[SchemaStatus],
    summary: &super::Summary,
    whole: bool,
) -> String {
    let j = StatusJson {
        plugins: specs
            .iter()
            .map(|p| PluginJson {
                plugin: &p.name,
                version: &p.version,
                kind: p.kind,
                scope: p.scope,
                step_count: p.steps.len(),
                artifact_blake3: &p.artifact_checksum,
            })
            .collect(),
        summary,
        schemas: whole.then(|| rows.iter().map(SchemaStatusJson::new).collect()),
    };
    super::document("wasmig.status/1", j)
}

/// `wasmig status` output: a row per schema when `whole`, else the summary.
pub fn print_status(
    specs: &[PluginSpec],
    rows: &[SchemaStatus],
    summary: &super::Summary,
    whole: bool,
    out: Output,
) {
    if out.json() {
        crate::outln!("{}", status_json(specs, rows, summary, whole));
        return;
    }
    if !whole {
        super::summary::print_summary(summary);
        return;
    }
    crate::outln!(
        "{:<28} {:<7} {:>7} {:>7} {:>7} {:>7}",
        "SCHEMA",
        "SCOPE",
        "APPLIED",
        "PENDING",
        "DRIFTED",
        "UNKNOWN"
    );
    for r in rows {
        let scope = r.scope.as_str();
        let pending = if r.drift.is_empty() {
            r.pending.len()
        } else {
            0
        };
        crate::outln!(
            "{:<28} {:<7} {:>7} {:>7} {:>7} {:>7}",
            r.schema,
            scope,
            r.applied_count,
            pending,
            r.drift.len(),
            r.unknown.len()
        );
        for d in &r.drift {
            crate::outln!("  drift: {}", drift_line(&r.schema, d));
        }
        for st in &r.rerun {
            crate::outln!(
                "  {st}: changed, will re-run (a repeatable seed step; `wasmig diff --schema {}` shows what changed)",
                r.schema
            );
        }
        for f in &r.forged {
            crate::outln!("  {}", forged_line(&r.schema, f));
        }
        for u in &r.unknown {
            crate::outln!(
                "  unknown ledger row: {u} (no loaded plugin declares it; left in place)"
            );
        }
        if let Some(f) = &r.last_failure {
            crate::outln!("  last failure: {f}");
        }
        if !r.holds.is_empty() {
            crate::outln!("  {}; {} step(s) waiting", r.holds_text(), r.held.len());
        }
    }
}

#[derive(Serialize)]
struct VerifyJson<'a> {
    tenant_count: usize,
    ok_count: usize,
    issue_count: usize,
    /// Schemas with an operator's hold (`holds` and `held` in their rows).
    held_count: usize,
    /// The shared schema, when it was verified too (absent when only tenants were asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    shared: Option<SchemaStatusJson<'a>>,
    /// Plugins the trust policy or the lock file would refuse to run.
    plugin_problems: &'a [String],
    tenants: Vec<SchemaStatusJson<'a>>,
}

/// `wasmig verify` output; returns whether every schema verified (the shared schema among
/// them, when it is in `rows`) is fully applied.
pub fn print_verify(
    rows: &[SchemaStatus],
    plugin_problems: &[String],
    out: Output,
    quiet: bool,
) -> bool {
    let shared = rows.iter().find(|r| r.scope == Scope::Shared);
    let tenants: Vec<&SchemaStatus> = rows.iter().filter(|r| r.scope == Scope::Tenant).collect();
    let ok = tenants.iter().filter(|r| r.is_ok()).count();
    let issues = tenants.len() - ok;
    let shared_ok = shared.is_none_or(|r| r.is_ok()) && plugin_problems.is_empty();
    if out.json() {
        let j = VerifyJson {
            tenant_count: tenants.len(),
            ok_count: ok,
            issue_count: issues,
            held_count: rows.iter().filter(|r| !r.holds.is_empty()).count(),
            shared: shared.map(SchemaStatusJson::new),
            plugin_problems,
            tenants: tenants.iter().map(|r| SchemaStatusJson::new(r)).collect(),
        };
        print_document("wasmig.verify/1", j);
        return issues == 0 && shared_ok;
    }
    if !quiet {
        for r in rows.iter().filter(|r| !r.is_ok()) {
            let mut parts = Vec::new();
            if !r.pending.is_empty() {
                let names: Vec<String> = r.pending.iter().map(StepRef::to_string).collect();
                parts.push(format!(
                    "{} pending ({})",
                    r.pending.len(),
                    names.join(", ")
                ));
            }
            for d in &r.drift {
                parts.push(format!("drifted {}/{}", d.plugin, d.step));
            }
            for f in &r.forged {
                parts.push(format!("forged ledger row {f}"));
            }
            if let Some(f) = &r.last_failure {
                parts.push(format!("failed {f}"));
            }
            let what = if r.scope == Scope::Shared {
                format!("shared schema {}", r.schema)
            } else {
                r.schema.clone()
            };
            crate::outln!("{what}: {}", parts.join("; "));
        }
        for r in rows.iter().filter(|r| !r.holds.is_empty()) {
            crate::outln!(
                "{}: {}; {} step(s) waiting (`wasmig release --schema {}` lets them run)",
                r.schema,
                r.holds_text(),
                r.held.len(),
                r.schema
            );
        }
    }
    for p in plugin_problems {
        crate::outln!("problem: {p}");
    }
    if let Some(r) = shared {
        crate::outln!(
            "shared schema {}: {}",
            r.schema,
            if r.is_ok() { "ok" } else { "with issues" }
        );
    }
    let held = rows.iter().filter(|r| !r.holds.is_empty()).count();
    crate::outln!(
        "{} tenant(s): {} ok, {} with issues{}",
        tenants.len(),
        ok,
        issues,
        if held > 0 {
            format!("; {held} schema(s) held")
        } else {
            String::new()
        }
    );
    issues == 0 && shared_ok
}
