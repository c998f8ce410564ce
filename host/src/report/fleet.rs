//! What the fleet-wide commands print: `tenant list`, `health`, `history` and `metrics`, as
//! text or as the `wasmig.tenants/1`, `wasmig.health/1`, `wasmig.history/1` and
//! `wasmig.metrics/1` documents (metrics also in Prometheus' text format).

use std::fmt::Write as _;

use serde::Serialize;

use super::{Output, document, print_document, round3};
use crate::control::{DurationSummary, HeldLock, ManagedSchema, RunRecord};
use crate::plan::Scope;

#[derive(Serialize)]
struct TenantJson<'a> {
    schema: &'a str,
    scope: Scope,
    role: &'a str,
    name: Option<&'a str>,
    domain: Option<&'a str>,
    created_at: &'a str,
    labels: &'a crate::labels::Labels,
}

#[derive(Serialize)]
struct TenantsJson<'a> {
    tenant_count: usize,
    tenants: Vec<TenantJson<'a>>,
}

/// `wasmig tenant list` output.
pub fn print_tenants(tenants: &[ManagedSchema], out: Output) {
    if out.json() {
        let tenants: Vec<TenantJson<'_>> = tenants
            .iter()
            .map(|t| TenantJson {
                schema: t.schema.as_str(),
                scope: t.scope,
                role: &t.role,
                name: t.name.as_deref(),
                domain: t.domain.as_deref(),
                created_at: &t.created_at,
                labels: &t.labels,
            })
            .collect();
        let tenant_count = tenants.len();
        print_document(
            "wasmig.tenants/1",
            TenantsJson {
                tenant_count,
                tenants,
            },
        );
        return;
    }
    if tenants.is_empty() {
        crate::outln!("no tenants (create one with `wasmig tenant create SCHEMA`)");
        return;
    }
    crate::outln!(
        "{:<24} {:<24} {:<28} {:<20} LABELS",
        "SCHEMA",
        "NAME",
        "DOMAIN",
        "CREATED"
    );
    for t in tenants {
        // Labels may have been set by hand in SQL: shown inert.
        crate::outln!(
            "{:<24} {:<24} {:<28} {:<20} {}",
            t.schema,
            t.name.as_deref().unwrap_or_default(),
            t.domain.as_deref().unwrap_or_default(),
            // To the second here; `--json` keeps the microseconds.
            format!("{}Z", t.created_at.get(..19).unwrap_or(&t.created_at)),
            crate::text::inert(&crate::labels::display(&t.labels), 400)
        );
    }
}

/// What `wasmig health` found.
#[derive(Debug, Default)]
pub struct Health {
    /// Whether the database answered.
    pub reachable: bool,
    /// Database, password redacted.
    pub database: String,
    /// Time to connect and answer `SELECT 1`.
    pub latency: std::time::Duration,
    /// `server_version`.
    pub server_version: String,
    /// Control schema version, if `init` ran.
    pub control_version: Option<i32>,
    /// Registered tenants.
    pub tenant_count: usize,
    /// Steps pending over the shared schema and all tenants.
    pub pending_count: usize,
    /// Of those, in the shared schema.
    pub shared_pending_count: usize,
    /// Drifted steps over the shared schema and all tenants.
    pub drift_count: usize,
    /// Forged ledger rows over the shared schema and all tenants.
    pub forged_count: usize,
    /// Schemas (the shared one included) with an unresolved failed step.
    pub failed_schema_count: usize,
    /// Schemas an operator holds (`wasmig hold`).
    pub held_schema_count: usize,
    /// Steps those holds keep from running (not in `pending_count`).
    pub held_step_count: usize,
    /// wasmig's advisory locks and their holders.
    pub locks: Vec<HeldLock>,
    /// The newest run.
    pub last_run: Option<RunRecord>,
    /// What needs attention (empty: healthy).
    pub problems: Vec<String>,
}

#[derive(Serialize)]
struct LockJson<'a> {
    schema: &'a str,
    pid: i32,
    application_name: &'a str,
    held_seconds: f64,
}

