//! `wasmig wait`: block until the server accepts connections (replaces `until pg_isready`).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::Settings;
use crate::Exit;

/// Tries to connect (and run `SELECT 1`) with exponential backoff until `timeout`.
pub async fn wait(s: &Settings, timeout: Duration) -> Result<Exit> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let attempt = async {
            let c = s.target.connect().await?;
            c.simple_query("SELECT 1")
                .await
                .map_err(crate::db::PgError::from)?;
            anyhow::Ok(())
        };
        let left = timeout.saturating_sub(started.elapsed());
        let last_error =
            match tokio::time::timeout(left.max(Duration::from_millis(1)), attempt).await {
                Ok(Ok(())) => {
                    if !s.quiet {
                        crate::report::notes::reachable(&s.target, attempts, started.elapsed());
                    }
                    return Ok(Exit::Ok);
                }
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => "the last attempt did not finish in time".to_owned(),
            };
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            bail!(
                "{} did not accept connections within {:.1}s ({attempts} attempt(s)); last error: {last_error}",
                s.target,
                timeout.as_secs_f64()
            );
        }
        tracing::debug!("waiting for {}: {last_error}", s.target);
        // The last attempt happens at the deadline, not one backoff before it.
        tokio::time::sleep(delay.min(left)).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
