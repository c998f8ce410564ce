//! `wasmig history`: past runs with who, where, when, arguments, duration, outcome, counts.

use anyhow::Result;

use super::Settings;
use crate::Exit;
use crate::control;

/// Prints the newest `limit` runs, or run `run` in detail.
pub async fn history(
    s: &Settings,
    out: crate::report::Output,
    limit: i64,
    run: Option<i64>,
) -> Result<Exit> {
    let client = s.connect_initialised().await?;
    if let Some(id) = run {
        let Some((record, schemas)) = control::run_detail(&client, id).await? else {
            anyhow::bail!("there is no run {id} (see `wasmig history`)");
        };
        crate::report::print_run_detail(&record, &schemas, out);
        return Ok(Exit::Ok);
    }
    let runs = control::runs(&client, limit).await?;
    crate::report::print_history(&runs, out);
    Ok(Exit::Ok)
}
