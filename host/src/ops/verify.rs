//! `wasmig verify [--fix]`: are all tenants fully applied? Exit 0 yes, 1 no, 2 error.

use anyhow::Result;

use super::Settings;
use super::migrate::{MigrateOptions, ScopeFilter, migrate};
use super::status::{Which, collect};
use crate::Exit;
use crate::names::SchemaName;
use crate::plan::Selection;
use crate::report;

/// Options of `wasmig verify`.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Apply what is pending first, then verify.
    pub fix: bool,
    /// JSON output.
    pub output: report::Output,
    /// Only these tenants (empty = all).
    pub tenants: Vec<SchemaName>,
    /// Only these plugins.
    pub selection: Selection,
}

/// Checks tenants; with `fix`, migrates them first.
pub async fn verify(s: &Settings, o: &VerifyOptions) -> Result<Exit> {
    if o.fix {
        let fix = MigrateOptions {
            scope: ScopeFilter::TenantsOnly,
            schemas: o.tenants.clone(),
            selection: o.selection.clone(),
            dry_run: false,
            output: crate::report::Output::Text,
            command: "verify --fix".into(),
            backup_dir: None,
        };
        // Failures are reported by the run and show up again in the verification below.
        let quiet = Settings {
            quiet: s.quiet || o.output == report::Output::Json,
            ..s.clone()
        };
        migrate(&quiet, &fix).await?;
    }
    let (_, rows) = collect(s, Which::Tenants(&o.tenants), &o.selection).await?;
    let ok = report::print_verify(&rows, o.output, s.quiet);
    Ok(if ok { Exit::Ok } else { Exit::Problems })
}
