//! A rollout in waves, for people and for `--json`: the wave plan of `migrate --dry-run`,
//! the notes between waves, and what the rollout came to (which wave stopped it and why, how
//! many tenants were not started).

use serde::Serialize;

use crate::names::SchemaName;
use crate::ops::rollout::WavePlan;
use crate::rollout::{RolloutSummary, Stopped, Wave};

/// The first tenants of a long wave listed in text (all of them are in `--json`).
const LISTED: usize = 20;

fn listed(schemas: &[SchemaName]) -> String {
    let names: Vec<&str> = schemas.iter().map(SchemaName::as_str).collect();
    super::first_names(&names, LISTED)
}

/// The wave plan under `migrate --dry-run`.
pub(super) fn print_wave_plan(plan: &WavePlan) {
    for (i, wave) in plan.waves.iter().enumerate() {
        if wave.is_empty() {
            crate::outln!("wave {}: no tenant", i + 1);
        } else {
            crate::outln!("wave {}: {} tenant(s): {}", i + 1, wave.len(), listed(wave));
        }
    }
    if !plan.unplanned.is_empty() {
        crate::outln!(
            "in no wave (not started): {} tenant(s): {}",
            plan.unplanned.len(),
            listed(&plan.unplanned)
        );
    }
}

/// The wave plan in `wasmig.plan/1`.
#[derive(Serialize)]
pub(super) struct WavePlanJson<'a> {
    waves: Vec<Vec<&'a str>>,
    unplanned: Vec<&'a str>,
}

impl<'a> WavePlanJson<'a> {
    pub(super) fn new(plan: &'a WavePlan) -> Self {
        let names = |v: &'a [SchemaName]| v.iter().map(SchemaName::as_str).collect();
        WavePlanJson {
            waves: plan.waves.iter().map(|w| names(w)).collect(),
            unplanned: names(&plan.unplanned),
        }
    }
}

/// A wave starts.
pub fn wave_start(p: &super::Progress, number: usize, of: usize, wave: &Wave, tenants: usize) {
    let filter = wave
        .selector
        .as_ref()
        .map(|s| format!(" where {s}"))
        .unwrap_or_default();
    p.out(&format!(
        "wave {number}/{of} ({}{filter}): {tenants} tenant(s)",
        wave.size
    ));
}

/// The pause after a wave starts.
pub fn wave_pause(p: &super::Progress, number: usize, pause: std::time::Duration) {
    p.out(&format!(
        "wave {number}: verified; pausing {}s",
        pause.as_secs_f64()
    ));
}

/// The gate after a wave runs.
pub fn wave_gate(p: &super::Progress, number: usize, command: &str) {
    p.out(&format!("wave {number}: gate `{command}`"));
}

fn stop_reason(s: &Stopped) -> String {
    match s {
        Stopped::Budget { failed, allowed } => format!(
            "{failed} tenant(s) failed, more than the failure budget of {allowed} (--max-failures)"
        ),
        Stopped::Verify { problems } => {
            format!("verify of its tenants failed: {}", problems.join("; "))
        }
        Stopped::Gate { command, why } => format!("the gate `{command}` failed: {why}"),
        Stopped::Shared => {
            "the shared schema failed (see above), and no tenant may run without it".to_owned()
        }
        Stopped::Signal => "interrupted".to_owned(),
    }
}

/// The rollout's lines after the run summary.
pub(super) fn print_rollout(r: &RolloutSummary) {
    match &r.stopped {
        Some((wave, why)) => crate::errln!(
            "rollout stopped after wave {wave} of {}: {}; {} tenant(s) not started. Run the same command again to resume: tenants already migrated are no-ops",
            r.planned,
            stop_reason(why),
            r.not_started
        ),
        None if r.not_started > 0 => crate::outln!(
            "rollout: {} wave(s) done; {} tenant(s) were in no wave and not started",
            r.done.len(),
            r.not_started
        ),
        None => crate::outln!("rollout: {} wave(s) done", r.done.len()),
    }
}

#[derive(Serialize)]
struct WaveJson<'a> {
    wave: usize,
    size: String,
    schemas: Vec<&'a str>,
    failed_count: usize,
}

#[derive(Serialize)]
struct StopJson {
    wave: usize,
    reason: &'static str,
    message: String,
}

/// `rollout` in `wasmig.migrate/1`.
#[derive(Serialize)]
pub(super) struct RolloutJson<'a> {
    wave_count: usize,
    waves: Vec<WaveJson<'a>>,
    stopped: Option<StopJson>,
    not_started_count: usize,
}

impl<'a> RolloutJson<'a> {
    pub(super) fn new(r: &'a RolloutSummary) -> Self {
        RolloutJson {
            wave_count: r.planned,
            waves: r
                .done
                .iter()
                .map(|w| WaveJson {
                    wave: w.number,
                    size: w.size.to_string(),
                    schemas: w.schemas.iter().map(SchemaName::as_str).collect(),
                    failed_count: w.failed,
                })
                .collect(),
            stopped: r.stopped.as_ref().map(|(wave, why)| StopJson {
                wave: *wave,
                reason: match why {
                    Stopped::Budget { .. } => "failure_budget",
                    Stopped::Verify { .. } => "verify",
                    Stopped::Gate { .. } => "gate",
                    Stopped::Shared => "shared",
                    Stopped::Signal => "signal",
                },
                message: stop_reason(why),
            }),
            not_started_count: r.not_started,
        }
    }
}
