//! Rollout in waves, the pure part: wave specs from `--waves 1,10%,rest` or from the config
//! file's `[[env.NAME.rollout]]` entries, the tenant order (`--order-by`), and the plan that
//! deals the tenants with pending work into waves. Running the waves, and the checks between
//! them, are `ops::rollout`'s.

use std::time::Duration;

use serde::Deserialize;

use crate::labels::{Labels, Selector};
use crate::names::SchemaName;

/// How many tenants a wave takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaveSize {
    /// This many.
    Count(usize),
    /// This share (1..=100) of the tenants with pending work when the rollout starts,
    /// rounded up.
    Percent(u32),
    /// Every tenant left.
    Rest,
}

impl WaveSize {
    /// Parses `50`, `10%` or `rest`.
    pub fn parse(raw: &str) -> Result<WaveSize, String> {
        let raw = raw.trim();
        let bad = || format!("wave size `{raw}` is not a count (50), a share (10%) or `rest`");
        if raw == "rest" {
            return Ok(WaveSize::Rest);
        }
        match raw.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u32>() {
                Ok(p @ 1..=100) => Ok(WaveSize::Percent(p)),
                _ => Err(bad()),
            },
            None => match raw.parse::<usize>() {
                Ok(n) if n > 0 => Ok(WaveSize::Count(n)),
                _ => Err(bad()),
            },
        }
    }

    /// How many of `total` tenants this takes (before the wave's own selector).
    fn of(self, total: usize) -> usize {
        match self {
            WaveSize::Count(n) => n,
            WaveSize::Percent(p) => (total * p as usize).div_ceil(100),
            WaveSize::Rest => usize::MAX,
        }
    }
}

impl std::fmt::Display for WaveSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaveSize::Count(n) => write!(f, "{n}"),
            WaveSize::Percent(p) => write!(f, "{p}%"),
            WaveSize::Rest => f.write_str("rest"),
        }
    }
}

/// One wave: how many tenants, of which, and what happens after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wave {
    /// Size.
    pub size: WaveSize,
    /// Only tenants these labels match.
    pub selector: Option<Selector>,
    /// Wait this long after the wave (before the gate, and only when a wave follows).
    pub pause: Option<Duration>,
    /// A shell command run after the wave; a non-zero exit stops the rollout.
    pub gate: Option<String>,
}

/// How long a gate command may run before it is stopped and counts as failed.
pub const GATE_TIMEOUT: Duration = Duration::from_secs(600);

/// Parses `--waves`: comma-separated sizes, e.g. `1,10%,rest`.
pub fn parse_waves(spec: &str) -> Result<Vec<Wave>, String> {
    let waves: Vec<Wave> = spec
        .split(',')
        .map(|raw| {
            Ok(Wave {
                size: WaveSize::parse(raw)?,
                selector: None,
                pause: None,
                gate: None,
            })
        })
        .collect::<Result<_, String>>()?;
    check_rest_last(&waves)?;
    Ok(waves)
}

/// `rest` takes every tenant left, so a wave after it would be empty: refused.
fn check_rest_last(waves: &[Wave]) -> Result<(), String> {
    if let Some(i) = waves
        .iter()
        .position(|w| w.size == WaveSize::Rest && w.selector.is_none())
        && i + 1 < waves.len()
    {
        return Err(format!(
            "wave {} is `rest`, which takes every tenant left, so the waves after it would be empty; make `rest` the last wave",
            i + 1
        ));
    }
    Ok(())
}

/// One `[[env.NAME.rollout]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutEntry {
    /// `50`, `"10%"` or `"rest"`.
    pub size: toml::Spanned<toml::Value>,
    /// A selector.
    #[serde(rename = "where")]
    pub selector: Option<toml::Spanned<String>>,
    /// A duration, e.g. `"10m"`.
    pub pause: Option<toml::Spanned<String>>,
    /// A shell command.
    pub gate: Option<String>,
}

