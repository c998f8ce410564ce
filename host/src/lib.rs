//! wasmig: a PostgreSQL migration runner for schema-per-tenant SaaS whose migrations and
//! seeds are WebAssembly components.
//!
//! Code map (see ARCHITECTURE.md for the invariants):
//! - [`cli`]: clap definitions (the `--help` text), settings layering, and each command
//!   turned into its operation's options.
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
    cli::commands::run(cli, process).await
}
