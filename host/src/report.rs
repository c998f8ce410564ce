//! Output: progress lines, run summaries, plans and status, as text for people or JSON for
//! machines. Nothing here decides anything.

use std::time::Duration;

use serde::Serialize;

use crate::control::ManagedSchema;
use crate::exec::{Outcome, SchemaReport};
use crate::plan::{Drift, PluginSpec, SchemaPlan, Scope, Target};

/// Serialises a measured float with at most three decimals: `3.6628`, not
/// `3.662799999999999` (binary noise no reader wants, and that hides the real precision).
pub fn round3<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((v * 1000.0).round() / 1000.0)
}

/// [`round3`] for an optional value.
pub fn round3_opt<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => round3(v, s),
        None => s.serialize_none(),
    }
}

/// Steps applied in one schema report.
pub fn applied_steps(r: &SchemaReport) -> usize {
    match &r.outcome {
        Outcome::Applied { steps } => steps.len(),
        Outcome::Failed { applied, .. } | Outcome::Interrupted { applied, .. } => applied.len(),
        _ => 0,
    }
}

fn sqlstate(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (SQLSTATE {s})"))
        .unwrap_or_default()
}

/// The line printed when a schema finishes.
pub fn schema_line(r: &SchemaReport) -> String {
    let ms = r.duration_ms;
    match &r.outcome {
        Outcome::UpToDate => format!("{}: up to date", r.schema),
        Outcome::Applied { steps } => format!(
            "{}: applied {} step(s) in {ms:.0} ms",
            r.schema,
            steps.len()
        ),
        Outcome::Failed {
            applied,
            plugin,
            step,
            sqlstate: code,
            message,
        } => format!(
            // The first line only: the whole error (caret, DETAIL, HINT, what a panicking
            // plugin wrote) is printed once, in the run's summary.
            "{}: FAILED at {plugin}/{step} after applying {} step(s): {}{}",
            r.schema,
            applied.len(),
            first_line(message),
            sqlstate(code)
        ),
        Outcome::Drift { drift } => format!(
            "{}: REFUSED, {} applied step(s) changed (drift)",
            r.schema,
            drift.len()
        ),
        Outcome::Forged { rows } => format!(
            "{}: REFUSED, {} ledger row(s) not written by wasmig",
            r.schema,
            rows.len()
        ),
        Outcome::Blocked { reason } => format!("{}: BLOCKED: {reason}", r.schema),
        Outcome::Skipped { reason } => format!("{}: skipped: {reason}", r.schema),
        Outcome::Error { message } => format!("{}: ERROR: {message}", r.schema),
        Outcome::Interrupted { applied, signal } if applied.is_empty() => {
            format!("{}: not started ({signal})", r.schema)
        }
        Outcome::Interrupted { applied, signal } => format!(
            "{}: INTERRUPTED ({signal}) after applying {} step(s); the rest were not started",
            r.schema,
            applied.len()
        ),
    }
}

/// A step failure's first line: its message, without the caret, DETAIL and HINT lines, and
/// cut before what a failing plugin wrote on stderr.
fn first_line(message: &str) -> &str {
    let line = message.lines().next().unwrap_or("");
    line.split_once("; the plugin wrote: ")
        .map_or(line, |(head, _)| head)
}

fn drift_line(schema: &impl std::fmt::Display, d: &Drift) -> String {
    format!(
        "schema `{schema}`, plugin `{}`, step `{}`: applied step changed (recorded checksum {}, current {}); restore the step as it was applied and add a new step instead",
        d.plugin, d.step, d.recorded, d.current
    )
}

fn forged_line(schema: &impl std::fmt::Display, row: &str) -> String {
    format!(
        "schema `{schema}`: ledger row `{row}` was not written by wasmig (its MAC does not verify); the schema is refused until a person removes or repairs that row"
    )
}

#[derive(Serialize)]
struct RunJson<'a> {
    run_id: i64,
    #[serde(serialize_with = "crate::report::round3")]
    duration_ms: f64,
    schemas: usize,
    applied_steps: usize,
    problems: usize,
    results: &'a [SchemaReport],
}