/// The waves of `[[env.NAME.rollout]]` entries; an error names the entry's key and its byte
/// span in the file, for the caller to turn into a line.
pub fn from_entries(
    entries: &[RolloutEntry],
) -> Result<Vec<Wave>, (String, std::ops::Range<usize>, String)> {
    if entries.is_empty() {
        return Err((
            "rollout".to_owned(),
            0..0,
            "no waves: give at least one `[[...rollout]]` entry, or remove `rollout`".to_owned(),
        ));
    }
    let mut waves = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let key = |k: &str| format!("rollout[{i}].{k}");
        let size = match e.size.get_ref() {
            toml::Value::String(s) => WaveSize::parse(s),
            toml::Value::Integer(n) => WaveSize::parse(&n.to_string()),
            other => WaveSize::parse(&other.to_string()),
        }
        .map_err(|r| (key("size"), e.size.span(), r))?;
        let selector = e
            .selector
            .as_ref()
            .map(|s| {
                Selector::parse(s.get_ref()).map_err(|r| (key("where"), s.span(), r.to_string()))
            })
            .transpose()?;
        let pause = e
            .pause
            .as_ref()
            .map(|p| {
                crate::config::parse_duration(p.get_ref())
                    .map_err(|r| (key("pause"), p.span(), r.to_string()))
            })
            .transpose()?;
        let gate = e.gate.clone().filter(|g| !g.trim().is_empty());
        waves.push(Wave {
            size,
            selector,
            pause,
            gate,
        });
    }
    if let Err(r) = check_rest_last(&waves) {
        let at = waves
            .iter()
            .position(|w| w.size == WaveSize::Rest && w.selector.is_none())
            .unwrap_or(0);
        return Err((format!("rollout[{at}].size"), entries[at].size.span(), r));
    }
    Ok(waves)
}

/// The order tenants are taken in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderBy {
    /// By schema name.
    Name,
    /// Oldest registration first.
    Created,
    /// By a label's value; tenants without it last.
    Label(String),
}

impl OrderBy {
    /// Parses `name`, `created` or `label:KEY`.
    pub fn parse(raw: &str) -> Result<OrderBy, String> {
        match raw.trim() {
            "name" => Ok(OrderBy::Name),
            "created" => Ok(OrderBy::Created),
            other => match other.strip_prefix("label:") {
                Some(key) => crate::labels::parse_key(key)
                    .map(OrderBy::Label)
                    .map_err(|e| format!("invalid --order-by `{raw}`: {e}")),
                None => Err(format!(
                    "invalid --order-by `{raw}`: write name, created or label:KEY"
                )),
            },
        }
    }
}

/// A tenant a rollout may take.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its schema.
    pub schema: SchemaName,
    /// When it was registered (RFC 3339, so text order is time order).
    pub created_at: String,
    /// Its labels.
    pub labels: Labels,
}

/// Deals `candidates` (the tenants with pending work) into `waves`, in `order`, each wave
/// from those left that its selector matches; with it, the tenants no wave took.
pub fn plan_waves(
    mut candidates: Vec<Candidate>,
    waves: &[Wave],
    order: &OrderBy,
) -> (Vec<Vec<SchemaName>>, Vec<SchemaName>) {
    match order {
        OrderBy::Name => candidates.sort_by(|a, b| a.schema.cmp(&b.schema)),
        OrderBy::Created => candidates.sort_by(|a, b| {
            (a.created_at.as_str(), &a.schema).cmp(&(b.created_at.as_str(), &b.schema))
        }),
        OrderBy::Label(key) => candidates.sort_by(|a, b| {
            let k = |c: &Candidate| (!c.labels.contains_key(key), c.labels.get(key).cloned());
            (k(a), &a.schema).cmp(&(k(b), &b.schema))
        }),
    }
    let total = candidates.len();
    let mut left: Vec<Option<Candidate>> = candidates.into_iter().map(Some).collect();
    let mut planned = Vec::with_capacity(waves.len());
    for w in waves {
        let mut take = w.size.of(total);
        let mut wave = Vec::new();
        for slot in left.iter_mut() {
            if take == 0 {
                break;
            }
            if slot
                .as_ref()
                .is_some_and(|c| w.selector.as_ref().is_none_or(|s| s.matches(&c.labels)))
                && let Some(c) = slot.take()
            {
                wave.push(c.schema);
                take -= 1;
            }
        }
        planned.push(wave);
    }
    let unplanned = left.into_iter().flatten().map(|c| c.schema).collect();
    (planned, unplanned)
}

