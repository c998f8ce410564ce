//! `wasmig history`: past runs with who, where, when, arguments, duration, outcome, counts.

use anyhow::Result;

use super::Settings;
use crate::Exit;
use crate::control;

/// Prints the newest `limit` runs.
pub async fn history(s: &Settings, json: bool, limit: i64) -> Result<Exit> {
    let client = s.connect_initialised().await?;
    let runs = control::runs(&client, limit).await?;
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(Exit::Ok);
    }
    if runs.is_empty() {
        crate::outln!("no runs recorded yet");
        return Ok(Exit::Ok);
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
    for r in runs {
        crate::outln!(
            "{:>6}  {:<20}  {:>9}  {:<8}  {:>7}  {:>6}  {:<24}  {}",
            r.run_id,
            r.started_at,
            r.duration_s
                .map(|d| format!("{d:.2}s"))
                .unwrap_or_else(|| "running".into()),
            r.outcome.as_deref().unwrap_or("-"),
            r.applied
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            r.failed
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            format!(
                "{}@{}",
                r.os_user.as_deref().unwrap_or("?"),
                r.hostname.as_deref().unwrap_or("?")
            ),
            r.arguments.join(" ")
        );
    }
    Ok(Exit::Ok)
}
