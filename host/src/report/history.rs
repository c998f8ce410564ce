//! `wasmig history --run N`: one run, and what each schema it worked on came to: the steps it
//! applied (still in the ledger), its failures, its retries and its time.

use serde::Serialize;

use super::fleet::RunJson;
use super::{FailureJson, Output, round3};
use crate::control::{RunRecord, RunSchema};

#[derive(Serialize)]
struct RunDetailJson<'a> {
    run: RunJson<'a>,
    schema_count: usize,
    schemas: Vec<RunSchemaJson<'a>>,
}

#[derive(Serialize)]
struct RunSchemaJson<'a> {
    schema: &'a str,
    /// `applied`, `failed`, `skipped`, ...; null for a run recorded before wasmig kept it.
    outcome: Option<&'a str>,
    retry_count: i32,
    duration_seconds: f64,
    applied: Vec<AppliedJson<'a>>,
    failures: Vec<FailureJson<'a>>,
}

#[derive(Serialize)]
struct AppliedJson<'a> {
    plugin: &'a str,
    step: &'a str,
    duration_seconds: f64,
}

/// The `wasmig.run/1` document of one run.
pub fn run_detail_json(run: &RunRecord, schemas: &[RunSchema]) -> String {
    let schemas: Vec<RunSchemaJson<'_>> = schemas
        .iter()
        .map(|s| RunSchemaJson {
            schema: &s.schema,
            outcome: (!s.outcome.is_empty()).then_some(s.outcome.as_str()),
            retry_count: s.retries,
            duration_seconds: round3(s.duration_s),
            applied: s
                .steps
                .iter()
                .map(|(plugin, step, secs)| AppliedJson {
                    plugin,
                    step,
                    duration_seconds: round3(*secs),
                })
                .collect(),
            failures: s
                .failures
                .iter()
                .map(|(plugin, step, sqlstate, message)| FailureJson {
                    plugin,
                    step,
                    sqlstate: sqlstate.as_deref(),
                    message,
                })
                .collect(),
        })
        .collect();
    super::document(
        "wasmig.run/1",
        RunDetailJson {
            run: RunJson::new(run),
            schema_count: schemas.len(),
            schemas,
        },
    )
}

/// One run in detail. Failure messages were stored inert; they are printed as stored.
pub fn print_run_detail(run: &RunRecord, schemas: &[RunSchema], out: Output) {
    if out.json() {
        crate::outln!("{}", run_detail_json(run, schemas));
        return;
    }
    crate::outln!(
        "run {}: {} {} (started {}, {}), {} schema(s)",
        run.run_id,
        run.command,
        run.outcome.as_deref().unwrap_or("running"),
        run.started_at,
        run.duration_s
            .map_or_else(|| "not finished".to_owned(), |d| format!("{d:.2}s")),
        schemas.len()
    );
    for s in schemas {
        let retries = match s.retries {
            0 => String::new(),
            n => format!(", {n} retried after lock conflicts"),
        };
        crate::outln!(
            "{}: {}{} ({} step(s), {:.3}s)",
            s.schema,
            if s.outcome.is_empty() {
                "-"
            } else {
                &s.outcome
            },
            retries,
            s.steps.len(),
            s.duration_s
        );
        for (plugin, step, secs) in &s.steps {
            crate::outln!("  applied {plugin}/{step} in {:.0} ms", secs * 1000.0);
        }
        for (plugin, step, sqlstate, message) in &s.failures {
            let first = message.lines().next().unwrap_or("");
            crate::outln!(
                "  failed {plugin}/{step}: {first}{}",
                sqlstate
                    .as_deref()
                    .map(|c| format!(" (SQLSTATE {c})"))
                    .unwrap_or_default()
            );
        }
    }
}
