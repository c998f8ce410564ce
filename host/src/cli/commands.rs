//! Each parsed command turned into its operation's own options (names validated, durations
//! parsed, destructive commands confirmed), then handed to that operation.

use anyhow::Result;

use super::{Cli, Command, MetricsFormat, MigrateArgs, PluginCommand, TenantCommand, VerifyArgs};
use crate::names::SchemaName;
use crate::ops::{self, Invocation, Settings};
use crate::report::Output;
use crate::{Exit, config, plan};

/// Runs a parsed command line in `process` (its arguments and environment).
pub async fn run(cli: Cli, process: &Invocation) -> Result<Exit> {
    // The author's commands need no database, so no database settings.
    match cli.command {
        Command::New {
            name,
            seed,
            shared,
            dir,
            sdk,
        } => {
            let o = ops::scaffold::NewOptions {
                name,
                seed,
                shared,
                dir,
                sdk,
            };
            return ops::scaffold::new(&o);
        }
        Command::Build { crates, out } => {
            let off = super::settings::offline(&cli.global, process)?;
            return ops::scaffold::build(&off, &ops::scaffold::BuildOptions { crates, out }).await;
        }
        Command::Plugin(p) => {
            let off = super::settings::offline(&cli.global, process)?;
            return match p {
                PluginCommand::Inspect { file, json } => {
                    ops::author::inspect(&off, &file, Output::from_json_flag(json)).await
                }
                PluginCommand::Check { dir, json } => {
                    ops::author::check(&off, dir.as_deref(), Output::from_json_flag(json)).await
                }
            };
        }
        _ => {}
    }
    let s = super::settings::settings(&cli.global, process)?;
    match cli.command {
        Command::New { .. } | Command::Build { .. } | Command::Plugin(_) => {
            unreachable!("handled above")
        }
        Command::Init(a) => ops::init::init(
            &s,
            &ops::init::InitOptions {
                tenant_app_roles: a.tenant_app_roles,
            },
        )
        .await
        .map(|()| Exit::Ok),
        Command::Tenant(t) => tenant(&s, t).await,
        Command::Migrate(a) => ops::migrate::migrate(&s, &migrate_options(&s, a)?).await,
        Command::Status(a) => {
            let o = ops::status::StatusOptions {
                output: Output::from_json_flag(a.json),
                schemas: a
                    .schemas
                    .iter()
                    .map(|raw| ops::tenant::tenant_name(&s, raw))
                    .collect::<Result<Vec<_>>>()?,
                selector: selector(a.selector.as_deref())?,
                plugins: a.plugins,
                problems: a.problems,
                all: a.all,
                limit: a.limit,
            };
            ops::status::status(&s, &o).await
        }
        Command::Verify(a) if a.structure => {
            ops::verify::verify_structure(&s, &structure_options(&s, a)?).await
        }
        Command::Verify(a) => ops::verify::verify(&s, &verify_options(&s, a)?).await,
        Command::Pin { names } => ops::pin::pin(&s, &names).await,
        Command::Restore {
            file,
            schema,
            hold,
            yes,
        } => {
            let schema = SchemaName::parse_shared(&schema)?;
            ops::confirm(yes, || {
                format!(
                    "restoring `{schema}` from `{}` replaces the schema, all its current data and its ledger rows",
                    file.display()
                )
            })?;
            if hold.as_deref().is_some_and(|r| r.trim().is_empty()) {
                anyhow::bail!("--hold is empty: say why the schema is held");
            }
            let o = ops::ledger::RestoreOptions { file, schema, hold };
            ops::ledger::restore(&s, &o).await
        }
        Command::Revert {
            pick,
            plugin,
            to,
            run,
            hold,
            yes,
        } => {
            let pick = schema_pick(pick)?;
            if hold.as_deref().is_some_and(|r| r.trim().is_empty()) {
                anyhow::bail!("--hold is empty: say why what is reverted is held");
            }
            let what = match (plugin, run) {
                (_, Some(run)) => ops::revert::RevertWhat::Run(run),
                (Some(plugin), None) => {
                    if pick.is_empty() {
                        anyhow::bail!(
                            "name the schemas to revert `{plugin}` in: --schema S (repeatable), --all-tenants or --where SELECTOR"
                        );
                    }
                    ops::revert::RevertWhat::Plugin { plugin, to }
                }
                (None, None) => anyhow::bail!("revert needs --plugin P or --run N"),
            };
            ops::confirm(yes, || match &what {
                ops::revert::RevertWhat::Run(run) => format!(
                    "reverting run {run} runs the revert steps of what it applied, which may drop tables and the data in them"
                ),
                ops::revert::RevertWhat::Plugin { plugin, to } => format!(
                    "reverting `{plugin}` in {} runs its revert steps{}, which may drop tables and the data in them",
                    pick_text(&pick),
                    to.as_deref()
                        .map(|t| format!(" after `{t}`"))
                        .unwrap_or_default()
                ),
            })?;
            ops::revert::revert(
                &s,
                &ops::revert::RevertOptions {
                    what,
                    schemas: pick,
                    hold,
                },
            )
            .await
        }
        Command::Baseline {
            pick,
            plugin,
            to,
            from_django,
            maps,
            yes,
        } => {
            let schemas = schema_pick(pick)?;
            if schemas.is_empty() {
                anyhow::bail!(
                    "name the schemas to baseline: --schema S (repeatable), --all-tenants or --where SELECTOR"
                );
            }
            let o = ops::baseline::BaselineOptions {
                what: baseline_what(plugin, to, from_django, &maps)?,
                schemas,
            };
            if o.schemas.many() {
                ops::confirm(yes, || {
                    "a baseline of more than one schema records steps as applied in each without running them".to_owned()
                })?;
            }
            ops::baseline::baseline(&s, &o).await
        }
        Command::Repair {
            pick,
            plugin,
            step,
            yes,
        } => {
            let schemas = schema_pick(pick)?;
            if schemas.is_empty() {
                anyhow::bail!(
                    "name the schemas to repair: --schema S (repeatable), --all-tenants or --where SELECTOR"
                );
            }
            if schemas.many() {
                ops::confirm(yes, || {
                    format!(
                        "repairing `{plugin}/{step}` in {} accepts its current content as applied in each",
                        pick_text(&schemas)
                    )
                })?;
            }
            let o = ops::ledger::RepairOptions {
                schemas,
                plugin,
                step,
            };
            ops::ledger::repair(&s, &o).await
        }
        Command::Resolve {
            pick,
            plugin,
            step,
            reason,
            yes,
        } => {
            let schemas = schema_pick(pick)?;
            if schemas.many() {
                ops::confirm(yes, || {
                    format!(
                        "resolving the failures of {} stops them counting as problems",
                        pick_text(&schemas)
                    )
                })?;
            }
            if reason.trim().is_empty() {
                anyhow::bail!("--reason is empty: say why the failures are resolved");
            }
            let o = ops::ledger::ResolveOptions {
                schemas,
                plugin,
                step,
                reason,
            };
            ops::ledger::resolve(&s, &o).await
        }
        Command::Hold {
            pick,
            plugin,
            reason,
            yes,
        } => {
            let schemas = schema_pick(pick)?;
            if schemas.many() {
                ops::confirm(yes, || {
                    format!(
                        "holding {} keeps `migrate` and `verify --fix` from applying steps there until released",
                        pick_text(&schemas)
                    )
                })?;
            }
            if reason.trim().is_empty() {
                anyhow::bail!("--reason is empty: say why the schemas are held");
            }
            let o = ops::hold::HoldOptions {
                schemas,
                plugin,
                reason,
            };
            ops::hold::hold(&s, &o).await
        }
        Command::Release { pick, plugin, yes } => {
            let schemas = schema_pick(pick)?;
            if schemas.many() {
                ops::confirm(yes, || {
                    format!(
                        "releasing {} lets `migrate` and `verify --fix` apply their pending steps again",
                        pick_text(&schemas)
                    )
                })?;
            }
            let o = ops::hold::HoldOptions {
                schemas,
                plugin,
                reason: String::new(),
            };
            ops::hold::release(&s, &o).await
        }
        Command::Diff {
            schemas,
            plugin,
            json,
        } => {
            let o = ops::diff::DiffOptions {
                schemas: schemas
                    .iter()
                    .map(|raw| SchemaName::parse_shared(raw))
                    .collect::<Result<_, _>>()?,
                plugin,
                output: Output::from_json_flag(json),
            };
            ops::diff::diff(&s, &o).await
        }
        Command::Wait { timeout } => {
            let timeout = config::parse_duration(&timeout)
                .map_err(|e| anyhow::anyhow!("invalid --timeout: {e}"))?;
            ops::wait::wait(&s, timeout).await
        }
        Command::Health { json } => ops::health::health(&s, Output::from_json_flag(json)).await,
        Command::Serve {
            listen,
            heal_every,
            cache_for,
            backup,
            notify: notify_url,
            allow_hosts,
        } => {
            let duration = |flag: &str, raw: &str| {
                crate::config::parse_duration(raw)
                    .map_err(|e| anyhow::anyhow!("invalid {flag} `{raw}`: {e}"))
            };
            let heal_every = heal_every
                .as_deref()
                .map(|raw| duration("--heal-every", raw))
                .transpose()?;
            if heal_every.is_some_and(|d| d < std::time::Duration::from_secs(1)) {
                anyhow::bail!("--heal-every must be at least 1s");
            }
            let o = crate::serve::ServeOptions {
                listen,
                heal_every,
                // 0 reads the fleet for every request.
                cache_for: match cache_for.trim() {
                    "0" | "0s" | "0ms" => std::time::Duration::ZERO,
                    raw => duration("--cache-for", raw)?,
                },
                backup: backup_policy(&s, &backup)?,
                notify: notify(&s, notify_url.as_deref())?,
                allow_hosts,
            };
            crate::serve::serve(&s, &o).await
        }
        Command::Metrics {
            format,
            output,
            window,
        } => {
            let format = match format {
                MetricsFormat::Prometheus => ops::metrics::Format::Prometheus,
                MetricsFormat::Json => ops::metrics::Format::Json,
            };
            let window = window
                .as_deref()
                .map(crate::config::parse_window)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--window: {e}"))?;
            ops::metrics::metrics(&s, format, output.as_deref(), window).await
        }
        Command::Report { since, json, html } => {
            let o = ops::report::ReportOptions {
                since: crate::config::parse_window(&since)
                    .map_err(|e| anyhow::anyhow!("--since: {e}"))?,
                since_text: since,
                output: Output::from_json_flag(json),
                html,
            };
            ops::report::report(&s, &o).await
        }
        Command::History { json, limit, run } => {
            ops::history::history(&s, Output::from_json_flag(json), limit, run).await
        }
    }
}

