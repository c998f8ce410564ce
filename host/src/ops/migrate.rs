//! `wasmig migrate` (and the migration half of `tenant create`).

use anyhow::{Result, bail};

use super::{Settings, load_plugins, registry};
use crate::Exit;
use crate::control::{self, ManagedSchema};
use crate::exec::{RunOptions, SchemaReport};
use crate::labels::Selector;
use crate::names::SchemaName;
use crate::plan::{Scope, Selection, Target, plan_schema};
use crate::report;

/// Which schemas a run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeFilter {
    /// Shared then tenants.
    All,
    /// Only the shared schema.
    SharedOnly,
    /// Only tenants.
    TenantsOnly,
}

/// How many schemas of a run may fail before no new one starts (`--max-failures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureBudget {
    /// This many.
    Count(usize),
    /// This share (percent, 0..=100) of the run's schemas, rounded down.
    Percent(u32),
}

impl FailureBudget {
    /// Parses `N` or `P%`.
    pub fn parse(raw: &str) -> Result<FailureBudget> {
        let bad = || {
            anyhow::anyhow!(
                "invalid --max-failures `{raw}`: write a count (5) or a share of the run's schemas (5%)"
            )
        };
        match raw.strip_suffix('%') {
            Some(p) => {
                let p: u32 = p.trim().parse().map_err(|_| bad())?;
                if p > 100 {
                    return Err(bad());
                }
                Ok(FailureBudget::Percent(p))
            }
            None => Ok(FailureBudget::Count(raw.trim().parse().map_err(|_| bad())?)),
        }
    }

    /// The most failures allowed in a run of `schemas` schemas.
    pub fn of(self, schemas: usize) -> usize {
        match self {
            FailureBudget::Count(n) => n,
            FailureBudget::Percent(p) => schemas * p as usize / 100,
        }
    }
}

/// Options of `wasmig migrate`.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Scope filter.
    pub scope: ScopeFilter,
    /// Only these tenant schemas (empty = all).
    pub schemas: Vec<SchemaName>,
    /// Only the tenants whose labels match (tenants only, like `schemas`).
    pub selector: Option<Selector>,
    /// Only these plugins.
    pub selection: Selection,
    /// Plan only.
    pub dry_run: bool,
    /// JSON output.
    pub output: report::Output,
    /// What to record as the run's command.
    pub command: String,
    /// Dump each schema with pending steps first, and prune old dumps after.
    pub backup: Option<crate::backup::Policy>,
    /// Once more schemas than this failed, no new schema starts (none: no limit; in waves,
    /// none).
    pub max_failures: Option<FailureBudget>,
    /// Roll out in waves (none: every schema at once).
    pub rollout: Option<super::rollout::RolloutOptions>,
    /// Where a failed or interrupted run is notified.
    pub notify: Option<crate::notify::Notify>,
}

fn targets(s: &Settings, reg: &[ManagedSchema], o: &MigrateOptions) -> Result<Vec<Target>> {
    for wanted in &o.schemas {
        if *wanted == s.shared_schema {
            bail!("`{wanted}` is the shared schema; use `wasmig migrate --shared`");
        }
        if !reg
            .iter()
            .any(|m| m.schema == *wanted && m.scope == Scope::Tenant)
        {
            bail!(
                "tenant `{wanted}` is not registered; create it with `wasmig tenant create {wanted}`"
            );
        }
    }
    let mut out = Vec::new();
    if o.scope != ScopeFilter::TenantsOnly && o.schemas.is_empty() && o.selector.is_none() {
        out.push(Target {
            schema: s.shared_schema.clone(),
            scope: Scope::Shared,
        });
    }
    if o.scope != ScopeFilter::SharedOnly {
        out.extend(
            reg.iter()
                .filter(|m| super::picked(m, &o.schemas, o.selector.as_ref()))
                .map(|m| Target {
                    schema: m.schema.clone(),
                    scope: Scope::Tenant,
                }),
        );
    }
    Ok(out)
}

/// The workers a run of `targets` schemas can have without opening more sessions than the
/// server and the database accept: `jobs`, or fewer (said on stderr); refused, with the
/// numbers, when not even one worker fits.
async fn jobs_that_fit(op: &tokio_postgres::Client, jobs: usize, targets: usize) -> Result<usize> {
    let wanted = jobs.min(targets.max(1));
    let (free, why) = control::free_connections(op).await?;
    let fit = crate::exec::jobs_that_fit(free, wanted);
    if fit == 0 {
        bail!(
            "the server accepts too few connections for a run: {why}; a run needs {} (one worker) beside this one. Close idle sessions or raise the limit",
            crate::exec::sessions_needed(1)
        );
    }
    if fit < wanted {
        crate::report::notes::jobs_lowered(wanted, fit, crate::exec::sessions_needed(fit), &why);
    }
    Ok(fit)
}

