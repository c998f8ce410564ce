//! What `wasmig report` prints: a window of run history against the window before it, as
//! text, as the `wasmig.report/1` document, or as a section of the static HTML report.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Output, round3};
use crate::control::{FailureGroup, Period, Slow};

/// A window of history and the one before it.
#[derive(Debug, Clone)]
pub struct Report {
    /// The window's length, seconds.
    pub since_seconds: f64,
    /// As the operator wrote it (`7d`).
    pub since: String,
    /// The window.
    pub current: Period,
    /// The window of the same length before it.
    pub previous: Period,
    /// The window's failures, grouped.
    pub failures: Vec<FailureGroup>,
    /// The window's slowest schemas.
    pub slowest: Vec<Slow>,
}

#[derive(Serialize)]
struct Durations {
    count: i64,
    sum_seconds: f64,
    p50_seconds: Option<f64>,
    p90_seconds: Option<f64>,
    p99_seconds: Option<f64>,
}

#[derive(Serialize)]
struct PeriodJson<'a> {
    #[serde(flatten)]
    period: &'a Period,
    step_duration: Durations,
}

fn period_json(p: &Period) -> PeriodJson<'_> {
    let d = &p.step_duration;
    PeriodJson {
        period: p,
        step_duration: Durations {
            count: d.count,
            sum_seconds: round3(d.sum),
            p50_seconds: d.p50.map(round3),
            p90_seconds: d.p90.map(round3),
            p99_seconds: d.p99.map(round3),
        },
    }
}

#[derive(Serialize)]
struct ReportJson<'a> {
    since_seconds: f64,
    current: PeriodJson<'a>,
    previous: PeriodJson<'a>,
    failures: &'a [FailureGroup],
    slowest: &'a [Slow],
}

/// `a (previous b)` with the change, for one count.
fn trend(now: i64, before: i64) -> String {
    let arrow = match now.cmp(&before) {
        std::cmp::Ordering::Greater => "up",
        std::cmp::Ordering::Less => "down",
        std::cmp::Ordering::Equal => "same",
    };
    format!("{now} (previous {before}, {arrow})")
}

fn seconds(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}s"))
}

/// The report's lines, for text and for the HTML section.
fn lines(r: &Report) -> Vec<String> {
    let (c, p) = (&r.current, &r.previous);
    let outcomes = |p: &Period| {
        p.runs
            .iter()
            .map(|(o, n)| format!("{o} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = vec![
        format!("the last {} against the {} before", r.since, r.since),
        format!(
            "runs: {} [{}]",
            trend(c.run_count, p.run_count),
            outcomes(c)
        ),
        format!(
            "steps applied: {}; step time p50 {}, p90 {}, p99 {} (previous p50 {}, p90 {})",
            trend(c.applied_step_count, p.applied_step_count),
            seconds(c.step_duration.p50),
            seconds(c.step_duration.p90),
            seconds(c.step_duration.p99),
            seconds(p.step_duration.p50),
            seconds(p.step_duration.p90),
        ),
        format!(
            "failed steps: {}; schemas left failed by runs: {}",
            trend(c.failure_count, p.failure_count),
            trend(c.failed_schema_count, p.failed_schema_count)
        ),
        format!(
            "drift found in {} schema(s) (previous {}); repair runs: {} (previous {})",
            c.drifted_schema_count, p.drifted_schema_count, c.repair_run_count, p.repair_run_count
        ),
        format!(
            "heal runs: {}, failed {} (previous {}, failed {})",
            c.heal_run_count, c.heal_failure_count, p.heal_run_count, p.heal_failure_count
        ),
    ];
    if !r.failures.is_empty() {
        out.push("failures, most frequent first:".into());
        for f in &r.failures {
            out.push(format!(
                "  {}/{}{} x{} in {} schema(s): {}",
                f.plugin,
                f.step,
                f.sqlstate
                    .as_deref()
                    .map(|s| format!(" (SQLSTATE {s})"))
                    .unwrap_or_default(),
                f.count,
                f.schema_count,
                f.message
            ));
        }
    }
    if !r.slowest.is_empty() {
        out.push("slowest schemas:".into());
        for s in &r.slowest {
            out.push(format!(
                "  {:<28} {:>9.3}s  run {}",
                s.schema, s.duration_seconds, s.run_id
            ));
        }
    }
    out
}

/// `wasmig report` on stdout.
pub fn print_report(r: &Report, out: Output) {
    if out.json() {
        let j = ReportJson {
            since_seconds: r.since_seconds,
            current: period_json(&r.current),
            previous: period_json(&r.previous),
            failures: &r.failures,
            slowest: &r.slowest,
        };
        crate::outln!("{}", super::document("wasmig.report/1", j));
        return;
    }
    for l in lines(r) {
        crate::outln!("{l}");
    }
}

/// The report as an HTML section (escaped with `esc`).
pub fn report_section(r: &Report, esc: impl Fn(&str) -> String) -> String {
    let mut s = String::from("<section id=\"report\"><h2>Report</h2><ul>");
    for l in lines(r) {
        let _ = write!(s, "<li>{}</li>", esc(&l));
    }
    s.push_str("</ul></section>");
    s
}