async fn tenant(s: &Settings, command: TenantCommand) -> Result<Exit> {
    match command {
        TenantCommand::Create {
            schemas,
            name,
            domain,
            no_migrate,
            labels,
            backup,
        } => {
            let schemas = schemas
                .iter()
                .map(|raw| ops::tenant::tenant_name(s, raw))
                .collect::<Result<Vec<_>>>()?;
            if schemas.len() > 1 && (name.is_some() || domain.is_some()) {
                anyhow::bail!(
                    "--name and --domain apply to one tenant; create tenants with names one at a time"
                );
            }
            let o = ops::tenant::CreateOptions {
                schemas,
                name,
                domain,
                migrate: !no_migrate,
                labels: parse_labels(&labels)?,
                backup: backup_policy(s, &backup)?,
            };
            ops::tenant::create(s, &o).await
        }
        TenantCommand::Adopt {
            schemas,
            name,
            domain,
            from_query,
            shared,
            dry_run,
            labels,
        } => {
            let mut o = adopt_options(s, schemas, name, domain, from_query, shared, dry_run)?;
            o.labels = parse_labels(&labels)?;
            ops::adopt::adopt(s, &o).await
        }
        TenantCommand::Label { items, remove } => {
            let (labels, schemas): (Vec<String>, Vec<String>) =
                items.into_iter().partition(|i| i.contains('='));
            if schemas.is_empty() {
                anyhow::bail!(
                    "name the tenants to label: wasmig tenant label SCHEMA... KEY=VALUE..."
                );
            }
            if labels.is_empty() && remove.is_empty() {
                anyhow::bail!("give a KEY=VALUE label to set or a --remove KEY");
            }
            let o = ops::tenant::LabelOptions {
                schemas: schemas
                    .iter()
                    .map(|raw| ops::tenant::tenant_name(s, raw))
                    .collect::<Result<_>>()?,
                set: parse_labels(&labels)?,
                remove: remove
                    .iter()
                    .map(|k| {
                        crate::labels::parse_key(k)
                            .map_err(|e| anyhow::anyhow!("invalid --remove: {e}"))
                    })
                    .collect::<Result<_>>()?,
            };
            ops::tenant::label(s, &o).await
        }
        TenantCommand::List { json } => ops::tenant::list(s, Output::from_json_flag(json)).await,
        TenantCommand::Drop { schema, yes } => {
            let schema = ops::tenant::tenant_name(s, &schema)?;
            ops::confirm(yes, || {
                format!("dropping tenant `{schema}` deletes its schema and all its data")
            })?;
            ops::tenant::drop(s, &schema).await
        }
    }
}

