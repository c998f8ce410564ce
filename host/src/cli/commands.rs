//! Each parsed command turned into its operation's own options (names validated, durations
//! parsed, destructive commands confirmed), then handed to that operation.

use anyhow::Result;

use super::{Cli, Command, MetricsFormat, MigrateArgs, TenantCommand, VerifyArgs};
use crate::names::SchemaName;
use crate::ops::{self, Invocation, Settings};
use crate::report::Output;
use crate::{Exit, config, plan};

/// Runs a parsed command line in `process` (its arguments and environment).
pub async fn run(cli: Cli, process: &Invocation) -> Result<Exit> {
    let s = super::settings::settings(&cli.global, process)?;
    match cli.command {
        Command::Init => ops::init::init(&s).await.map(|()| Exit::Ok),
        Command::Tenant(t) => tenant(&s, t).await,
        Command::Migrate(a) => ops::migrate::migrate(&s, &migrate_options(a)?).await,
        Command::Status(a) => ops::status::status(&s, Output::from_json_flag(a.json)).await,
        Command::Verify(a) if a.structure => {
            ops::verify::verify_structure(&s, &structure_options(&s, a)?).await
        }
        Command::Verify(a) => ops::verify::verify(&s, &verify_options(&s, a)?).await,
        Command::Pin { names } => ops::pin::pin(&s, &names).await,
        Command::Restore { file, schema, yes } => {
            let schema = SchemaName::parse_shared(&schema)?;
            ops::confirm(yes, || {
                format!(
                    "restoring `{schema}` from `{}` replaces the schema, all its current data and its ledger rows",
                    file.display()
                )
            })?;
            ops::ledger::restore(&s, &file, &schema).await
        }
        Command::Revert {
            schema,
            plugin,
            to,
            yes,
        } => {
            ops::confirm(yes, || {
                format!(
                    "reverting `{plugin}` in `{schema}` runs its revert steps{}, which may drop tables and the data in them",
                    to.as_deref()
                        .map(|t| format!(" after `{t}`"))
                        .unwrap_or_default()
                )
            })?;
            let sel = selection(&schema, plugin)?;
            ops::ledger::revert(&s, &sel, to.as_deref()).await
        }
        Command::Baseline {
            schemas,
            all_tenants,
            plugin,
            to,
            from_django,
            maps,
            yes,
        } => {
            let o = baseline_options(schemas, all_tenants, plugin, to, from_django, &maps)?;
            if !matches!(&o.schemas, ops::baseline::BaselineSchemas::Named(n) if n.len() == 1) {
                ops::confirm(yes, || {
                    "a baseline of more than one schema records steps as applied in each without running them".to_owned()
                })?;
            }
            ops::baseline::baseline(&s, &o).await
        }
        Command::Repair {
            schema,
            plugin,
            step,
        } => ops::ledger::repair(&s, &selection(&schema, plugin)?, &step).await,
        Command::Wait { timeout } => {
            let timeout = config::parse_duration(&timeout)
                .map_err(|e| anyhow::anyhow!("invalid --timeout: {e}"))?;
            ops::wait::wait(&s, timeout).await
        }
        Command::Health { json } => ops::health::health(&s, Output::from_json_flag(json)).await,
        Command::Metrics { format, output } => {
            let format = match format {
                MetricsFormat::Prometheus => ops::metrics::Format::Prometheus,
                MetricsFormat::Json => ops::metrics::Format::Json,
            };
            ops::metrics::metrics(&s, format, output.as_deref()).await
        }
        Command::History { json, limit } => {
            ops::history::history(&s, Output::from_json_flag(json), limit).await
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
        } => {
            ops::adopt::adopt(
                s,
                &adopt_options(s, schemas, name, domain, from_query, shared, dry_run)?,
            )
            .await
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
        source,
        mode: if dry_run {
            crate::control::AdoptMode::DryRun
        } else {
            crate::control::AdoptMode::Apply
        },
    })
}

/// `wasmig baseline`'s options.
fn baseline_options(
    schemas: Vec<String>,
    all_tenants: bool,
    plugin: Option<String>,
    to: Option<String>,
    from_django: bool,
    maps: &[String],
) -> Result<ops::baseline::BaselineOptions> {
    use ops::baseline::{BaselineOptions, BaselineSchemas, BaselineWhat};
    let what = match (plugin, to, from_django) {
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
    };
    let schemas = if all_tenants {
        BaselineSchemas::AllTenants
    } else {
        BaselineSchemas::Named(
            schemas
                .iter()
                .map(|raw| SchemaName::parse_shared(raw))
                .collect::<Result<_, _>>()?,
        )
    };
    Ok(BaselineOptions { schemas, what })
}

fn migrate_options(a: MigrateArgs) -> Result<ops::migrate::MigrateOptions> {
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
        selection: plan::Selection {
            plugins: a.only_plugins,
        },
        dry_run: a.dry_run,
        output: Output::from_json_flag(a.json),
        command: "migrate".into(),
        backup_dir: a.backup_dir,
    })
}

fn verify_options(s: &Settings, a: VerifyArgs) -> Result<ops::verify::VerifyOptions> {
    let tenants = a
        .tenants
        .iter()
        .map(|raw| ops::tenant::tenant_name(s, raw))
        .collect::<Result<Vec<_>>>()?;
    Ok(ops::verify::VerifyOptions {
        fix: a.fix,
        output: Output::from_json_flag(a.json),
        tenants,
        selection: plan::Selection {
            plugins: a.only_plugins,
        },
    })
}

fn structure_options(s: &Settings, a: VerifyArgs) -> Result<ops::verify::StructureOptions> {
    let tenant = |raw: &String| ops::tenant::tenant_name(s, raw);
    Ok(ops::verify::StructureOptions {
        output: Output::from_json_flag(a.json),
        tenants: a.tenants.iter().map(tenant).collect::<Result<Vec<_>>>()?,
        reference: a.reference.as_ref().map(tenant).transpose()?,
    })
}

fn selection(schema: &str, plugin: String) -> Result<ops::ledger::StepSelection> {
    Ok(ops::ledger::StepSelection {
        schema: SchemaName::parse_shared(schema)?,
        plugin,
    })
}
