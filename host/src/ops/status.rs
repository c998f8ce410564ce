//! `wasmig status` and `wasmig verify`: per schema, applied / pending / drifted / forged /
//! unknown steps and the last unresolved failure, from one read of the registry, one of the
//! whole ledger and one of the failures, whatever the number of tenants.

use anyhow::Result;

use super::{Settings, load_plugins_to_read, registry};
use crate::Exit;
use crate::control;
use crate::labels::Selector;
use crate::names::SchemaName;
use crate::plan::{PluginSpec, Scope, Selection, plan_schema};
use crate::report::{self, SchemaStatus};

/// Which schemas to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which<'a> {
    /// The shared schema and every tenant.
    All,
    /// Tenants only: those named (all of them when none is) that `--where` picks.
    Tenants(&'a [SchemaName], Option<&'a Selector>),
}

/// What [`collect`] found: the plugins' manifests, one status row per schema, and what the
/// trust policy or the lock file say against the loaded plugins (reported, never refused,
/// by commands that only read).
pub struct Collected {
    /// Every manifest.
    pub specs: Vec<PluginSpec>,
    /// One row per selected schema.
    pub rows: Vec<SchemaStatus>,
    /// Plugin problems, each with what to do.
    pub plugin_problems: Vec<String>,
}

/// Plans every selected schema against its ledger rows and returns one status row each.
pub async fn collect(s: &Settings, which: Which<'_>, selection: &Selection) -> Result<Collected> {
    let (plugins, plugin_problems) = load_plugins_to_read(s).await?;
    selection.validate(&plugins.specs)?;
    let db_started = std::time::Instant::now();
    let client = s.connect_initialised().await?;
    let reg = registry(&client, s).await?;
    if let Which::Tenants(wanted, _) = which {
        super::require_tenants(&reg, wanted)?;
    }
    let secret = control::read_secret(&client).await?;
    let ledger = control::read_ledger(&client, None, &secret).await?;
    let failures = control::last_failures(&client).await?;
    let selection = &Selection {
        holds: control::read_holds(&client).await?,
        ..selection.clone()
    };
    tracing::debug!(
        "database work took {:.1} ms",
        db_started.elapsed().as_secs_f64() * 1000.0
    );
    let empty = Vec::new();
    let rows = reg
        .iter()
        .filter(|m| match which {
            Which::All => m.scope == Scope::Tenant || m.schema == s.shared_schema,
            Which::Tenants(named, selector) => super::picked(m, named, selector),
        })
        .map(|m| {
            let l = ledger.get(m.schema.as_str()).unwrap_or(&empty);
            let plan = plan_schema(
                &plugins.specs,
                &plugins.order,
                (m.schema.as_str(), m.scope),
                selection,
                l,
            );
            let failure = failures
                .get(m.schema.as_str())
                .filter(|f| still_declared(&plugins.specs, f));
            let holds = selection
                .holds
                .iter()
                .filter(|h| h.schema == m.schema.as_str());
            SchemaStatus::new(m, &plugins.specs, &plan, failure).with_holds(holds)
        })
        .collect();
    Ok(Collected {
        specs: plugins.specs,
        rows,
        plugin_problems,
    })
}

/// Whether a failure still counts: a step its plugin no longer declares cannot be run again,
/// so its failure is resolved (a plugin that is not loaded cannot say, so its failures stay).
fn still_declared(specs: &[PluginSpec], f: &control::StepFailureRecord) -> bool {
    specs
        .iter()
        .find(|p| p.name == f.plugin)
        .is_none_or(|p| p.steps.iter().any(|st| st.id == f.step))
}

/// Above this many schemas, `status` prints the fleet's summary unless `--all` is given.
pub const SUMMARY_ABOVE: usize = 50;

/// Options of `wasmig status`.
#[derive(Debug, Clone, Default)]
pub struct StatusOptions {
    /// JSON output.
    pub output: report::Output,
    /// Only these tenants (the shared schema too when none is named and no selector given).
    pub schemas: Vec<SchemaName>,
    /// Only the tenants whose labels match.
    pub selector: Option<Selector>,
    /// Only these plugins' steps count.
    pub plugins: Vec<String>,
    /// Only schemas that are not up to date.
    pub problems: bool,
    /// Every schema, however many.
    pub all: bool,
    /// At most this many outliers in the summary.
    pub limit: usize,
}

/// Prints the status of the schemas picked: a row each up to [`SUMMARY_ABOVE`] schemas (or
/// with `--all`), else the fleet's summary (per plugin, schemas by last applied step; counts
/// by state; the outliers).
pub async fn status(s: &Settings, o: &StatusOptions) -> Result<Exit> {
    let which = if o.schemas.is_empty() && o.selector.is_none() {
        Which::All
    } else {
        Which::Tenants(&o.schemas, o.selector.as_ref())
    };
    let c = collect(s, which, &Selection::default()).await?;
    if let Some(sel) = &o.selector
        && c.rows.is_empty()
    {
        return Ok(super::nothing_picked(sel));
    }
    let known: Vec<&str> = c.specs.iter().map(|p| p.name.as_str()).collect();
    if let Some(unknown) = o.plugins.iter().find(|p| !known.contains(&p.as_str())) {
        anyhow::bail!(
            "`--plugin {unknown}`: no loaded plugin has that name (loaded: {})",
            known.join(", ")
        );
    }
    let mut rows: Vec<SchemaStatus> = if o.plugins.is_empty() {
        c.rows
    } else {
        c.rows.iter().map(|r| r.only_plugins(&o.plugins)).collect()
    };
    if o.problems {
        rows.retain(|r| report::State::of(r) != report::State::UpToDate);
    }
    for p in &c.plugin_problems {
        crate::errln!("problem: {p}");
    }
    let summary = report::summarise(&c.specs, &rows, &o.plugins, o.limit);
    let whole = o.all || rows.len() <= SUMMARY_ABOVE;
    report::print_status(&c.specs, &rows, &summary, whole, o.output);
    Ok(Exit::Ok)
}