/// Plans and (unless dry-run) applies; prints progress and a summary.
pub async fn migrate(s: &Settings, o: &MigrateOptions) -> Result<Exit> {
    // Long: the run record, the lock watch, progress and the summary wrap one run; each step of the story is a call.
    // Before any I/O on the database: a missing pg_dump refuses the whole run.
    let backups = match &o.backup {
        Some(b) if !o.dry_run => Some(crate::backup::Backups::new(&b.dir)?),
        _ => None,
    };
    let plugins = load_plugins(s).await?;
    o.selection.validate(&plugins.specs)?;
    let op = s.connect_initialised().await?;
    let reg = registry(&op, s).await?;
    let targets = targets(s, &reg, o)?;
    if let Some(sel) = &o.selector
        && targets.is_empty()
    {
        return Ok(super::nothing_picked(sel));
    }

    let secret = control::read_secret(&op).await?;
    // The whole ledger in one query: planning costs O(1) round trips in the number of schemas.
    let ledger = control::read_ledger(&op, None, &secret).await?;
    // Only the plugins this run could start: a tenant plugin that needs more than it was
    // granted does not hold up `migrate --shared`.
    let runnable: Vec<_> = plugins
        .specs
        .iter()
        .filter(|p| targets.iter().any(|t| t.scope == p.scope) && o.selection.includes(&p.name))
        .cloned()
        .collect();
    super::check_tiers_granted(s, &runnable)?;
    // A step edited after it was applied somewhere (drift, in any schema of the fleet, not
    // only this run's) is held everywhere until a person reviews it: see
    // `plan::held_edited_steps`.
    let fleet_plans: Vec<(&str, crate::plan::SchemaPlan)> = reg
        .iter()
        .map(|m| {
            let l = ledger.get(m.schema.as_str()).map_or(&[][..], Vec::as_slice);
            let all = crate::plan::Selection::default();
            let plan = plan_schema(
                &plugins.specs,
                &plugins.order,
                (m.schema.as_str(), m.scope),
                &all,
                l,
            );
            (m.schema.as_str(), plan)
        })
        .collect();
    let selection = crate::plan::Selection {
        held: crate::plan::held_edited_steps(fleet_plans.iter().map(|(s, p)| (*s, p))),
        holds: control::read_holds(&op).await?,
        ..o.selection.clone()
    };
    drop(fleet_plans);
    // Every target planned once from the snapshot: for the waves, the dry run and the texts
    // to keep (the fleet plans again under each schema's lock).
    let empty = Vec::new();
    let plans: Vec<_> = targets
        .iter()
        .map(|t| {
            let l = ledger.get(t.schema.as_str()).unwrap_or(&empty);
            plan_schema(
                &plugins.specs,
                &plugins.order,
                (t.schema.as_str(), t.scope),
                &selection,
                l,
            )
        })
        .collect();
    let total = targets.len();
    report::notes::held_back(
        targets
            .iter()
            .zip(&plans)
            .filter(|(_, p)| !p.on_hold.is_empty())
            .map(|(t, p)| (t.schema.as_str(), p.on_hold.len())),
        &selection.holds,
    );
    let waves = o.rollout.as_ref().map(|r| {
        let needs_work: std::collections::HashSet<&SchemaName> = targets
            .iter()
            .zip(&plans)
            .filter(|(_, p)| p.refused() || !p.pending.is_empty())
            .map(|(t, _)| &t.schema)
            .collect();
        super::rollout::deal(targets.clone(), &reg, |t| needs_work.contains(&t.schema), r)
    });
    if o.dry_run {
        let problems = plans.iter().any(crate::plan::SchemaPlan::refused);
        let plans: Vec<_> = targets.iter().zip(plans).collect();
        report::print_plan(&plugins.specs, &plans, waves.as_ref(), o.output);
        return Ok(if problems { Exit::Problems } else { Exit::Ok });
    }

    let enforcement = super::check_tiers_enforced(&op, s, &plugins.specs).await?;
    let jobs = jobs_that_fit(&op, s.jobs, targets.len()).await?;
    // The texts of the steps this run may record (the plan can only shrink under the locks).
    let pending: Vec<_> = plans.into_iter().flat_map(|p| p.pending).collect();
    super::keep_step_texts(&op, &plugins.specs, pending).await?;
    control::clear_expired_grants(&op).await?;
    let run_id = control::start_run(&op, &o.command, &s.args).await?;
    // From here on a first SIGINT / SIGTERM stops the run cleanly (see `interrupt`).
    let _clean_stop = crate::interrupt::CleanStop::begin();
    let fleet = super::fleet(s, plugins, secret, &reg, backups, enforcement);
    let opts = RunOptions {
        run_id,
        selection: selection.clone(),
        jobs,
        max_failures: o.max_failures.map(|b| b.of(total)),
        failed_before: 0,
    };
    let started = std::time::Instant::now();
    let progress =
        report::Progress::new(targets.len(), o.output == report::Output::Text && !s.quiet);
    let on_done = |r: &SchemaReport| {
        progress.out(&report::schema_line(r));
        progress.inc();
    };
    let (reports, rollout) = match (&o.rollout, waves) {
        (Some(r), Some(plan)) => {
            let run = super::rollout::WaveRun {
                fleet: &fleet,
                op: &op,
                ledger: &ledger,
                opts: &opts,
                on_done: &on_done,
                selection: &selection,
                waves: &r.waves,
                // In waves, a failure stops the rollout unless a budget says otherwise.
                allowed: o.max_failures.map_or(0, |b| b.of(total)),
                progress: &progress,
            };
            let (reports, summary) = super::rollout::run(&run, plan).await;
            (reports, Some(summary))
        }
        _ => (
            fleet.migrate(&op, targets, &ledger, &opts, &on_done).await,
            None,
        ),
    };
    progress.finish();
    let worked: Vec<(&str, &str, i32, f64)> = reports
        .iter()
        .filter(|r| !matches!(r.outcome, crate::exec::Outcome::UpToDate))
        .map(|r| {
            let retries = i32::try_from(r.retries).unwrap_or(i32::MAX);
            (
                r.schema.as_str(),
                r.outcome.name(),
                retries,
                r.duration.as_secs_f64(),
            )
        })
        .collect();
    // The results stand even if they cannot be recorded (e.g. the server restarted).
    if let Err(e) = control::record_run_schemas(&op, run_id, &worked).await {
        tracing::warn!("could not record what each schema of run {run_id} came to: {e}");
    }
    let applied: usize = reports.iter().map(report::applied_steps).sum();
    let failed = reports.iter().filter(|r| r.outcome.is_problem()).count();
    let signal = crate::interrupt::received();
    // A rollout stopped by its checks did not do what it was asked, even with no failure.
    let stopped = rollout.as_ref().is_some_and(|r| r.stopped.is_some());
    let outcome = match (signal, failed, stopped) {
        (Some(_), _, _) => control::RunOutcome::Interrupted,
        (None, 0, false) => control::RunOutcome::Ok,
        (None, _, _) => control::RunOutcome::Failed,
    };
    // The results stand even if the run record cannot be closed (e.g. the server restarted).
    if let Err(e) = control::finish_run(&op, run_id, outcome, applied as i32, failed as i32).await {
        tracing::warn!("could not record the end of run {run_id}: {e}");
    }
    report::print_run_summary(
        run_id,
        &reports,
        started.elapsed(),
        o.output,
        rollout.as_ref(),
    );
    if let Some(n) = &o.notify
        && outcome != control::RunOutcome::Ok
    {
        notify_run(n, &op, run_id, &s.target.to_string(), outcome).await;
    }
    // Old dumps go only after a run that ended ok: after a failure, an operator may want
    // every dump there is.
    if outcome == control::RunOutcome::Ok
        && let Some(crate::backup::Policy {
            dir,
            keep_days: Some(days),
        }) = &o.backup
    {
        // Retention never fails the run: what it could not remove is said.
        match crate::backup::prune(dir, *days) {
            Ok(n) => report::notes::backups_pruned(dir, n, *days),
            Err(e) => crate::errln!("warning: backups were not pruned: {e}"),
        }
    }
    if let Some(sig) = signal {
        return Ok(Exit::from_signal(sig));
    }
    Ok(if failed == 0 && !stopped {
        Exit::Ok
    } else {
        Exit::Problems
    })
}