/// The end-of-run summary; lists every problem with its cause.
pub fn print_run_summary(run_id: i64, reports: &[SchemaReport], took: Duration, json: bool) {
    let applied: usize = reports.iter().map(applied_steps).sum();
    let problems: Vec<&SchemaReport> = reports.iter().filter(|r| r.outcome.is_problem()).collect();
    if json {
        let j = RunJson {
            run_id,
            duration_ms: took.as_secs_f64() * 1000.0,
            schemas: reports.len(),
            applied_steps: applied,
            problems: problems.len(),
            results: reports,
        };
        crate::outln!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
        return;
    }
    let cut: Vec<&SchemaReport> = problems
        .iter()
        .copied()
        .filter(|r| matches!(r.outcome, Outcome::Interrupted { .. }))
        .collect();
    crate::outln!(
        "run {run_id}: {} schema(s), {applied} step(s) applied, {} problem(s), {:.2}s{}",
        reports.len(),
        problems.len() - cut.len(),
        took.as_secs_f64(),
        crate::interrupt::received()
            .map(|sig| format!(
                "; INTERRUPTED by {}: {} schema(s) not finished",
                sig.name(),
                cut.len()
            ))
            .unwrap_or_default()
    );
    if !cut.is_empty() {
        // One line however many: each schema's own line said which it was.
        const SHOWN: usize = 10;
        let names: Vec<String> = cut
            .iter()
            .take(SHOWN)
            .map(|r| r.schema.to_string())
            .collect();
        crate::errln!(
            "error: the run was interrupted before {} schema(s) were done: {}{}; their steps that ran are committed and recorded, run `wasmig migrate` again to apply the rest",
            cut.len(),
            names.join(", "),
            if cut.len() > SHOWN {
                format!(" and {} more", cut.len() - SHOWN)
            } else {
                String::new()
            }
        );
    }
    for r in problems {
        match &r.outcome {
            Outcome::Failed {
                plugin,
                step,
                sqlstate: code,
                message,
                ..
            } => crate::errln!(
                "error: schema `{}`, plugin `{plugin}`, step `{step}` failed and was rolled back: {}{}{}",
                r.schema,
                message.lines().next().unwrap_or(""),
                sqlstate(code),
                message
                    .split_once('\n')
                    .map(|(_, rest)| format!("\n{rest}"))
                    .unwrap_or_default()
            ),
            Outcome::Drift { drift } => {
                for d in drift {
                    crate::errln!("error: {}", drift_line(&r.schema, d));
                }
            }
            Outcome::Forged { rows } => {
                for row in rows {
                    crate::errln!("error: {}", forged_line(&r.schema, row));
                }
            }
            Outcome::Blocked { reason } => crate::errln!("error: schema `{}`: {reason}", r.schema),
            Outcome::Skipped { reason } => {
                crate::errln!("error: schema `{}` skipped: {reason}", r.schema)
            }
            Outcome::Error { message } => crate::errln!("error: schema `{}`: {message}", r.schema),
            Outcome::UpToDate | Outcome::Applied { .. } | Outcome::Interrupted { .. } => {}
        }
    }
}

#[derive(Serialize)]
struct PlannedStepJson<'a> {
    plugin: &'a str,
    step: &'a str,
    description: &'a str,
    transactional: bool,
}

#[derive(Serialize)]
struct PlanJson<'a> {
    schema: &'a str,
    scope: Scope,
    pending: Vec<PlannedStepJson<'a>>,
    drift: &'a [Drift],
    blocked: Option<&'a str>,
}

/// `migrate --dry-run` output.
pub fn print_plan(specs: &[PluginSpec], plans: &[(&Target, SchemaPlan)], json: bool) {
    if json {
        let out: Vec<PlanJson<'_>> = plans
            .iter()
            .map(|(t, p)| PlanJson {
                schema: t.schema.as_str(),
                scope: t.scope,
                pending: p
                    .pending
                    .iter()
                    .map(|ps| {
                        let pl = &specs[ps.plugin];
                        let st = &pl.steps[ps.step];
                        PlannedStepJson {
                            plugin: &pl.name,
                            step: &st.id,
                            description: &st.description,
                            transactional: st.transactional,
                        }
                    })
                    .collect(),
                drift: &p.drift,
                blocked: p.blocked.as_deref(),
            })
            .collect();
        crate::outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    let mut total = 0;
    for (t, p) in plans {
        for f in &p.forged {
            crate::outln!("{}: would refuse: {}", t.schema, forged_line(&t.schema, f));
        }
        if !p.forged.is_empty() {
            continue;
        }
        if !p.drift.is_empty() {
            for d in &p.drift {
                crate::outln!("{}: would refuse: {}", t.schema, drift_line(&t.schema, d));
            }
            continue;
        }
        if let Some(b) = &p.blocked {
            crate::outln!("{}: would refuse: {b}", t.schema);
            continue;
        }
        if p.pending.is_empty() {
            crate::outln!("{}: up to date", t.schema);
            continue;
        }
        crate::outln!("{}: {} pending step(s)", t.schema, p.pending.len());
        for ps in &p.pending {
            let pl = &specs[ps.plugin];
            let st = &pl.steps[ps.step];
            crate::outln!("  {}/{}  {}", pl.name, st.id, st.description);
        }
        total += p.pending.len();
    }
    crate::outln!("dry run: {total} step(s) would be applied; nothing was changed");
}

/// One row of `wasmig status`.
#[derive(Debug, Serialize)]
pub struct SchemaStatus {
    /// Schema.
    pub schema: String,
    /// Scope.
    pub scope: Scope,
    /// Tenant domain.
    pub domain: Option<String>,
    /// Applied steps with matching checksums.
    pub applied: usize,
    /// Pending `plugin/step`.
    pub pending: Vec<String>,
    /// Drifted steps.
    pub drift: Vec<Drift>,
    /// Ledger rows no loaded plugin declares.
    pub unknown: Vec<String>,
    /// Ledger rows not written by wasmig (MAC does not verify).
    pub forged: Vec<String>,
    /// Last failure not since fixed: `plugin/step: message`.
    pub last_failure: Option<String>,
}

impl SchemaStatus {
    /// Builds a row from a plan.
    pub fn new(
        m: &ManagedSchema,
        specs: &[PluginSpec],
        plan: &SchemaPlan,
        failure: Option<&crate::control::StepFailureRecord>,
    ) -> Self {
        SchemaStatus {
            schema: m.schema.to_string(),
            scope: m.scope,
            domain: m.domain.clone(),
            applied: plan.applied,
            pending: plan
                .pending
                .iter()
                .map(|p| {
                    format!(
                        "{}/{}",
                        specs[p.plugin].name, specs[p.plugin].steps[p.step].id
                    )
                })
                .collect(),
            drift: plan.drift.clone(),
            unknown: plan
                .unknown
                .iter()
                .map(|(p, s)| format!("{p}/{s}"))
                .collect(),
            forged: plan.forged.clone(),
            // Stored failures may predate the cap, or come from another tool: made inert here too.
            // One line: the message (the caret, DETAIL and HINT stay in `wasmig.failure`).
            last_failure: failure.map(|f| {
                format!(
                    "{}/{}: {}{}",
                    f.plugin,
                    f.step,
                    crate::text::inert(
                        f.message.lines().next().unwrap_or(""),
                        crate::text::MAX_ERROR_CHARS
                    ),
                    sqlstate(&f.sqlstate.as_ref().map(|c| crate::text::inert(c, 5)))
                )
            }),
        }
    }
}

#[derive(Serialize)]
struct StatusJson<'a> {
    plugins: Vec<PluginJson<'a>>,
    schemas: &'a [SchemaStatus],
}

