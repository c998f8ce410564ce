//! The run history and the failures of steps: a run record per command that changes
//! schemas, who ran it, its outcome (`running` only while its runner holds its run lock), and
//! step durations for metrics.

use std::collections::HashMap;

use tokio_postgres::Client;

use super::{ControlError, RUN_LOCK_CLASS, pg};
use crate::names::SchemaName;

/// A step failure that no later run fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailureRecord {
    /// Plugin.
    pub plugin: String,
    /// Step id.
    pub step: String,
    /// SQLSTATE, when the server gave one.
    pub sqlstate: Option<String>,
    /// The error as wasmig showed it (first line: the message; then the failing line with its
    /// caret, DETAIL and HINT, when there were any).
    pub message: String,
}

/// The most recent unfixed failure per schema: not resolved by an operator (`wasmig
/// resolve`), and the schema has not applied that step since.
pub async fn last_failures(
    client: &Client,
) -> Result<HashMap<String, StepFailureRecord>, ControlError> {
    let rows = client
        .query(
            "SELECT DISTINCT ON (f.schema_name) f.schema_name, f.plugin, f.step_id, f.sqlstate, f.message
             FROM wasmig.failure f
             WHERE f.resolved_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM wasmig.ledger l WHERE l.schema_name = f.schema_name
                               AND l.plugin = f.plugin AND l.step_id = f.step_id)
             ORDER BY f.schema_name, f.failed_at DESC",
            &[],
        )
        .await
        .map_err(pg("reading failures"))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.get(0),
                StepFailureRecord {
                    plugin: r.get(1),
                    step: r.get(2),
                    sqlstate: r.get(3),
                    message: r.get(4),
                },
            )
        })
        .collect())
}

/// Starts a run record; returns its id.
pub async fn start_run(
    client: &Client,
    command: &str,
    args: &[String],
) -> Result<i64, ControlError> {
    let os_user = os_user();
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned());
    // Arguments are kept for `wasmig history`; a URL among them loses its password.
    let args: Vec<String> = args.iter().map(|a| crate::db::connect::redact(a)).collect();
    let args = serde_json::to_string(&args).unwrap_or_else(|_| "[]".into());
    // The run's lock is taken by the statement that inserts it: once the row is visible,
    // its runner holds the lock.
    let row = client
        .query_one(
            "WITH r AS (INSERT INTO wasmig.run (command, arguments, os_user, hostname)
                        VALUES ($1, $2::text::jsonb, $3, $4) RETURNING run_id)
             SELECT run_id, pg_catalog.pg_advisory_lock($5, (run_id % 2147483648)::int4)::text
             FROM r",
            &[&command, &args, &os_user, &host, &RUN_LOCK_CLASS],
        )
        .await
        .map_err(pg("recording the run"))?;
    Ok(row.get(0))
}

/// The name of the user running wasmig: `USER` / `LOGNAME`, else the account of the process's
/// uid in `/etc/passwd` (containers and CI often set neither variable), else `uid N`.
fn os_user() -> Option<String> {
    if let Some(u) = ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|u| !u.is_empty()))
    {
        return Some(u);
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))?
        .to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    Some(
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[2] == uid)
            .map_or_else(|| format!("uid {uid}"), |f| f[0].to_owned()),
    )
}

/// One row of the run history.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// Run id.
    pub run_id: i64,
    /// Command (`migrate`, `tenant create`, ...).
    pub command: String,
    /// Arguments as given (URLs redacted).
    pub arguments: Vec<String>,
    /// OS user.
    pub os_user: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// Database role.
    pub db_user: String,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// Start, Unix seconds.
    pub started_epoch_s: f64,
    /// Duration in seconds, if finished.
    pub duration_s: Option<f64>,
    /// `ok`, `failed`, `interrupted` (stopped by a signal), `abandoned` (its runner is gone
    /// without recording an end: killed, or the machine lost power), or absent while running.
    pub outcome: Option<String>,
    /// Steps applied.
    pub applied: Option<i32>,
    /// Schemas with problems.
    pub failed: Option<i32>,
}

