//! wasmig: a PostgreSQL migration runner for schema-per-tenant SaaS whose migrations and
//! seeds are WebAssembly components.
//!
//! The public library surface is small: what the `wasmig` binary calls ([`cli`], [`run`],
//! [`report_error`], [`interrupt::install`], [`Invocation`], [`Exit`]), the control schema
//! version ([`CONTROL_VERSION`]), role-password derivation ([`secret`], for tools that log in
//! as a schema role) and the plugin engine ([`plugin`], for the benchmark). The rest is
//! internal to the crate.
//!
//! Code map (see ARCHITECTURE.md for the invariants):
//! - [`cli`]: clap definitions (the `--help` text), settings layering, and each command
//!   turned into its operation's options.
//! - `ops`: one function per command, taking validated options.
//! - `names`: schema/plugin/step name validation (pure).
//! - `config`: durations, limit overrides, lock file format (pure).
//! - `plan`: plugins x ledger -> pending steps, drift, order (pure).
//! - `control`: the `wasmig` control schema: registry, ledger, runs, grants, locks.
//! - `structure`: tenants grouped by ledger state and catalog fingerprint, and the
//!   object-by-object difference (pure; `verify --structure`).
//! - `db`: connection settings, quoting, value decoding, PostgreSQL errors.
//! - [`plugin`]: wasmtime engine, component loading, the `sql`/`log` capability.
//! - `exec`: runs plans per schema with bounded concurrency.
//! - `backup`: pg_dump / pg_restore of one schema with its ledger rows.
//! - `files`: atomic file writes with the right mode (`0600` for data).
//! - [`secret`]: role passwords and step tokens.
//! - [`interrupt`]: SIGINT / SIGTERM: a clean stop, then a hard one.
//! - [`logging`]: log records on stderr, one safe line each.
//! - `rollout`: waves (`--waves`, `[[env.NAME.rollout]]`), the tenant order, the wave plan.
//! - `serve`: `wasmig serve` (HTTP: metrics, probes, the JSON API, the dashboard, healing).
//! - `report`: human and JSON output; `out`: the stdout/stderr writers (a closed pipe
//!   ends the output quietly).

pub(crate) mod backup;
pub mod cli;
pub(crate) mod config;
pub(crate) mod control;
pub(crate) mod db;
pub(crate) mod exec;
pub(crate) mod files;
pub mod interrupt;
pub(crate) mod labels;
pub mod logging;
pub(crate) mod names;
pub(crate) mod notify;
pub(crate) mod ops;
#[doc(hidden)]
pub mod out;
pub(crate) mod plan;
pub mod plugin;
pub(crate) mod report;
pub(crate) mod rollout;
pub mod secret;
pub(crate) mod serve;
pub(crate) mod structure;
pub(crate) mod text;
pub(crate) mod watch;

pub use control::CONTROL_VERSION;
pub use ops::Invocation;

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

/// Prints a command's error: on stderr, and with `json` also as a `wasmig.error/1` document
/// on stdout.
pub fn report_error(e: &anyhow::Error, json: bool) {
    // One line: what failed, then each cause after a colon (e.g. the flag, then why).
    errln!("error: {e:#}");
    if json {
        report::print_error_json(&format!("{e:#}"), sqlstate_of(e), Exit::Error as i32);
    }
}

/// The SQLSTATE behind an error, when a PostgreSQL error is among its causes.
fn sqlstate_of(e: &anyhow::Error) -> Option<&str> {
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

/// Debug builds only (the integration tests): with `WASMIG_TEST_PEAK_MEMORY` set, prints the
/// process's peak resident memory (`VmHWM`) on stderr before it exits, so a test can bound
/// what a hostile plugin made the host hold. Release builds print nothing.
pub fn report_peak_memory_for_tests() {
    if !cfg!(debug_assertions) || std::env::var_os("WASMIG_TEST_PEAK_MEMORY").is_none() {
        return;
    }
    if let Some(kb) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(|v| v.trim().trim_end_matches(" kB").trim().to_owned())
        })
    {
        errln!("peak memory: {kb} kB");
    }
}

/// Runs a parsed command line in `process` (its arguments and environment).
pub async fn run(cli: cli::Cli, process: &Invocation) -> anyhow::Result<Exit> {
    cli::commands::run(cli, process).await
}