#[derive(Serialize)]
struct PluginJson<'a> {
    name: &'a str,
    version: &'a str,
    kind: crate::plan::Kind,
    scope: Scope,
    steps: usize,
    artifact_blake3: &'a str,
}

/// `wasmig status` output.
pub fn print_status(specs: &[PluginSpec], rows: &[SchemaStatus], json: bool) {
    if json {
        let j = StatusJson {
            plugins: specs
                .iter()
                .map(|p| PluginJson {
                    name: &p.name,
                    version: &p.version,
                    kind: p.kind,
                    scope: p.scope,
                    steps: p.steps.len(),
                    artifact_blake3: &p.artifact_checksum,
                })
                .collect(),
            schemas: rows,
        };
        crate::outln!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
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
        let scope = match r.scope {
            Scope::Shared => "shared",
            Scope::Tenant => "tenant",
        };
        let pending = if r.drift.is_empty() {
            r.pending.len()
        } else {
            0
        };
        crate::outln!(
            "{:<28} {:<7} {:>7} {:>7} {:>7} {:>7}",
            r.schema,
            scope,
            r.applied,
            pending,
            r.drift.len(),
            r.unknown.len()
        );
        for d in &r.drift {
            crate::outln!("  drift: {}", drift_line(&r.schema, d));
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
    }
}

#[derive(Serialize)]
struct VerifyJson<'a> {
    totals: VerifyTotals,
    tenants: &'a [SchemaStatus],
}

#[derive(Serialize)]
struct VerifyTotals {
    tenants: usize,
    ok: usize,
    with_issues: usize,
}

impl SchemaStatus {
    /// Nothing pending, drifted, forged or failed.
    pub fn is_ok(&self) -> bool {
        self.pending.is_empty()
            && self.drift.is_empty()
            && self.forged.is_empty()
            && self.last_failure.is_none()
    }
}

/// `wasmig verify` output; returns whether every tenant is fully applied.
pub fn print_verify(rows: &[SchemaStatus], json: bool, quiet: bool) -> bool {
    let ok = rows.iter().filter(|r| r.is_ok()).count();
    let totals = VerifyTotals {
        tenants: rows.len(),
        ok,
        with_issues: rows.len() - ok,
    };
    let all_ok = totals.with_issues == 0;
    if json {
        let j = VerifyJson {
            totals,
            tenants: rows,
        };
        crate::outln!("{}", serde_json::to_string_pretty(&j).unwrap_or_default());
        return all_ok;
    }
    if !quiet {
        for r in rows.iter().filter(|r| !r.is_ok()) {
            let mut parts = Vec::new();
            if !r.pending.is_empty() {
                parts.push(format!(
                    "{} pending ({})",
                    r.pending.len(),
                    r.pending.join(", ")
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
            crate::outln!("{}: {}", r.schema, parts.join("; "));
        }
    }
    crate::outln!(
        "{} tenant(s): {} ok, {} with issues",
        totals.tenants,
        totals.ok,
        totals.with_issues
    );
    all_ok
}