/// The newest `limit` runs, newest first.
pub async fn runs(client: &Client, limit: i64) -> Result<Vec<RunRecord>, ControlError> {
    run_records(client, limit, None).await
}

/// The newest `limit` runs (only run `only`, if given), newest first.
async fn run_records(
    client: &Client,
    limit: i64,
    only: Option<i64>,
) -> Result<Vec<RunRecord>, ControlError> {
    let rows = client
        .query(
            "SELECT run_id, command, arguments::text, os_user, hostname, db_user,
                    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    extract(epoch FROM started_at)::float8,
                    extract(epoch FROM finished_at - started_at)::float8,
                    CASE WHEN outcome IS NOT NULL THEN outcome
                         WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                                      WHERE l.locktype = 'advisory' AND l.granted
                                        AND l.classid::int4 = $2 AND l.objsubid = 2
                                        AND l.objid::int8 = run_id % 2147483648
                                        AND l.database = (SELECT oid FROM pg_catalog.pg_database
                                                          WHERE datname = current_database()))
                         THEN NULL
                         ELSE 'abandoned' END,
                    -- A run without an end (running, or stopped at once by a second signal
                    -- or a kill) shows what its rows say so far.
                    coalesce(applied, (SELECT count(*) FROM wasmig.ledger l WHERE l.run_id = r.run_id)::int),
                    coalesce(failed, (SELECT count(DISTINCT f.schema_name) FROM wasmig.failure f
                                      WHERE f.run_id = r.run_id)::int)
             FROM wasmig.run r WHERE $3::int8 IS NULL OR run_id = $3
             ORDER BY run_id DESC LIMIT $1",
            &[&limit, &RUN_LOCK_CLASS, &only],
        )
        .await
        .map_err(pg("reading the run history"))?;
    Ok(rows
        .iter()
        .map(|r| RunRecord {
            run_id: r.get(0),
            command: r.get(1),
            arguments: serde_json::from_str(r.get::<_, &str>(2)).unwrap_or_default(),
            os_user: r.get(3),
            hostname: r.get(4),
            db_user: r.get(5),
            started_at: r.get(6),
            started_epoch_s: r.get(7),
            duration_s: r.get(8),
            outcome: r.get(9),
            applied: r.get(10),
            failed: r.get(11),
        })
        .collect())
}

/// Summary of applied steps' durations, in seconds.
#[derive(Debug, Clone, Default)]
pub struct DurationSummary {
    /// Steps in the ledger.
    pub count: i64,
    /// Sum of durations.
    pub sum: f64,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// Duration summary over the whole ledger, in one query.
pub async fn step_durations(client: &Client) -> Result<DurationSummary, ControlError> {
    let r = client
        .query_one(
            "SELECT count(*), coalesce(sum(duration_ms), 0)::float8 / 1000,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) / 1000,
                    percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_ms) / 1000,
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) / 1000
             FROM wasmig.ledger",
            &[],
        )
        .await
        .map_err(pg("summarising step durations"))?;
    Ok(DurationSummary {
        count: r.get(0),
        sum: r.get(1),
        p50: r.get(2),
        p90: r.get(3),
        p99: r.get(4),
    })
}

/// How a run ended, as `wasmig.run.outcome` records it (`abandoned` is never written: it is
/// what a run without an end shows once its runner is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Everything asked for was done.
    Ok,
    /// Some schema failed, drifted or was refused.
    Failed,
    /// A signal stopped it cleanly.
    Interrupted,
}

impl RunOutcome {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Failed => "failed",
            RunOutcome::Interrupted => "interrupted",
        }
    }
}

/// Closes a run record.
pub async fn finish_run(
    client: &Client,
    run_id: i64,
    outcome: RunOutcome,
    applied: i32,
    failed: i32,
) -> Result<(), ControlError> {
    client
        .query_one(
            "WITH done AS (UPDATE wasmig.run SET finished_at = clock_timestamp(), outcome = $2, applied = $3, failed = $4
                           WHERE run_id = $1 RETURNING run_id)
             SELECT pg_catalog.pg_advisory_unlock($5, (run_id % 2147483648)::int4) FROM done",
            &[&run_id, &outcome.as_str(), &applied, &failed, &RUN_LOCK_CLASS],
        )
        .await
        .map_err(pg("closing the run record"))?;
    Ok(())
}

