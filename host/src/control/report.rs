//! What the run history says about a window of time, for `wasmig report` and
//! `metrics --window`: runs by outcome, steps applied and their durations, heal runs,
//! failures grouped by what failed, drift found and repaired, the slowest schemas. Every
//! window is measured on the server's clock and read in a fixed number of queries.

use tokio_postgres::Client;

use super::{ControlError, DurationSummary, pg};

/// A window: from `from_s` seconds before `at` to `to_s` seconds before it, start included,
/// end excluded, so windows side by side never count a run twice.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Start, seconds before `at`.
    pub from_s: f64,
    /// End, seconds before `at`.
    pub to_s: f64,
    /// The moment windows are measured from: the server's clock, read once
    /// ([`server_now`]).
    pub at: std::time::SystemTime,
}

/// The server's clock now (the clock `started_at` and `failed_at` were written with).
pub async fn server_now(client: &Client) -> Result<std::time::SystemTime, ControlError> {
    Ok(client
        .query_one("SELECT now()", &[])
        .await
        .map_err(pg("reading the server's clock"))?
        .get(0))
}

/// What the run history says about one window.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Period {
    /// Runs started in the window, by outcome (`unfinished` for those without an end).
    pub runs: std::collections::BTreeMap<String, i64>,
    /// Runs in all.
    pub run_count: i64,
    /// Steps those runs applied.
    pub applied_step_count: i64,
    /// Schemas those runs left failed, summed over the runs (a schema failed by two runs
    /// counts twice).
    pub failed_schema_count: i64,
    /// Runs of `serve --heal-every`.
    pub heal_run_count: i64,
    /// Of those, not ended ok.
    pub heal_failure_count: i64,
    /// `repair` runs (drift accepted after review).
    pub repair_run_count: i64,
    /// Schemas a run refused for drift.
    pub drifted_schema_count: i64,
    /// Failed steps recorded.
    pub failure_count: i64,
    /// Durations of the steps applied in the window.
    #[serde(skip)]
    pub step_duration: DurationSummary,
}

/// Failures of one step with one message in a window.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailureGroup {
    /// Plugin.
    pub plugin: String,
    /// Step.
    pub step: String,
    /// SQLSTATE.
    pub sqlstate: Option<String>,
    /// The message's first line (stored inert).
    pub message: String,
    /// How many times.
    pub count: i64,
    /// In how many schemas.
    pub schema_count: i64,
}

/// A schema's slowest migration in a window.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Slow {
    /// Schema.
    pub schema: String,
    /// The run.
    pub run_id: i64,
    /// Seconds that schema took in that run.
    pub duration_seconds: f64,
}

const IN_WINDOW: &str = ">= $3::timestamptz - make_interval(secs => $1) AND {col} < $3::timestamptz - make_interval(secs => $2)";

/// `col` within the window whose bounds are parameters $1, $2 and $3.
fn in_window(col: &str) -> String {
    format!("{col} {}", IN_WINDOW.replace("{col}", col))
}

/// The run history of window `w`.
pub async fn period(client: &Client, w: Window) -> Result<Period, ControlError> {
    let what = || pg("reading the run history of a window");
    let mut p = Period::default();
    for r in client
        .query(
            &format!(
                "SELECT coalesce(outcome, 'unfinished'), count(*), coalesce(sum(applied), 0)::int8,
                        coalesce(sum(failed), 0)::int8,
                        count(*) FILTER (WHERE command = 'serve --heal-every'),
                        count(*) FILTER (WHERE command = 'serve --heal-every' AND outcome IN ('failed', 'interrupted')),
                        count(*) FILTER (WHERE command = 'repair')
                 FROM wasmig.run WHERE {} GROUP BY 1",
                in_window("started_at")
            ),
            &[&w.from_s, &w.to_s, &w.at],
        )
        .await
        .map_err(what())?
    {
        let n: i64 = r.get(1);
        p.runs.insert(r.get(0), n);
        p.run_count += n;
        p.applied_step_count += r.get::<_, i64>(2);
        p.failed_schema_count += r.get::<_, i64>(3);
        p.heal_run_count += r.get::<_, i64>(4);
        p.heal_failure_count += r.get::<_, i64>(5);
        p.repair_run_count += r.get::<_, i64>(6);
    }
    let r = client
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM wasmig.failure WHERE {}),
                        (SELECT count(DISTINCT rs.schema_name) FROM wasmig.run_schema rs
                           JOIN wasmig.run r USING (run_id)
                          WHERE rs.outcome = 'drift' AND {})",
                in_window("failed_at"),
                in_window("r.started_at")
            ),
            &[&w.from_s, &w.to_s, &w.at],
        )
        .await
        .map_err(what())?;
    p.failure_count = r.get(0);
    p.drifted_schema_count = r.get(1);
    let r = client
        .query_one(
            &format!(
                "SELECT count(*), coalesce(sum(duration_ms), 0)::float8 / 1000,
                        percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) / 1000,
                        percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_ms) / 1000,
                        percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) / 1000
                 FROM wasmig.ledger WHERE {}",
                in_window("applied_at")
            ),
            &[&w.from_s, &w.to_s, &w.at],
        )
        .await
        .map_err(what())?;
    p.step_duration = DurationSummary {
        count: r.get(0),
        sum: r.get(1),
        p50: r.get(2),
        p90: r.get(3),
        p99: r.get(4),
    };
    Ok(p)
}

/// The failures of window `w`, grouped by step and message, most frequent first.
pub async fn failure_groups(
    client: &Client,
    w: Window,
    limit: i64,
) -> Result<Vec<FailureGroup>, ControlError> {
    Ok(client
        .query(
            &format!(
                "SELECT plugin, step_id, sqlstate, split_part(message, E'\\n', 1), count(*),
                        count(DISTINCT schema_name)
                 FROM wasmig.failure WHERE {}
                 GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC, 1, 2 LIMIT $4",
                in_window("failed_at")
            ),
            &[&w.from_s, &w.to_s, &w.at, &limit],
        )
        .await
        .map_err(pg("reading the failures of a window"))?
        .into_iter()
        .map(|r| FailureGroup {
            plugin: r.get(0),
            step: r.get(1),
            sqlstate: r.get(2),
            message: r.get(3),
            count: r.get(4),
            schema_count: r.get(5),
        })
        .collect())
}

/// The schemas that took longest to migrate in window `w`, slowest first.
pub async fn slowest(client: &Client, w: Window, limit: i64) -> Result<Vec<Slow>, ControlError> {
    Ok(client
        .query(
            &format!(
                "SELECT rs.schema_name, rs.run_id, rs.duration_ms / 1000.0
                 FROM wasmig.run_schema rs JOIN wasmig.run r USING (run_id)
                 WHERE {} AND rs.outcome = 'applied'
                 ORDER BY rs.duration_ms DESC LIMIT $4",
                in_window("r.started_at")
            ),
            &[&w.from_s, &w.to_s, &w.at, &limit],
        )
        .await
        .map_err(pg("reading the slowest schemas of a window"))?
        .into_iter()
        .map(|r| Slow {
            schema: r.get(0),
            run_id: r.get(1),
            duration_seconds: r.get(2),
        })
        .collect())
}