/// Posts run `run_id`'s summary and document to `n` (never fails the run: see `notify`).
async fn notify_run(
    n: &crate::notify::Notify,
    op: &tokio_postgres::Client,
    run_id: i64,
    database: &str,
    outcome: control::RunOutcome,
) {
    let detail = match control::run_detail(op, run_id).await {
        Ok(Some((run, schemas))) => {
            let failed: Vec<&str> = schemas
                .iter()
                .filter(|s| !s.failures.is_empty() || s.outcome != "applied")
                .map(|s| s.schema.as_str())
                .collect();
            let text = format!(
                "wasmig run {run_id} (`{}`) on {database} ended {}: {} step(s) applied, {} schema(s) not done{}. See `wasmig history --run {run_id}`.",
                run.command,
                outcome.as_str(),
                run.applied.unwrap_or(0),
                failed.len(),
                if failed.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({})",
                        crate::text::inert(
                            &failed
                                .iter()
                                .take(10)
                                .copied()
                                .collect::<Vec<_>>()
                                .join(", "),
                            400
                        )
                    )
                }
            );
            crate::notify::body(&text, &report::run_detail_json(&run, &schemas))
        }
        Ok(None) | Err(_) => crate::notify::body(
            &format!(
                "wasmig run {run_id} on {database} ended {}; its record could not be read",
                outcome.as_str()
            ),
            "null",
        ),
    };
    n.send(detail).await;
}
