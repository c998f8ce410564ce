//! What `migrate` prints: a line per schema as it finishes, the run's summary (problems
//! with their causes on stderr), and the `--dry-run` plan; as text or as the
//! `wasmig.migrate/1` and `wasmig.plan/1` documents.

use std::time::Duration;

use serde::Serialize;

use super::{FailureJson, Output, print_document, seconds, sqlstate_note};
use crate::exec::{Outcome, SchemaReport};
use crate::plan::{Drift, PluginSpec, SchemaPlan, Scope, StepRef, Target};

/// Steps applied in one schema report.
pub fn applied_steps(r: &SchemaReport) -> usize {
    applied_steps_of(&r.outcome)
}

/// The steps an outcome applied (or, for a revert, reverted).
pub fn applied_steps_of(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Applied { steps } => steps.len(),
        Outcome::Failed { applied, .. } | Outcome::Interrupted { applied, .. } => applied.len(),
        _ => 0,
    }
}

/// The line printed when a schema finishes (with the steps tried again, if any).
pub fn schema_line(r: &SchemaReport) -> String {
    let line = outcome_line(r);
    match r.retries {
        0 => line,
        n => format!("{line} ({n} retried after lock conflicts)"),
    }
}

fn outcome_line(r: &SchemaReport) -> String {
    let ms = r.duration.as_secs_f64() * 1000.0;
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
            sqlstate_note(code.as_deref())
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

pub(super) fn drift_line(schema: &impl std::fmt::Display, d: &Drift) -> String {
    format!(
        "schema `{schema}`, plugin `{}`, step `{}`: applied step changed (recorded checksum {}, current {}); see what changed with `wasmig diff --schema {schema} --plugin {}`, then restore the step as it was applied and add a new step instead, or accept it with `wasmig repair`",
        d.plugin, d.step, d.recorded, d.current, d.plugin
    )
}

pub(super) fn forged_line(schema: &impl std::fmt::Display, row: &StepRef) -> String {
    format!(
        "schema `{schema}`: ledger row `{row}` was not written by wasmig (its MAC does not verify); the schema is refused until a person removes or repairs that row"
    )
}

/// One schema in `wasmig.migrate/1`: every field is always there (empty or null when it
/// does not apply), so a reader needs no case per outcome.
#[derive(Serialize)]
struct SchemaResultJson<'a> {
    schema: &'a str,
    scope: Scope,
    /// `up_to_date`, `applied`, `failed`, `drift`, `forged`, `blocked`, `skipped`, `error`
    /// or `interrupted`.
    outcome: &'static str,
    duration_seconds: f64,
    /// Step attempts made again after a lock conflict, a deadlock or a serialization failure.
    retry_count: u32,
    applied: &'a [StepRef],
    failure: Option<FailureJson<'a>>,
    drift: &'a [Drift],
    forged: &'a [StepRef],
    /// Why a schema was blocked, skipped, or could not be worked on.
    reason: Option<&'a str>,
    /// The signal that interrupted the run.
    signal: Option<&'a str>,
}

impl<'a> SchemaResultJson<'a> {
    fn new(r: &'a SchemaReport) -> Self {
        let mut j = SchemaResultJson {
            schema: r.schema.as_str(),
            scope: r.scope,
            outcome: r.outcome.name(),
            duration_seconds: seconds(r.duration),
            retry_count: r.retries,
            applied: &[],
            failure: None,
            drift: &[],
            forged: &[],
            reason: None,
            signal: None,
        };
        match &r.outcome {
            Outcome::UpToDate => {}
            Outcome::Applied { steps } => {
                j.applied = steps;
            }
            Outcome::Failed {
                applied,
                plugin,
                step,
                sqlstate,
                message,
            } => {
                j.applied = applied;
                j.failure = Some(FailureJson {
                    plugin,
                    step,
                    sqlstate: sqlstate.as_deref(),
                    message,
                });
            }
            Outcome::Drift { drift } => {
                j.drift = drift;
            }
            Outcome::Forged { rows } => {
                j.forged = rows;
            }
            Outcome::Blocked { reason } => {
                j.reason = Some(reason);
            }
            Outcome::Skipped { reason } => {
                j.reason = Some(reason);
            }
            Outcome::Error { message } => {
                j.reason = Some(message);
            }
            Outcome::Interrupted { applied, signal } => {
                j.applied = applied;
                j.signal = Some(signal);
            }
        }
        j
    }
}

#[derive(Serialize)]
struct RunJson<'a> {
    run_id: i64,
    duration_seconds: f64,
    schema_count: usize,
    applied_count: usize,
    problem_count: usize,
    schemas: Vec<SchemaResultJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout: Option<super::rollout::RolloutJson<'a>>,
}