/// Marks the unresolved failures of `schema` (of `plugin`, of its step `step`, when given)
/// resolved by run `run_id` for `reason`; returns how many.
pub async fn resolve_failures(
    client: &Client,
    schema: &SchemaName,
    plugin: Option<&str>,
    step: Option<&str>,
    reason: &str,
    run_id: i64,
) -> Result<u64, ControlError> {
    client
        .execute(
            "UPDATE wasmig.failure SET resolved_at = clock_timestamp(), resolved_run = $5, resolution = $4
              WHERE schema_name = $1 AND resolved_at IS NULL
                AND ($2::text IS NULL OR plugin = $2) AND ($3::text IS NULL OR step_id = $3)",
            &[&schema.as_str(), &plugin, &step, &reason, &run_id],
        )
        .await
        .map_err(pg(format!("resolving the failures of `{schema}`")))
}

/// Removes what a refused step of role `role` left outside its schema (large objects owned by
/// the role or a group it belongs to), on the operator's session; returns what was done, in
/// words.
pub async fn remove_leftovers(client: &Client, role: &str) -> Result<Vec<String>, ControlError> {
    Ok(client
        .query_one("SELECT wasmig.remove_leftovers($1)", &[&role])
        .await
        .map_err(pg(format!(
            "removing what role `{role}` left outside its schema"
        )))?
        .get(0))
}

/// Records a failed step (after its transaction rolled back).
pub async fn record_failure(
    client: &Client,
    run_id: i64,
    schema: &SchemaName,
    plugin: &str,
    step: &str,
    sqlstate: Option<&str>,
    message: &str,
) -> Result<(), ControlError> {
    client
        .execute(
            "INSERT INTO wasmig.failure (run_id, schema_name, plugin, step_id, sqlstate, message)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &run_id,
                &schema.as_str(),
                &plugin,
                &step,
                &sqlstate,
                &message,
            ],
        )
        .await
        .map_err(pg("recording a failure"))?;
    Ok(())
}

/// What one schema of a run came to, as the run records it at its end.
#[derive(Debug, Clone)]
pub struct RunSchema {
    /// The schema.
    pub schema: String,
    /// `applied`, `failed`, `skipped`, ... (see `exec::Outcome::name`).
    pub outcome: String,
    /// Step attempts made again after lock conflicts.
    pub retries: i32,
    /// Time spent on it, seconds.
    pub duration_s: f64,
    /// The steps of this run still in its ledger: plugin, step, seconds.
    pub steps: Vec<(String, String, f64)>,
    /// The failures this run recorded: plugin, step, SQLSTATE, message.
    pub failures: Vec<(String, String, Option<String>, String)>,
}

/// Records what each schema a run worked on came to (`schema`, outcome, retries, seconds).
pub async fn record_run_schemas(
    client: &Client,
    run_id: i64,
    rows: &[(&str, &str, i32, f64)],
) -> Result<(), ControlError> {
    if rows.is_empty() {
        return Ok(());
    }
    let schemas: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let outcomes: Vec<&str> = rows.iter().map(|r| r.1).collect();
    let retries: Vec<i32> = rows.iter().map(|r| r.2).collect();
    let ms: Vec<f64> = rows.iter().map(|r| r.3 * 1000.0).collect();
    client
        .execute(
            "INSERT INTO wasmig.run_schema (run_id, schema_name, outcome, retries, duration_ms)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int4[], $5::float8[])
             ON CONFLICT (run_id, schema_name) DO NOTHING",
            &[&run_id, &schemas, &outcomes, &retries, &ms],
        )
        .await
        .map_err(pg("recording what each schema of the run came to"))?;
    Ok(())
}

/// Run `run_id`'s record, if there is such a run.
pub async fn run_record(client: &Client, run_id: i64) -> Result<Option<RunRecord>, ControlError> {
    Ok(run_records(client, 1, Some(run_id)).await?.pop())
}

