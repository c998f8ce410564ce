//! `wasmig history`: past runs with who, where, when, arguments, duration, outcome, counts.

use anyhow::Result;

use super::Settings;
use crate::Exit;
use crate::control;

/// Prints the newest `limit` runs.
pub async fn history(s: &Settings, out: crate::report::Output, limit: i64) -> Result<Exit> {
    let client = s.connect_initialised().await?;
    let runs = control::runs(&client, limit).await?;
    crate::report::print_history(&runs, out);
    Ok(Exit::Ok)
}
