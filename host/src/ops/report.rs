//! `wasmig report`: a window of run history (runs, steps applied and their durations,
//! failures, drift found and repaired, heal runs, the slowest schemas) against the window
//! before it, as text, JSON, or one static HTML file with the dashboard (a CI artifact, the
//! weekly report).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::Settings;
use crate::Exit;
use crate::control::{self, Window};
use crate::report::{self, Output, Report};

/// Options of `wasmig report`.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The window.
    pub since: Duration,
    /// As written (`7d`).
    pub since_text: String,
    /// Text or JSON on stdout.
    pub output: Output,
    /// Write the HTML report here instead.
    pub html: Option<PathBuf>,
}

/// Reads the window and the one before it, then prints or writes the report.
pub async fn report(s: &Settings, o: &ReportOptions) -> Result<Exit> {
    let client = s.connect_initialised().await?;
    let secs = o.since.as_secs_f64();
    let at = control::server_now(&client).await?;
    let now = Window {
        from_s: secs,
        to_s: 0.0,
        at,
    };
    let before = Window {
        from_s: 2.0 * secs,
        to_s: secs,
        at,
    };
    let r = Report {
        since_seconds: secs,
        since: o.since_text.clone(),
        current: control::period(&client, now).await?,
        previous: control::period(&client, before).await?,
        failures: control::failure_groups(&client, now, 10).await?,
        slowest: control::slowest(&client, now, 10).await?,
    };
    let Some(path) = &o.html else {
        report::print_report(&r, o.output);
        return Ok(Exit::Ok);
    };
    let snap = crate::serve::snapshot_now(s).await;
    let section = report::report_section(&r, crate::serve::dashboard::esc);
    let html = crate::serve::dashboard::page(
        &snap,
        &crate::serve::dashboard::PageQuery::default(),
        None,
        crate::serve::dashboard::Render {
            report: Some(&section),
            static_file: true,
        },
    );
    // Tenant names and failure messages: readable by its owner only, like every data file.
    crate::files::write_atomic(path, html.as_bytes(), crate::files::Access::Private)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    crate::outln!("report written to {}", path.display());
    Ok(Exit::Ok)
}