/// `tenant adopt`'s options: which schemas, and whether to change anything.
fn adopt_options(
    s: &Settings,
    schemas: Vec<String>,
    name: Option<String>,
    domain: Option<String>,
    from_query: Option<String>,
    shared: bool,
    dry_run: bool,
) -> Result<ops::adopt::AdoptOptions> {
    use ops::adopt::{AdoptSource, AdoptTarget};
    if (name.is_some() || domain.is_some()) && schemas.len() != 1 {
        anyhow::bail!("--name and --domain apply to one schema named on the command line");
    }
    let source = match (from_query, shared) {
        (Some(sql), _) => AdoptSource::Query(sql),
        (None, true) => AdoptSource::Shared,
        (None, false) if schemas.is_empty() => {
            anyhow::bail!("name the schemas to adopt, or give --from-query SQL, or --shared")
        }
        (None, false) => AdoptSource::Schemas(
            schemas
                .iter()
                .map(|raw| {
                    Ok(AdoptTarget {
                        schema: ops::tenant::tenant_name(s, raw)?,
                        name: name.clone(),
                        domain: domain.clone(),
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    Ok(ops::adopt::AdoptOptions {
        labels: Default::default(),
        source,
        mode: if dry_run {
            crate::control::AdoptMode::DryRun
        } else {
            crate::control::AdoptMode::Apply
        },
    })
}

/// What `wasmig baseline` records.
fn baseline_what(
    plugin: Option<String>,
    to: Option<String>,
    from_django: bool,
    maps: &[String],
) -> Result<ops::baseline::BaselineWhat> {
    use ops::baseline::BaselineWhat;
    Ok(match (plugin, to, from_django) {
        (_, _, true) => BaselineWhat::FromDjango {
            map: maps
                .iter()
                .map(|m| {
                    let (app, plugin) = m.split_once('=').ok_or_else(|| {
                        anyhow::anyhow!(
                            "invalid --map `{m}`: write APP=PLUGIN, e.g. billing=finance"
                        )
                    })?;
                    crate::names::check_plugin_name(plugin.trim())
                        .map_err(|e| anyhow::anyhow!("invalid --map `{m}`: {e}"))?;
                    Ok((app.trim().to_owned(), plugin.trim().to_owned()))
                })
                .collect::<Result<_>>()?,
        },
        (Some(plugin), Some(to), false) => BaselineWhat::Through { plugin, to },
        (Some(plugin), None, false) => {
            anyhow::bail!("baseline --plugin {plugin} needs --to STEP: the last step to record")
        }
        (None, _, false) => anyhow::bail!("baseline needs --plugin P --to STEP, or --from-django"),
    })
}

/// `--schema`/`--all-tenants`/`--where`, parsed.
fn schema_pick(a: super::PickArgs) -> Result<ops::SchemaPick> {
    Ok(ops::SchemaPick {
        named: a
            .schemas
            .iter()
            .map(|raw| SchemaName::parse_shared(raw))
            .collect::<Result<_, _>>()?,
        all_tenants: a.all_tenants,
        selector: selector(a.selector.as_deref())?,
    })
}

/// The schemas a pick names, for a confirmation question.
fn pick_text(p: &ops::SchemaPick) -> String {
    match (&p.named[..], &p.selector) {
        ([one], None) => format!("`{one}`"),
        ([], Some(sel)) => format!("every tenant matching `{sel}`"),
        ([], None) => "every tenant".to_owned(),
        (named, _) => format!("{} schemas", named.len()),
    }
}

fn migrate_options(s: &Settings, a: MigrateArgs) -> Result<ops::migrate::MigrateOptions> {
    use ops::migrate::ScopeFilter;
    let schemas = a
        .schemas
        .iter()
        .map(|raw| SchemaName::parse_shared(raw))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ops::migrate::MigrateOptions {
        scope: if a.shared {
            ScopeFilter::SharedOnly
        } else if a.tenants || !schemas.is_empty() {
            ScopeFilter::TenantsOnly
        } else {
            ScopeFilter::All
        },
        schemas,
        selector: selector(a.selector.as_deref())?,
        selection: plan::Selection {
            plugins: a.only_plugins,
            ..Default::default()
        },
        dry_run: a.dry_run,
        output: Output::from_json_flag(a.json),
        command: "migrate".into(),
        backup: backup_policy(s, &a.backup)?,
        max_failures: a
            .max_failures
            .as_deref()
            .map(ops::migrate::FailureBudget::parse)
            .transpose()?,
        rollout: rollout(s, a.waves.as_deref(), &a.order_by, a.shared)?,
        notify: notify(s, a.notify.as_deref())?,
    })
}

/// `--waves` (or the config file's waves, unless only the shared schema is migrated) and
/// `--order-by`.
fn rollout(
    s: &Settings,
    waves: Option<&str>,
    order_by: &str,
    shared_only: bool,
) -> Result<Option<ops::rollout::RolloutOptions>> {
    let waves = match waves {
        Some(spec) => Some(
            crate::rollout::parse_waves(spec)
                .map_err(|e| anyhow::anyhow!("invalid --waves `{spec}`: {e}"))?,
        ),
        None if shared_only => None,
        None => s.rollout.clone(),
    };
    let order = crate::rollout::OrderBy::parse(order_by).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(waves.map(|waves| ops::rollout::RolloutOptions { waves, order }))
}

/// Where a failed or interrupted run is notified: `--notify` over the config file's
/// `notify`.
fn notify(s: &Settings, flag: Option<&str>) -> Result<Option<crate::notify::Notify>> {
    match flag {
        Some(url) => Ok(Some(crate::notify::Notify::parse(url)?)),
        None => Ok(s.notify.clone()),
    }
}

/// The backup policy of a command that applies steps: its flags over the config file's
/// `backup_dir` and `backup_keep_days`; none with `--no-backup`.
fn backup_policy(s: &Settings, a: &super::BackupArgs) -> Result<Option<crate::backup::Policy>> {
    if a.no_backup {
        return Ok(None);
    }
    let dir = a.backup_dir.clone().or_else(|| s.backup.0.clone());
    let keep_days = a.backup_keep_days.or(s.backup.1);
    match (dir, keep_days) {
        (Some(dir), keep_days) => Ok(Some(crate::backup::Policy { dir, keep_days })),
        (None, Some(_)) => anyhow::bail!(
            "backups are to be kept for a number of days, but there is no backup directory: give --backup-dir DIR or `backup_dir` in the config file"
        ),
        (None, None) => Ok(None),
    }
}

fn verify_options(s: &Settings, a: VerifyArgs) -> Result<ops::verify::VerifyOptions> {
    let explicit = a.backup.backup_dir.is_some() || a.backup.backup_keep_days.is_some();
    if explicit && !a.fix {
        anyhow::bail!(
            "--backup-dir and --backup-keep-days apply to `verify --fix` (plain verify changes nothing)"
        );
    }
    let tenants = a
        .tenants
        .iter()
        .map(|raw| ops::tenant::tenant_name(s, raw))
        .collect::<Result<Vec<_>>>()?;
    Ok(ops::verify::VerifyOptions {
        fix: a.fix,
        backup: if a.fix {
            backup_policy(s, &a.backup)?
        } else {
            None
        },
        command: "verify --fix".into(),
        notify: if a.fix {
            notify(s, a.notify.as_deref())?
        } else {
            None
        },
        output: Output::from_json_flag(a.json),
        tenants,
        selector: selector(a.selector.as_deref())?,
        selection: plan::Selection {
            plugins: a.only_plugins,
            ..Default::default()
        },
    })
}

fn structure_options(s: &Settings, a: VerifyArgs) -> Result<ops::verify::StructureOptions> {
    let tenant = |raw: &String| ops::tenant::tenant_name(s, raw);
    Ok(ops::verify::StructureOptions {
        output: Output::from_json_flag(a.json),
        tenants: a.tenants.iter().map(tenant).collect::<Result<Vec<_>>>()?,
        selector: selector(a.selector.as_deref())?,
        reference: a.reference.as_ref().map(tenant).transpose()?,
    })
}

/// `--where SELECTOR`, parsed.
fn selector(raw: Option<&str>) -> Result<Option<crate::labels::Selector>> {
    raw.map(|r| {
        crate::labels::Selector::parse(r).map_err(|e| anyhow::anyhow!("invalid --where: {e}"))
    })
    .transpose()
}

/// `--label KEY=VALUE` values (or positional labels), parsed; a key given twice is refused.
fn parse_labels(raw: &[String]) -> Result<crate::labels::Labels> {
    let mut labels = crate::labels::Labels::new();
    for r in raw {
        let (k, v) =
            crate::labels::parse_label(r).map_err(|e| anyhow::anyhow!("invalid label: {e}"))?;
        if labels.insert(k.clone(), v).is_some() {
            anyhow::bail!("label key `{k}` is given twice");
        }
    }
    Ok(labels)
}
