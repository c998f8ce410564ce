//! wasmig: a PostgreSQL migration runner for schema-per-tenant SaaS whose migrations and
//! seeds are WebAssembly components.
//!
//! Code map (see ARCHITECTURE.md for the invariants):
//! - [`cli`]: clap definitions; the `--help` text.
//! - [`ops`]: one function per command, taking validated options.
//! - [`names`]: schema/plugin/step name validation (pure).
//! - [`config`]: durations, limit overrides, lock file format (pure).
//! - [`plan`]: plugins x ledger -> pending steps, drift, order (pure).
//! - [`control`]: the `wasmig` control schema: registry, ledger, runs, grants, locks.
//! - [`db`]: connection settings, quoting, value decoding, PostgreSQL errors.
//! - [`plugin`]: wasmtime engine, component loading, the `sql`/`log` capability.
//! - [`exec`]: runs plans per schema with bounded concurrency.
//! - [`backup`]: pg_dump / pg_restore of one schema with its ledger rows.
//! - [`files`]: atomic file writes with the right mode (`0600` for data).
//! - [`secret`]: role passwords and step tokens.
//! - [`interrupt`]: SIGINT / SIGTERM: a clean stop, then a hard one.
//! - [`report`]: human and JSON output; [`out`]: the stdout/stderr writers (a closed pipe
//!   ends the output quietly).

pub mod backup;
pub mod cli;
pub mod config;
pub mod control;
pub mod db;
pub mod exec;
pub mod files;
pub mod interrupt;
pub mod names;
pub mod ops;
pub mod out;
pub mod plan;
pub mod plugin;
pub mod report;
pub mod secret;
pub mod text;
pub mod watch;

/// Process exit codes (part of the interface; documented in README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for is done.
    Ok = 0,
    /// Some schema failed, drifted or was refused (the others were processed).
    Problems = 1,
    /// Usage, configuration, plugin or connection error: nothing was applied.
    Error = 2,
    /// Stopped by SIGINT (128 + 2) after the running steps finished.
    Interrupted = 130,
    /// Stopped by SIGTERM (128 + 15) after the running steps finished.
    Terminated = 143,
}

impl Exit {
    /// The exit of a command that `sig` stopped.
    pub fn from_signal(sig: interrupt::Signal) -> Exit {
        match sig {
            interrupt::Signal::Int => Exit::Interrupted,
            interrupt::Signal::Term => Exit::Terminated,
        }
    }
}

/// The SQLSTATE behind an error, when a PostgreSQL error is among its causes.
pub fn sqlstate_of(e: &anyhow::Error) -> Option<&str> {
    e.chain().find_map(|cause| {
        if let Some(p) = cause.downcast_ref::<db::PgError>() {
            return p.sqlstate.as_deref();
        }
        match cause.downcast_ref::<control::ControlError>() {
            Some(control::ControlError::Pg { error, .. }) => return error.sqlstate.as_deref(),
            Some(_) => return None,
            None => {}
        }
        match cause.downcast_ref::<db::connect::ConnectError>() {
            Some(db::connect::ConnectError::Connect { error, .. }) => error.sqlstate.as_deref(),
            _ => None,
        }
    })
}

/// Runs a parsed command line in `process` (its arguments and environment).
pub async fn run(cli: cli::Cli, process: &ops::Invocation) -> anyhow::Result<Exit> {
    use cli::{Command, TenantCommand};
    use ops::migrate::{MigrateOptions, ScopeFilter};

    let s = ops::Settings::from_global(&cli.global, process)?;
    match cli.command {
        Command::Init => ops::init::init(&s).await.map(|()| Exit::Ok),
        Command::Tenant(TenantCommand::Create {
            schemas,
            name,
            domain,
            no_migrate,
        }) => {
            let schemas = schemas
                .iter()
                .map(|raw| ops::tenant::tenant_name(&s, raw))
                .collect::<anyhow::Result<Vec<_>>>()?;
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
            ops::tenant::create(&s, &o).await
        }
        Command::Tenant(TenantCommand::List { json }) => ops::tenant::list(&s, json).await,
        Command::Tenant(TenantCommand::Drop { schema, yes }) => {
            let schema = ops::tenant::tenant_name(&s, &schema)?;
            ops::tenant::drop(&s, &schema, yes).await
        }
        Command::Migrate(a) => {
            let schemas = a
                .schemas
                .iter()
                .map(|raw| names::SchemaName::parse_shared(raw))
                .collect::<Result<Vec<_>, _>>()?;
            let o = MigrateOptions {
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
                json: a.json,
                command: "migrate".into(),
                backup_dir: a.backup_dir,
            };
            ops::migrate::migrate(&s, &o).await
        }
        Command::Status(a) => ops::status::status(&s, a.json).await,
        Command::Pin { names } => ops::pin::pin(&s, &names).await,
        Command::Restore { file, schema, yes } => {
            let schema = names::SchemaName::parse_shared(&schema)?;
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
            let sel = ops::ledger::StepSelection {
                schema: names::SchemaName::parse_shared(&schema)?,
                plugin,
                step: to,
            };
            ops::ledger::revert(&s, &sel).await
        }
        Command::Baseline { schema, plugin, to } => {
            let sel = ops::ledger::StepSelection {
                schema: names::SchemaName::parse_shared(&schema)?,
                plugin,
                step: Some(to),
            };
            ops::ledger::baseline(&s, &sel).await
        }
        Command::Repair {
            schema,
            plugin,
            step,
        } => {
            let sel = ops::ledger::StepSelection {
                schema: names::SchemaName::parse_shared(&schema)?,
                plugin,
                step: Some(step),
            };
            ops::ledger::repair(&s, &sel).await
        }
        Command::Wait { timeout } => {
            let timeout = config::parse_duration(&timeout)
                .map_err(|e| anyhow::anyhow!("invalid --timeout: {e}"))?;
            ops::wait::wait(&s, timeout).await
        }
        Command::Health { json } => ops::health::health(&s, json).await,
        Command::Metrics { format, output } => {
            let format = match format {
                cli::MetricsFormat::Prometheus => ops::metrics::Format::Prometheus,
                cli::MetricsFormat::Json => ops::metrics::Format::Json,
            };
            ops::metrics::metrics(&s, format, output.as_deref()).await
        }
        Command::History { json, limit } => ops::history::history(&s, json, limit).await,
        Command::Verify(a) => {
            let tenants = a
                .tenants
                .iter()
                .map(|raw| ops::tenant::tenant_name(&s, raw))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let o = ops::verify::VerifyOptions {
                fix: a.fix,
                json: a.json,
                tenants,
                selection: plan::Selection {
                    plugins: a.only_plugins,
                },
            };
            ops::verify::verify(&s, &o).await
        }
    }
}