/// Run `run_id` and what each schema it worked on came to, with the steps it applied (still
/// in the ledger) and the failures it recorded; `None` when there is no such run.
pub async fn run_detail(
    client: &Client,
    run_id: i64,
) -> Result<Option<(RunRecord, Vec<RunSchema>)>, ControlError> {
    let Some(run) = run_record(client, run_id).await? else {
        return Ok(None);
    };
    let what = || format!("reading run {run_id}");
    let mut schemas: Vec<RunSchema> = client
        .query(
            "SELECT schema_name, outcome, retries, duration_ms / 1000.0 FROM wasmig.run_schema
              WHERE run_id = $1 ORDER BY schema_name",
            &[&run_id],
        )
        .await
        .map_err(pg(what()))?
        .iter()
        .map(|r| RunSchema {
            schema: r.get(0),
            outcome: r.get(1),
            retries: r.get(2),
            duration_s: r.get(3),
            steps: Vec::new(),
            failures: Vec::new(),
        })
        .collect();
    let steps = client
        .query(
            "SELECT schema_name, plugin, step_id, duration_ms / 1000.0 FROM wasmig.ledger
              WHERE run_id = $1 ORDER BY schema_name, applied_at, plugin, step_id",
            &[&run_id],
        )
        .await
        .map_err(pg(what()))?;
    let failures = client
        .query(
            "SELECT schema_name, plugin, step_id, sqlstate, message FROM wasmig.failure
              WHERE run_id = $1 ORDER BY schema_name, failed_at",
            &[&run_id],
        )
        .await
        .map_err(pg(what()))?;
    for r in &steps {
        let i = schema_entry(&mut schemas, r.get(0));
        schemas[i].steps.push((r.get(1), r.get(2), r.get(3)));
    }
    for r in &failures {
        let i = schema_entry(&mut schemas, r.get(0));
        schemas[i]
            .failures
            .push((r.get(1), r.get(2), r.get(3), r.get(4)));
    }
    schemas.sort_by(|a, b| a.schema.cmp(&b.schema));
    Ok(Some((run, schemas)))
}

/// The index of `schema` in `schemas`, added (with nothing recorded) if missing: a run made
/// before `run_schema` existed still shows its steps and failures.
fn schema_entry(schemas: &mut Vec<RunSchema>, schema: String) -> usize {
    if let Some(i) = schemas.iter().position(|s| s.schema == schema) {
        return i;
    }
    schemas.push(RunSchema {
        schema,
        outcome: String::new(),
        retries: 0,
        duration_s: 0.0,
        steps: Vec::new(),
        failures: Vec::new(),
    });
    schemas.len() - 1
}

/// Marks resolved the failures of `schema` that a later success already answers (the step
/// is in the ledger now), before a `restore` or `revert` takes ledger rows away: otherwise
/// the old failure would count again once its step's row is gone.
pub async fn settle_answered_failures(
    client: &Client,
    schema: &SchemaName,
    run_id: i64,
) -> Result<u64, ControlError> {
    client
        .execute(
            "UPDATE wasmig.failure f SET resolved_at = clock_timestamp(), resolved_run = $2,
                    resolution = 'applied by a later run'
              WHERE f.schema_name = $1 AND f.resolved_at IS NULL
                AND EXISTS (SELECT 1 FROM wasmig.ledger l WHERE l.schema_name = f.schema_name
                            AND l.plugin = f.plugin AND l.step_id = f.step_id)",
            &[&schema.as_str(), &run_id],
        )
        .await
        .map_err(pg(format!("settling the answered failures of `{schema}`")))
}

/// When the newest run that ended ok started, Unix seconds.
pub async fn last_ok_run_epoch(client: &Client) -> Result<Option<f64>, ControlError> {
    Ok(client
        .query_one(
            "SELECT extract(epoch FROM max(started_at))::float8 FROM wasmig.run WHERE outcome = 'ok'",
            &[],
        )
        .await
        .map_err(pg("reading the last successful run"))?
        .get(0))
}
