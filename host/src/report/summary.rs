//! The fleet at a glance, for `status` above 50 schemas, `serve`'s dashboard and its API:
//! counts by state, per plugin how many schemas stand at each last-applied step, and the
//! outliers (schemas with something to look at). Pure: built from the status rows.

use std::collections::BTreeMap;

use serde::Serialize;

use super::status::SchemaStatus;
use crate::plan::{PluginSpec, Scope};

/// The state a schema is in, worst first (a schema with several problems takes the worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Ledger rows wasmig did not write.
    Forged,
    /// An applied step changed.
    Drifted,
    /// An unresolved failed step.
    Failed,
    /// Steps not yet applied.
    Pending,
    /// An operator holds steps back (and nothing else is wrong).
    Held,
    /// Everything applied.
    UpToDate,
}

impl State {
    /// Every state, worst first.
    pub const ALL: [State; 6] = [
        State::Forged,
        State::Drifted,
        State::Failed,
        State::Pending,
        State::Held,
        State::UpToDate,
    ];

    /// As flags, documents and labels spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Forged => "forged",
            State::Drifted => "drifted",
            State::Failed => "failed",
            State::Pending => "pending",
            State::Held => "held",
            State::UpToDate => "up_to_date",
        }
    }

    /// Parses [`State::as_str`].
    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The state of one schema.
    pub fn of(r: &SchemaStatus) -> State {
        if !r.forged.is_empty() {
            State::Forged
        } else if !r.drift.is_empty() {
            State::Drifted
        } else if r.last_failure.is_some() {
            State::Failed
        } else if !r.pending.is_empty() {
            State::Pending
        } else if !r.held.is_empty() || !r.holds.is_empty() {
            State::Held
        } else {
            State::UpToDate
        }
    }

    /// The state of one schema as far as `plugin`'s steps go.
    pub fn of_plugin(r: &SchemaStatus, plugin: &str) -> State {
        let mine = |p: &str| p == plugin;
        if r.forged.iter().any(|s| mine(&s.plugin)) {
            State::Forged
        } else if r.drift.iter().any(|d| mine(&d.plugin)) {
            State::Drifted
        } else if r
            .last_failure
            .as_ref()
            .is_some_and(|f| mine(&f.step.plugin))
        {
            State::Failed
        } else if r.pending.iter().any(|s| mine(&s.plugin)) {
            State::Pending
        } else if r.held.iter().any(|s| mine(&s.plugin)) {
            State::Held
        } else {
            State::UpToDate
        }
    }
}

/// How many schemas stand at one step of a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct AtStep {
    /// The last applied step (`None`: none of the plugin's steps yet).
    pub step: Option<String>,
    /// Schemas there.
    pub schema_count: usize,
}

/// One plugin's spread over the fleet.
#[derive(Debug, Clone, Serialize)]
pub struct PluginSpread {
    /// Plugin.
    pub plugin: String,
    /// Shared or tenant.
    pub scope: Scope,
    /// Its newest step.
    pub latest_step: Option<String>,
    /// Schemas by last applied step, most schemas first.
    pub at: Vec<AtStep>,
}

/// A schema worth a look, with what is wrong in words.
#[derive(Debug, Clone, Serialize)]
pub struct Outlier {
    /// Schema.
    pub schema: String,
    /// Its state.
    pub state: State,
    /// What is wrong, in words.
    pub what: String,
}

/// The fleet at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Schemas summarised (the shared one included when it was picked).
    pub schema_count: usize,
    /// Schemas per state (every state present, zeros included).
    #[serde(skip)]
    pub states: BTreeMap<&'static str, usize>,
    /// The same as a list, worst state first: `{state, schema_count}`.
    pub state_counts: Vec<StateCount>,
    /// Per plugin.
    pub plugins: Vec<PluginSpread>,
    /// Schemas not up to date, worst first, at most the limit asked for.
    pub outliers: Vec<Outlier>,
    /// How many outliers there are in all.
    pub outlier_count: usize,
}

/// How many schemas are in one state.
#[derive(Debug, Clone, Serialize)]
pub struct StateCount {
    /// The state.
    pub state: State,
    /// Schemas in it.
    pub schema_count: usize,
}