/// The end-of-run summary; lists every problem with its cause.
pub fn print_run_summary(
    run_id: i64,
    reports: &[SchemaReport],
    took: Duration,
    out: Output,
    rollout: Option<&crate::rollout::RolloutSummary>,
) {
    let applied: usize = reports.iter().map(applied_steps).sum();
    let problems: Vec<&SchemaReport> = reports.iter().filter(|r| r.outcome.is_problem()).collect();
    if out.json() {
        let j = RunJson {
            run_id,
            duration_seconds: seconds(took),
            schema_count: reports.len(),
            applied_count: applied,
            problem_count: problems.len(),
            schemas: reports.iter().map(SchemaResultJson::new).collect(),
            rollout: rollout.map(super::rollout::RolloutJson::new),
        };
        print_document("wasmig.migrate/1", j);
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
    print_not_finished(&cut);
    let (alike, single) = group_failures(&problems);
    for group in &alike {
        print_failure_group(group);
    }
    for r in single {
        print_problem(r);
    }
    if let Some(r) = rollout {
        super::rollout::print_rollout(r);
    }
}

/// How many schemas of an identical failure are named; the others are counted.
const NAMED_IN_GROUP: usize = 5;

/// What makes two problems the same for the summary: a failure's plugin, step, SQLSTATE and
/// message, or the reason schemas were skipped.
#[derive(PartialEq)]
enum Alike<'a> {
    Failed(&'a str, &'a str, Option<&'a str>, &'a str),
    Skipped(&'a str),
    Blocked(&'a str),
    /// The same applied steps changed the same way (the same recorded and current checksums).
    Drift(&'a [Drift]),
}

fn alike(r: &SchemaReport) -> Option<Alike<'_>> {
    match &r.outcome {
        Outcome::Failed {
            plugin,
            step,
            sqlstate,
            message,
            ..
        } => Some(Alike::Failed(plugin, step, sqlstate.as_deref(), message)),
        Outcome::Skipped { reason } => Some(Alike::Skipped(reason)),
        Outcome::Blocked { reason } => Some(Alike::Blocked(reason)),
        Outcome::Drift { drift } => Some(Alike::Drift(drift)),
        _ => None,
    }
}

/// The problems that are identical in more than one schema (see [`Alike`]), grouped in the
/// order they were met, and every other problem.
fn group_failures<'a>(
    problems: &[&'a SchemaReport],
) -> (Vec<Vec<&'a SchemaReport>>, Vec<&'a SchemaReport>) {
    let mut groups: Vec<(Alike<'a>, Vec<&'a SchemaReport>)> = Vec::new();
    let mut single = Vec::new();
    for &r in problems {
        match alike(r) {
            Some(k) => match groups.iter_mut().find(|(g, _)| *g == k) {
                Some((_, members)) => members.push(r),
                None => groups.push((k, vec![r])),
            },
            None => single.push(r),
        }
    }
    let mut grouped = Vec::new();
    for (_, members) in groups {
        if members.len() > 1 {
            grouped.push(members);
        } else {
            single.extend(members);
        }
    }
    (grouped, single)
}

/// One problem identical in many schemas, once: how many, the first few names in order (the
/// per-schema detail is in `--json` and each schema's own line).
fn print_failure_group(group: &[&SchemaReport]) {
    // By name: schemas finish in any order.
    let mut names: Vec<&str> = group.iter().map(|r| r.schema.as_str()).collect();
    names.sort_unstable();
    let who = format!(
        "{} schemas ({})",
        group.len(),
        super::first_names(&names, NAMED_IN_GROUP)
    );
    match &group[0].outcome {
        Outcome::Failed {
            plugin,
            step,
            sqlstate: code,
            message,
            ..
        } => crate::errln!(
            "error: {who}: plugin `{plugin}`, step `{step}` failed the same way and was rolled back: {}",
            failure_text(message, code.as_deref())
        ),
        Outcome::Skipped { reason } => crate::errln!("error: {who} skipped: {reason}"),
        Outcome::Blocked { reason } => crate::errln!("error: {who}: {reason}"),
        Outcome::Drift { drift } => {
            for d in drift {
                crate::errln!(
                    "error: {who} refused: plugin `{}`, step `{}`: applied step changed (recorded checksum {}, current {}); see what changed with `wasmig diff --plugin {}`, then restore the step as it was applied and add a new step instead, or accept it with `wasmig repair`",
                    d.plugin,
                    d.step,
                    d.recorded,
                    d.current,
                    d.plugin
                );
            }
        }
        _ => {}
    }
}

/// One line for the schemas a signal kept from finishing, however many (each schema's own
/// line said which it was).
fn print_not_finished(cut: &[&SchemaReport]) {
    if cut.is_empty() {
        return;
    }
    const SHOWN: usize = 10;
    let names: Vec<&str> = cut.iter().map(|r| r.schema.as_str()).collect();
    crate::errln!(
        "error: the run was interrupted before {} schema(s) were done: {}; their steps that ran are committed and recorded, run `wasmig migrate` again to apply the rest",
        cut.len(),
        super::first_names(&names, SHOWN)
    );
}

/// A step failure as the summary shows it: the first line of its message and its SQLSTATE,
/// then the rest of the message (caret, DETAIL, HINT) on lines of their own.
fn failure_text(message: &str, code: Option<&str>) -> String {
    format!(
        "{}{}{}",
        message.lines().next().unwrap_or(""),
        sqlstate_note(code),
        message
            .split_once('\n')
            .map(|(_, rest)| format!("\n{rest}"))
            .unwrap_or_default()
    )
}

/// A problem schema's cause, on stderr.
fn print_problem(r: &SchemaReport) {
    match &r.outcome {
        Outcome::Failed {
            plugin,
            step,
            sqlstate: code,
            message,
            ..
        } => crate::errln!(
            "error: schema `{}`, plugin `{plugin}`, step `{step}` failed and was rolled back: {}",
            r.schema,
            failure_text(message, code.as_deref())
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

/// What `wasmig revert` did in `schema`: the reverted steps on stdout, why it stopped on
/// stderr.
pub fn print_revert(schema: &crate::names::SchemaName, outcome: &Outcome) {
    let reverted = match outcome {
        Outcome::Applied { steps } => steps,
        Outcome::Failed { applied, .. } | Outcome::Interrupted { applied, .. } => applied,
        Outcome::Error { message } => {
            crate::errln!("error: schema `{schema}`: {message}");
            return;
        }
        other => {
            crate::errln!("error: schema `{schema}`: {}", other.name());
            return;
        }
    };
    for st in reverted {
        crate::outln!("{schema}: reverted {st}");
    }
    match outcome {
        Outcome::Failed {
            plugin,
            step,
            sqlstate,
            message,
            ..
        } => crate::errln!(
            "error: schema `{schema}`, plugin `{plugin}`, step `{step}`: revert stopped: {message}{}",
            sqlstate_note(sqlstate.as_deref())
        ),
        Outcome::Interrupted { applied, signal } => crate::errln!(
            "error: schema `{schema}`: revert stopped by {signal} after {} step(s); run it again to revert the rest",
            applied.len()
        ),
        _ => {}
    }
}

#[derive(Serialize)]
struct PlannedStepJson<'a> {
    plugin: &'a str,
    step: &'a str,
    description: &'a str,
    transactional: bool,
    /// A repeatable seed step that changed and runs again.
    rerun: bool,
}

#[derive(Serialize)]
struct PlanJson<'a> {
    schema: &'a str,
    scope: Scope,
    pending: Vec<PlannedStepJson<'a>>,
    drift: &'a [Drift],
    forged: &'a [StepRef],
    blocked: Option<&'a str>,
}

#[derive(Serialize)]
struct PlansJson<'a> {
    pending_count: usize,
    schemas: Vec<PlanJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout: Option<super::rollout::WavePlanJson<'a>>,
}

/// `migrate --dry-run` output.
pub fn print_plan(
    specs: &[PluginSpec],
    plans: &[(&Target, SchemaPlan)],
    waves: Option<&crate::ops::rollout::WavePlan>,
    out: Output,
) {
    if out.json() {
        let schemas: Vec<PlanJson<'_>> = plans
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
                            rerun: p.reruns.contains(ps),
                        }
                    })
                    .collect(),
                drift: &p.drift,
                forged: &p.forged,
                blocked: p.blocked.as_deref(),
            })
            .collect();
        let pending_count = plans
            .iter()
            .filter(|(_, p)| !p.refused())
            .map(|(_, p)| p.pending.len())
            .sum();
        print_document(
            "wasmig.plan/1",
            PlansJson {
                pending_count,
                schemas,
                rollout: waves.map(super::rollout::WavePlanJson::new),
            },
        );
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
            let rerun = if p.reruns.contains(ps) {
                "  (changed, will re-run)"
            } else {
                ""
            };
            crate::outln!("  {}/{}  {}{rerun}", pl.name, st.id, st.description);
        }
        total += p.pending.len();
    }
    if let Some(w) = waves {
        super::rollout::print_wave_plan(w);
    }
    crate::outln!("dry run: {total} step(s) would be applied; nothing was changed");
}