#[derive(Serialize)]
struct HealthJson<'a> {
    healthy: bool,
    reachable: bool,
    database: &'a str,
    latency_seconds: f64,
    server_version: &'a str,
    control_version: Option<i32>,
    tenant_count: usize,
    pending_count: usize,
    shared_pending_count: usize,
    drift_count: usize,
    forged_count: usize,
    failed_schema_count: usize,
    held_schema_count: usize,
    held_step_count: usize,
    locks: Vec<LockJson<'a>>,
    last_run: Option<RunJson<'a>>,
    problems: &'a [String],
}

/// `wasmig health` output.
pub fn print_health(h: &Health, out: Output) {
    let healthy = h.problems.is_empty();
    if out.json() {
        let j = HealthJson {
            healthy,
            reachable: h.reachable,
            database: &h.database,
            latency_seconds: round3(h.latency.as_secs_f64()),
            server_version: &h.server_version,
            control_version: h.control_version,
            tenant_count: h.tenant_count,
            pending_count: h.pending_count,
            shared_pending_count: h.shared_pending_count,
            drift_count: h.drift_count,
            forged_count: h.forged_count,
            failed_schema_count: h.failed_schema_count,
            held_schema_count: h.held_schema_count,
            held_step_count: h.held_step_count,
            locks: h
                .locks
                .iter()
                .map(|l| LockJson {
                    schema: &l.schema,
                    pid: l.pid,
                    application_name: &l.application_name,
                    held_seconds: round3(l.held_s),
                })
                .collect(),
            last_run: h.last_run.as_ref().map(RunJson::new),
            problems: &h.problems,
        };
        print_document("wasmig.health/1", j);
        return;
    }
    if !h.reachable {
        crate::outln!("database:        {} (unreachable)", h.database);
        for p in &h.problems {
            crate::outln!("problem:         {p}");
        }
        crate::outln!("NOT healthy");
        return;
    }
    crate::outln!(
        "database:        {} ({:.1} ms)",
        h.database,
        h.latency.as_secs_f64() * 1000.0
    );
    crate::outln!("server version:  {}", h.server_version);
    crate::outln!(
        "control schema:  {}",
        h.control_version
            .map_or("missing".to_owned(), |v| format!("version {v}"))
    );
    crate::outln!(
        "fleet:           {} tenant(s) and the shared schema ({} pending step(s), {} of them shared, {} drifted, {} forged row(s), {} failed schema(s))",
        h.tenant_count,
        h.pending_count,
        h.shared_pending_count,
        h.drift_count,
        h.forged_count,
        h.failed_schema_count
    );
    if h.held_schema_count > 0 {
        crate::outln!(
            "held:            {} schema(s) held by an operator, {} step(s) waiting (`wasmig status` shows why; `wasmig release` lets them run)",
            h.held_schema_count,
            h.held_step_count
        );
    }
    for l in &h.locks {
        crate::outln!(
            "lock:            schema `{}` held by server process {} (application_name `{}`) for {:.1}s",
            l.schema,
            l.pid,
            // Any session may set its own application_name.
            crate::text::inert(&l.application_name, 64),
            l.held_s
        );
    }
    match &h.last_run {
        Some(r) => crate::outln!(
            "last run:        {} `{}` at {}: {}",
            r.run_id,
            r.command,
            r.started_at,
            r.outcome.as_deref().unwrap_or("running")
        ),
        None => crate::outln!("last run:        none"),
    }
    for p in &h.problems {
        crate::outln!("problem:         {p}");
    }
    crate::outln!("{}", if healthy { "healthy" } else { "NOT healthy" });
}

/// A run in `wasmig.history/1` and `wasmig.health/1`.
#[derive(Serialize)]
pub(super) struct RunJson<'a> {
    run_id: i64,
    command: &'a str,
    arguments: &'a [String],
    os_user: Option<&'a str>,
    hostname: Option<&'a str>,
    db_user: &'a str,
    started_at: &'a str,
    started_epoch_seconds: f64,
    duration_seconds: Option<f64>,
    /// `ok`, `failed`, `interrupted`, `abandoned`, or null while running.
    outcome: Option<&'a str>,
    applied_count: Option<i32>,
    problem_count: Option<i32>,
}