/// What one schema's row says is wrong, in words.
pub fn what_is_wrong(r: &SchemaStatus) -> String {
    let mut parts = Vec::new();
    if !r.forged.is_empty() {
        parts.push(format!("{} forged ledger row(s)", r.forged.len()));
    }
    for d in &r.drift {
        parts.push(format!("drifted {}/{}", d.plugin, d.step));
    }
    if let Some(f) = &r.last_failure {
        parts.push(format!("failed {f}"));
    }
    if !r.pending.is_empty() {
        let first: Vec<String> = r.pending.iter().take(3).map(ToString::to_string).collect();
        let more = r.pending.len().saturating_sub(3);
        parts.push(format!(
            "{} pending ({}{})",
            r.pending.len(),
            first.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    if !r.holds.is_empty() {
        parts.push(format!(
            "{}; {} step(s) waiting",
            r.holds_text(),
            r.held.len()
        ));
    }
    parts.join("; ")
}

/// Summarises `rows`; `plugins` narrows the per-plugin spread to those named (all when
/// empty); at most `limit` outliers are listed.
pub fn summarise(
    specs: &[PluginSpec],
    rows: &[SchemaStatus],
    plugins: &[String],
    limit: usize,
) -> Summary {
    let mut states: BTreeMap<&'static str, usize> =
        State::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    let mut outliers: Vec<Outlier> = Vec::new();
    for r in rows {
        let st = State::of(r);
        *states.entry(st.as_str()).or_default() += 1;
        if st != State::UpToDate {
            outliers.push(Outlier {
                schema: r.schema.clone(),
                state: st,
                what: what_is_wrong(r),
            });
        }
    }
    outliers.sort_by(|a, b| a.state.cmp(&b.state).then_with(|| a.schema.cmp(&b.schema)));
    let outlier_count = outliers.len();
    outliers.truncate(limit);
    let spread = specs
        .iter()
        .filter(|p| plugins.is_empty() || plugins.contains(&p.name))
        .map(|p| {
            let mut at: BTreeMap<Option<&str>, usize> = BTreeMap::new();
            for r in rows.iter().filter(|r| r.scope == p.scope) {
                *at.entry(r.last_applied(&p.name)).or_default() += 1;
            }
            let mut at: Vec<AtStep> = at
                .into_iter()
                .map(|(step, n)| AtStep {
                    step: step.map(str::to_owned),
                    schema_count: n,
                })
                .collect();
            at.sort_by(|a, b| {
                b.schema_count
                    .cmp(&a.schema_count)
                    .then(b.step.cmp(&a.step))
            });
            PluginSpread {
                plugin: p.name.clone(),
                scope: p.scope,
                latest_step: p.steps.last().map(|s| s.id.clone()),
                at,
            }
        })
        .collect();
    Summary {
        schema_count: rows.len(),
        state_counts: State::ALL
            .iter()
            .map(|s| StateCount {
                state: *s,
                schema_count: states.get(s.as_str()).copied().unwrap_or(0),
            })
            .collect(),
        states,
        plugins: spread,
        outliers,
        outlier_count,
    }
}

/// The summary as text, for `wasmig status`.
pub fn print_summary(s: &Summary) {
    let count = |st: State| s.states.get(st.as_str()).copied().unwrap_or(0);
    crate::outln!(
        "{} schema(s): {} up to date, {} pending, {} held, {} failed, {} drifted, {} forged",
        s.schema_count,
        count(State::UpToDate),
        count(State::Pending),
        count(State::Held),
        count(State::Failed),
        count(State::Drifted),
        count(State::Forged)
    );
    crate::outln!("");
    crate::outln!(
        "{:<28} {:<40} {:>8}",
        "PLUGIN",
        "LAST APPLIED STEP",
        "SCHEMAS"
    );
    for p in &s.plugins {
        for (i, a) in p.at.iter().enumerate() {
            let step = a.step.as_deref().unwrap_or("(none)");
            let latest = if a.step == p.latest_step {
                " (latest)"
            } else {
                ""
            };
            crate::outln!(
                "{:<28} {:<40} {:>8}",
                if i == 0 { p.plugin.as_str() } else { "" },
                format!("{step}{latest}"),
                a.schema_count
            );
        }
    }
    if s.outlier_count == 0 {
        return;
    }
    crate::outln!("");
    crate::outln!(
        "not up to date ({} of {}{}):",
        s.outliers.len(),
        s.outlier_count,
        if s.outliers.len() < s.outlier_count {
            "; --limit N shows more, --all every schema"
        } else {
            ""
        }
    );
    for o in &s.outliers {
        crate::outln!("  {:<28} {:<10} {}", o.schema, o.state.as_str(), o.what);
    }
}