/// Why a rollout stopped before its last wave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// More tenants failed than the failure budget allows.
    Budget {
        /// Tenants failed so far.
        failed: usize,
        /// The most allowed.
        allowed: usize,
    },
    /// Tenants the wave reported done are not fully applied (or could not be checked).
    Verify {
        /// What is wrong, per tenant.
        problems: Vec<String>,
    },
    /// The gate command failed.
    Gate {
        /// The command.
        command: String,
        /// How it failed.
        why: String,
    },
    /// The shared schema failed with the first wave (its tenants were skipped).
    Shared,
    /// SIGINT or SIGTERM.
    Signal,
}

/// What one wave of a rollout came to.
#[derive(Debug, Clone)]
pub struct WaveDone {
    /// 1-based.
    pub number: usize,
    /// Its size as specified.
    pub size: WaveSize,
    /// The tenants it took.
    pub schemas: Vec<SchemaName>,
    /// Of those, the ones that failed.
    pub failed: usize,
}

/// What a rollout came to.
#[derive(Debug, Clone)]
pub struct RolloutSummary {
    /// Waves planned.
    pub planned: usize,
    /// Waves run, in order.
    pub done: Vec<WaveDone>,
    /// The wave after which the rollout stopped (1-based), and why.
    pub stopped: Option<(usize, Stopped)>,
    /// Tenants with pending work that no wave started (later waves, or no wave took them).
    pub not_started: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, created: &str, labels: &[(&str, &str)]) -> Candidate {
        Candidate {
            schema: SchemaName::parse(name).unwrap(),
            created_at: created.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn names(w: &[SchemaName]) -> Vec<&str> {
        w.iter().map(SchemaName::as_str).collect()
    }

    #[test]
    fn sizes_parse_and_rest_must_come_last() {
        let w = parse_waves("1, 10%,rest").unwrap();
        assert_eq!(
            w.iter().map(|w| w.size).collect::<Vec<_>>(),
            [WaveSize::Count(1), WaveSize::Percent(10), WaveSize::Rest]
        );
        for bad in ["0", "0%", "101%", "x", "", "1,,2", "-1"] {
            assert!(parse_waves(bad).is_err(), "{bad}");
        }
        assert!(parse_waves("rest,1").unwrap_err().contains("last wave"));
    }

    #[test]
    fn waves_take_in_order_with_shares_rounded_up() {
        let c: Vec<_> = (0..7)
            .map(|i| cand(&format!("t{i}"), &format!("2026-01-0{}", 7 - i), &[]))
            .collect();
        let (w, left) = plan_waves(
            c.clone(),
            &parse_waves("1,20%,rest").unwrap(),
            &OrderBy::Created,
        );
        // Created: t6 oldest. 20% of 7 is 1.4, rounded up to 2.
        assert_eq!(names(&w[0]), ["t6"]);
        assert_eq!(names(&w[1]), ["t5", "t4"]);
        assert_eq!(names(&w[2]), ["t3", "t2", "t1", "t0"]);
        assert!(left.is_empty());
        let (w, left) = plan_waves(c, &parse_waves("2").unwrap(), &OrderBy::Name);
        assert_eq!(names(&w[0]), ["t0", "t1"]);
        assert_eq!(left.len(), 5);
    }

    #[test]
    fn a_wave_selector_and_a_label_order() {
        let c = vec![
            cand("a", "1", &[("ring", "2")]),
            cand("b", "2", &[]),
            cand("c", "3", &[("ring", "1"), ("canary", "yes")]),
            cand("d", "4", &[("ring", "1")]),
        ];
        let canary = Wave {
            size: WaveSize::Rest,
            selector: Some(Selector::parse("canary").unwrap()),
            pause: None,
            gate: None,
        };
        let waves = vec![canary, parse_waves("rest").unwrap().remove(0)];
        let (w, _) = plan_waves(c, &waves, &OrderBy::Label("ring".into()));
        assert_eq!(names(&w[0]), ["c"]);
        // ring 1, then ring 2, then those without the label.
        assert_eq!(names(&w[1]), ["d", "a", "b"]);
    }
}