impl<'a> RunJson<'a> {
    pub(super) fn new(r: &'a RunRecord) -> Self {
        RunJson {
            run_id: r.run_id,
            command: &r.command,
            arguments: &r.arguments,
            os_user: r.os_user.as_deref(),
            hostname: r.hostname.as_deref(),
            db_user: &r.db_user,
            started_at: &r.started_at,
            started_epoch_seconds: round3(r.started_epoch_s),
            duration_seconds: r.duration_s.map(round3),
            outcome: r.outcome.as_deref(),
            applied_count: r.applied,
            problem_count: r.failed,
        }
    }
}

#[derive(Serialize)]
struct HistoryJson<'a> {
    runs: Vec<RunJson<'a>>,
}

/// The `wasmig.history/1` document, newest run first.
pub fn history_json(runs: &[RunRecord]) -> String {
    let runs = runs.iter().map(RunJson::new).collect();
    super::document("wasmig.history/1", HistoryJson { runs })
}

/// `wasmig history` output, newest run first.
pub fn print_history(runs: &[RunRecord], out: Output) {
    if out.json() {
        crate::outln!("{}", history_json(runs));
        return;
    }
    if runs.is_empty() {
        crate::outln!("no runs recorded yet");
        return;
    }
    crate::outln!(
        "{:>6}  {:<20}  {:>9}  {:<8}  {:>7}  {:>6}  {:<24}  COMMAND",
        "RUN",
        "STARTED",
        "DURATION",
        "OUTCOME",
        "APPLIED",
        "FAILED",
        "WHO@WHERE"
    );
    let count = |n: Option<i32>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    for r in runs {
        crate::outln!(
            "{:>6}  {:<20}  {:>9}  {:<8}  {:>7}  {:>6}  {:<24}  {}",
            r.run_id,
            r.started_at,
            match (r.duration_s, &r.outcome) {
                (Some(d), _) => format!("{d:.2}s"),
                (None, None) => "running".into(),
                (None, Some(_)) => "-".into(),
            },
            r.outcome.as_deref().unwrap_or("-"),
            count(r.applied),
            count(r.failed),
            format!(
                "{}@{}",
                r.os_user.as_deref().unwrap_or("?"),
                r.hostname.as_deref().unwrap_or("?")
            ),
            r.arguments
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}

/// `a` as a POSIX shell word: unchanged when it needs no quoting, else in single quotes, so
/// the line can be pasted back into a shell. Made inert: arguments are shown, never obeyed.
fn shell_quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    let quoted = if plain {
        a.to_owned()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    };
    // Text with control characters cannot be pasted back anyway: show it escaped.
    match crate::text::check_manifest_text(&quoted, 400) {
        Ok(()) => quoted,
        Err(_) => crate::text::inert(&quoted, 400),
    }
}

/// The fleet's gauges, as `wasmig metrics` reports them.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// Registered tenants.
    pub tenant_count: usize,
    /// Tenants with at least one pending step.
    pub tenants_with_pending_count: usize,
    /// Pending steps over the shared schema and all tenants.
    pub pending_count: usize,
    /// Of those, in the shared schema.
    pub shared_pending_count: usize,
    /// Drifted steps over the shared schema and all tenants.
    pub drift_count: usize,
    /// Forged ledger rows over the shared schema and all tenants.
    pub forged_count: usize,
    /// Schemas (the shared one included) whose last attempt at a step failed.
    pub failed_schema_count: usize,
    /// Duration of the last run, seconds.
    pub last_run_duration_seconds: Option<f64>,
    /// Start of the last run, Unix seconds.
    pub last_run_timestamp_seconds: Option<f64>,
    /// Whether the last run ended ok.
    pub last_run_success: Option<bool>,
    /// Durations of applied steps, seconds.
    pub step_duration: DurationSummary,
    /// Plugins the trust policy or the lock file would refuse to run.
    pub plugin_problem_count: usize,
    /// Schemas an operator holds.
    pub held_schema_count: usize,
    /// Steps those holds keep from running (not in `pending_count`).
    pub held_step_count: usize,
    /// Per plugin and state, the schemas of its scope in that state as far as its steps
    /// go (bounded labels: plugins x states, never a series per tenant).
    pub plugin_states: Vec<(String, &'static str, usize)>,
    /// Start of the newest run that ended ok, Unix seconds.
    pub last_success_timestamp_seconds: Option<f64>,
    /// `serve --heal-every`'s own counters, when serving.
    pub heal: Option<HealCounters>,
    /// `--window`: its length in seconds and what the run history says about it.
    pub window: Option<(f64, crate::control::Period)>,
}

/// What `serve --heal-every` counted since it started.
#[derive(Debug, Default, Clone, Copy)]
pub struct HealCounters {
    /// The schedule, seconds.
    pub interval_seconds: f64,
    /// When the server started, Unix seconds.
    pub started_timestamp_seconds: f64,
    /// Heal runs started.
    pub runs: u64,
    /// Heal runs that did not end ok.
    pub failures: u64,
    /// When the last heal ended, Unix seconds.
    pub last_timestamp_seconds: Option<f64>,
    /// When the last heal that ended ok ended, Unix seconds.
    pub last_success_timestamp_seconds: Option<f64>,
}

#[derive(Serialize)]
struct SummaryJson {
    count: i64,
    sum_seconds: f64,
    p50_seconds: Option<f64>,
    p90_seconds: Option<f64>,
    p99_seconds: Option<f64>,
}

#[derive(Serialize)]
struct MetricsJson {
    tenant_count: usize,
    tenants_with_pending_count: usize,
    pending_count: usize,
    shared_pending_count: usize,
    drift_count: usize,
    forged_count: usize,
    failed_schema_count: usize,
    plugin_problem_count: usize,
    held_schema_count: usize,
    held_step_count: usize,
    last_run_duration_seconds: Option<f64>,
    last_run_timestamp_seconds: Option<f64>,
    last_run_success: Option<bool>,
    step_duration: SummaryJson,
    /// With `--window`: `seconds` and what the run history says about them.
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<serde_json::Value>,
}

/// The `wasmig.metrics/1` document, as text.
pub fn metrics_json(m: &Metrics) -> String {
    let d = &m.step_duration;
    let j = MetricsJson {
        tenant_count: m.tenant_count,
        tenants_with_pending_count: m.tenants_with_pending_count,
        pending_count: m.pending_count,
        shared_pending_count: m.shared_pending_count,
        drift_count: m.drift_count,
        forged_count: m.forged_count,
        failed_schema_count: m.failed_schema_count,
        plugin_problem_count: m.plugin_problem_count,
        held_schema_count: m.held_schema_count,
        held_step_count: m.held_step_count,
        last_run_duration_seconds: m.last_run_duration_seconds.map(round3),
        last_run_timestamp_seconds: m.last_run_timestamp_seconds.map(round3),
        last_run_success: m.last_run_success,
        step_duration: SummaryJson {
            count: d.count,
            sum_seconds: round3(d.sum),
            p50_seconds: d.p50.map(round3),
            p90_seconds: d.p90.map(round3),
            p99_seconds: d.p99.map(round3),
        },
        window: m
            .window
            .as_ref()
            .map(|(secs, p)| serde_json::json!({ "seconds": secs, "history": p })),
    };
    document("wasmig.metrics/1", j) + "\n"
}

/// `wasmig_up`'s help and type lines.
const UP: &str = "# HELP wasmig_up 1 if wasmig could read the fleet for these metrics, 0 if it could not (every other series is then absent).\n# TYPE wasmig_up gauge";

/// The exposition when the fleet could not be read: only `wasmig_up 0`.
pub fn prometheus_down() -> String {
    format!("{UP}\nwasmig_up 0\n")
}

/// The `--window` gauges: what the run history says about the last `secs` seconds.
fn window_exposition(out: &mut String, secs: f64, p: &crate::control::Period) {
    let mut gauge = |name: &str, help: &str, v: f64| {
        let _ = writeln!(
            out,
            "# HELP wasmig_window_{name} {help}\n# TYPE wasmig_window_{name} gauge\nwasmig_window_{name} {v}"
        );
    };
    gauge(
        "seconds",
        "The window the wasmig_window_ series cover.",
        secs,
    );
    gauge(
        "applied_steps",
        "Steps applied by runs started in the window.",
        p.applied_step_count as f64,
    );
    gauge(
        "failed_steps",
        "Failed steps recorded in the window.",
        p.failure_count as f64,
    );
    gauge(
        "heal_runs",
        "Heal runs (serve --heal-every) started in the window.",
        p.heal_run_count as f64,
    );
    gauge(
        "heal_failures",
        "Heal runs started in the window that did not end ok.",
        p.heal_failure_count as f64,
    );
    let _ = writeln!(
        out,
        "# HELP wasmig_window_runs Runs started in the window, by outcome.\n# TYPE wasmig_window_runs gauge"
    );
    for outcome in ["ok", "failed", "interrupted", "unfinished"] {
        let n = p.runs.get(outcome).copied().unwrap_or(0);
        let _ = writeln!(out, "wasmig_window_runs{{outcome=\"{outcome}\"}} {n}");
    }
    let d = &p.step_duration;
    let _ = writeln!(
        out,
        "# HELP wasmig_window_step_duration_seconds Duration of the steps applied in the window.\n# TYPE wasmig_window_step_duration_seconds summary"
    );
    for (q, v) in [("0.5", d.p50), ("0.9", d.p90), ("0.99", d.p99)] {
        if let Some(v) = v {
            let _ = writeln!(
                out,
                "wasmig_window_step_duration_seconds{{quantile=\"{q}\"}} {}",
                round3(v)
            );
        }
    }
    let _ = writeln!(
        out,
        "wasmig_window_step_duration_seconds_sum {}\nwasmig_window_step_duration_seconds_count {}",
        round3(d.sum),
        d.count
    );
}

/// A label value as the exposition format wants it: backslash, quote and newline escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics in Prometheus' text exposition format.
pub fn prometheus(m: &Metrics) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{UP}\nwasmig_up 1");
    let mut gauge = |name: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "# HELP wasmig_{name} {help}\n# TYPE wasmig_{name} gauge\nwasmig_{name} {v}"
            );
        }
    };
    let n = |v: usize| Some(v as f64);
    gauge("tenants", "Tenants registered.", n(m.tenant_count));
    gauge(
        "tenants_with_pending",
        "Tenants with at least one pending step.",
        n(m.tenants_with_pending_count),
    );
    gauge(
        "pending_steps",
        "Steps not yet applied, over the shared schema and all tenants.",
        n(m.pending_count),
    );
    gauge(
        "shared_pending_steps",
        "Steps not yet applied in the shared schema.",
        n(m.shared_pending_count),
    );
    gauge(
        "held_schemas",
        "Schemas an operator holds where they are (wasmig hold).",
        n(m.held_schema_count),
    );
    gauge(
        "held_steps",
        "Steps a hold keeps from running (not counted as pending).",
        n(m.held_step_count),
    );
    gauge(
        "plugin_problems",
        "Plugins the trust policy or the lock file would refuse to run.",
        n(m.plugin_problem_count),
    );
    gauge(
        "drifted_steps",
        "Applied steps whose content changed.",
        n(m.drift_count),
    );
    gauge(
        "forged_ledger_rows",
        "Ledger rows not written by wasmig.",
        n(m.forged_count),
    );
    gauge(
        "failed_schemas",
        "Schemas, the shared one included, whose last attempt at a step failed.",
        n(m.failed_schema_count),
    );
    gauge(
        "last_run_duration_seconds",
        "Duration of the last run.",
        m.last_run_duration_seconds.map(round3),
    );
    gauge(
        "last_run_timestamp_seconds",
        "Start of the last run, Unix time.",
        m.last_run_timestamp_seconds.map(round3),
    );
    gauge(
        "last_run_success",
        "1 if the last run ended ok.",
        m.last_run_success.map(|b| f64::from(u8::from(b))),
    );
    gauge(
        "last_successful_run_timestamp_seconds",
        "Start of the newest run that ended ok, Unix time.",
        m.last_success_timestamp_seconds.map(round3),
    );
    if let Some(h) = &m.heal {
        let _ = writeln!(
            out,
            "# HELP wasmig_heal_runs_total Heal runs (serve --heal-every) started since the server started.\n# TYPE wasmig_heal_runs_total counter\nwasmig_heal_runs_total {}",
            h.runs
        );
        let _ = writeln!(
            out,
            "# HELP wasmig_heal_failures_total Heal runs that did not end ok since the server started.\n# TYPE wasmig_heal_failures_total counter\nwasmig_heal_failures_total {}",
            h.failures
        );
        for (name, help, v) in [
            (
                "heal_interval_seconds",
                "How often serve --heal-every runs verify --fix.",
                Some(h.interval_seconds),
            ),
            (
                "serve_start_timestamp_seconds",
                "When this wasmig serve started, Unix time.",
                Some(h.started_timestamp_seconds),
            ),
            (
                "last_heal_timestamp_seconds",
                "When the last heal run ended, Unix time.",
                h.last_timestamp_seconds,
            ),
            (
                "last_successful_heal_timestamp_seconds",
                "When the last heal run that ended ok ended, Unix time.",
                h.last_success_timestamp_seconds,
            ),
        ] {
            if let Some(v) = v {
                let _ = writeln!(
                    out,
                    "# HELP wasmig_{name} {help}\n# TYPE wasmig_{name} gauge\nwasmig_{name} {}",
                    round3(v)
                );
            }
        }
    }
    if !m.plugin_states.is_empty() {
        let _ = writeln!(
            out,
            "# HELP wasmig_plugin_schemas Schemas of a plugin's scope by state, as far as that plugin's steps go.\n# TYPE wasmig_plugin_schemas gauge"
        );
        for (plugin, state, count) in &m.plugin_states {
            let _ = writeln!(
                out,
                "wasmig_plugin_schemas{{plugin=\"{}\",state=\"{state}\"}} {count}",
                label_value(plugin)
            );
        }
    }
    if let Some((secs, p)) = &m.window {
        window_exposition(&mut out, *secs, p);
    }
    let _ = writeln!(
        out,
        "# HELP wasmig_build_info The wasmig build serving these metrics.\n# TYPE wasmig_build_info gauge\nwasmig_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let d = &m.step_duration;
    let _ = writeln!(
        out,
        "# HELP wasmig_step_duration_seconds Duration of applied steps.\n# TYPE wasmig_step_duration_seconds summary"
    );
    for (q, v) in [("0.5", d.p50), ("0.9", d.p90), ("0.99", d.p99)] {
        if let Some(v) = v {
            let _ = writeln!(out, "wasmig_step_duration_seconds{{quantile=\"{q}\"}} {v}");
        }
    }
    let _ = writeln!(
        out,
        "wasmig_step_duration_seconds_sum {}\nwasmig_step_duration_seconds_count {}",
        d.sum, d.count
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("--schema"), "--schema");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("a\u{1b}[2K"), "'a\\x1b[2K'");
    }

    #[test]
    fn metrics_json_uses_counts_and_seconds() {
        let m = Metrics {
            tenant_count: 3,
            pending_count: 2,
            step_duration: DurationSummary {
                count: 4,
                sum: 0.012_345_6,
                ..DurationSummary::default()
            },
            ..Metrics::default()
        };
        let v: serde_json::Value = serde_json::from_str(&metrics_json(&m)).unwrap();
        assert_eq!(v["format"], "wasmig.metrics/1");
        assert_eq!(v["tenant_count"], 3);
        assert_eq!(v["step_duration"]["sum_seconds"], 0.012);
        assert!(v["last_run_success"].is_null());
        let text = prometheus(&m);
        assert!(text.contains("wasmig_pending_steps 2"), "{text}");
        assert!(
            text.contains("wasmig_step_duration_seconds_count 4"),
            "{text}"
        );
    }
}
