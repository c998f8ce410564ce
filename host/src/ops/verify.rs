//! `wasmig verify [--fix]`: are all tenants fully applied? `wasmig verify --structure`: do
//! tenants at the same ledger state have the same catalog structure? Exit 0 yes, 1 no, 2 error.

use anyhow::Result;

use super::Settings;
use super::migrate::{MigrateOptions, ScopeFilter, migrate};
use super::status::{Which, collect};
use crate::Exit;
use crate::control;
use crate::labels::Selector;
use crate::names::SchemaName;
use crate::plan::Scope;
use crate::plan::Selection;
use crate::report;
use crate::structure;

/// Options of `wasmig verify`.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Apply what is pending first, then verify.
    pub fix: bool,
    /// JSON output.
    pub output: report::Output,
    /// Only these tenants (empty = all).
    pub tenants: Vec<SchemaName>,
    /// Only the tenants whose labels match.
    pub selector: Option<Selector>,
    /// Only these plugins.
    pub selection: Selection,
    /// With `fix`: dump each schema first, prune old dumps after.
    pub backup: Option<crate::backup::Policy>,
    /// What the fix's run records as its command (`verify --fix`, `serve --heal-every`).
    pub command: String,
    /// Where a fix that failed or was interrupted is notified.
    pub notify: Option<crate::notify::Notify>,
}

/// Checks tenants; with `fix`, migrates them first.
pub async fn verify(s: &Settings, o: &VerifyOptions) -> Result<Exit> {
    // The shared schema is part of the fleet: verified (and fixed) with it, unless only some
    // tenants were asked for.
    let whole_fleet = o.tenants.is_empty() && o.selector.is_none();
    if o.fix {
        let fix = MigrateOptions {
            scope: if whole_fleet {
                ScopeFilter::All
            } else {
                ScopeFilter::TenantsOnly
            },
            schemas: o.tenants.clone(),
            selector: o.selector.clone(),
            selection: o.selection.clone(),
            dry_run: false,
            output: crate::report::Output::Text,
            command: o.command.clone(),
            backup: o.backup.clone(),
            max_failures: None,
            rollout: None,
            notify: o.notify.clone(),
        };
        // Failures are reported by the run and show up again in the verification below.
        let quiet = Settings {
            quiet: s.quiet || o.output == report::Output::Json,
            ..s.clone()
        };
        // With --json, stdout carries the one verify document: the fix's report goes to
        // stderr.
        crate::out::divert_stdout_to_stderr(o.output == report::Output::Json);
        let fixed = migrate(&quiet, &fix).await;
        crate::out::divert_stdout_to_stderr(false);
        fixed?;
    }
    let which = if whole_fleet {
        Which::All
    } else {
        Which::Tenants(&o.tenants, o.selector.as_ref())
    };
    let c = collect(s, which, &o.selection).await?;
    if let Some(sel) = &o.selector
        && c.rows.is_empty()
    {
        return Ok(super::nothing_picked(sel));
    }
    let ok = report::print_verify(&c.rows, &c.plugin_problems, o.output, s.quiet);
    Ok(if ok { Exit::Ok } else { Exit::Problems })
}

/// Options of `wasmig verify --structure`.
#[derive(Debug, Clone)]
pub struct StructureOptions {
    /// JSON output.
    pub output: report::Output,
    /// Only these tenants (empty = all).
    pub tenants: Vec<SchemaName>,
    /// Only the tenants whose labels match (and the reference).
    pub selector: Option<Selector>,
    /// Compare with this tenant instead of each ledger state's most common structure.
    pub reference: Option<SchemaName>,
}

/// Fewest schemas worth a connection of their own when fingerprints are read.
const FINGERPRINTS_PER_CONNECTION: usize = 250;

/// Compares the catalog structure of the tenants: one query per connection (at most `jobs`)
/// for every fingerprint, one for the objects of the tenants that differ (at most
/// [`structure::SHOWN_DIFFERENCES`]) and their baselines.
pub async fn verify_structure(s: &Settings, o: &StructureOptions) -> Result<Exit> {
    let client = s.connect_initialised().await?;
    let reg = super::registry(&client, s).await?;
    super::require_tenants(&reg, o.tenants.iter().chain(&o.reference))?;
    let schemas: Vec<SchemaName> = reg
        .into_iter()
        .filter(|m| {
            super::picked(m, &o.tenants, o.selector.as_ref())
                || (m.scope == Scope::Tenant && o.reference.as_ref() == Some(&m.schema))
        })
        .map(|m| m.schema)
        .collect();
    if let Some(sel) = &o.selector
        && schemas.is_empty()
    {
        return Ok(super::nothing_picked(sel));
    }
    let secret = control::read_secret(&client).await?;
    let ledger = control::read_ledger(&client, None, &secret).await?;
    // The catalogs are deparsed by the server: split over up to `jobs` connections (a share
    // below a few hundred schemas is not worth a connection).
    let mut clients = vec![client];
    for _ in 1..s
        .jobs
        .min(schemas.len().div_ceil(FINGERPRINTS_PER_CONNECTION))
    {
        clients.push(s.target.connect().await?);
    }
    let mut fingerprints = control::fingerprints(&clients, &schemas).await?;
    let client = &clients[0];
    let members = schemas
        .into_iter()
        .map(|schema| structure::Member {
            ledger: ledger
                .get(schema.as_str())
                .map(|l| structure::LedgerState::of(l))
                .unwrap_or_default(),
            fingerprint: fingerprints.remove(schema.as_str()),
            schema,
        })
        .collect();
    let judgement = structure::judge(members, o.reference.as_ref()).map_err(anyhow::Error::msg)?;
    let mut shown = vec![];
    let mut read = vec![];
    for c in judgement.cohorts.iter().filter(|c| !c.differing.is_empty()) {
        let room = structure::SHOWN_DIFFERENCES.saturating_sub(shown.len());
        if room == 0 {
            break;
        }
        read.push(c.baseline.0.clone());
        for (t, _) in c.differing.iter().take(room) {
            shown.push((t.clone(), c.baseline.0.clone()));
            read.push(t.clone());
        }
    }
    let objects = if read.is_empty() {
        Default::default()
    } else {
        control::objects(client, &read).await?
    };
    let none = vec![];
    let differences = shown
        .into_iter()
        .map(|(t, base)| {
            let d = structure::differences(
                objects.get(base.as_str()).unwrap_or(&none),
                objects.get(t.as_str()).unwrap_or(&none),
            );
            (t.as_str().to_owned(), d)
        })
        .collect();
    let ok = report::print_structure(&judgement, &differences, o.output, s.quiet);
    Ok(if ok { Exit::Ok } else { Exit::Problems })
}
