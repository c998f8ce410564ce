//! Plugins: the wasmtime engine and linker ([`Runtime`]), loading and validating component
//! files ([`load`]), the WIT bindings ([`bindings`]), and the `sql`/`log` capability handed to
//! each step ([`sql`]).
//!
//! Architecture invariant: a plugin reaches PostgreSQL only through [`sql::SqlSession`], which
//! runs on the schema role's own connection; WASI grants nothing (no files, env, args,
//! sockets).

pub mod cache;
mod classify;
pub mod load;
pub mod output;
mod rows;
pub mod sql;
pub(crate) mod tx;
pub mod wit;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use output::CappedPipe;

pub use load::{LoadError, LoadedPlugin};

/// The bindings of the values, `sql` and `log` (shared by every WIT version).
pub use wit::v0_1 as bindings;
pub use wit::{PluginPre, SUPPORTED_WIT_VERSIONS};

/// Per-step limits enforced by the host (PostgreSQL enforces its own timeouts on top).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory cap per plugin instance.
    pub memory_bytes: usize,
    /// Wall-clock deadline for one `apply`/`revert`/`manifest` call.
    pub step_timeout: Duration,
    /// Most rows one query may return.
    pub max_result_rows: usize,
    /// Most bytes one query may return (sum of cell sizes).
    pub max_result_bytes: usize,
    /// Most statements one step may send.
    pub max_statements: u32,
    /// Most locks one step's session may hold (`None`: half the server's lock table shared
    /// among the run's parallel steps, see `crate::watch`).
    pub max_locks: Option<u64>,
    /// Most MiB of temporary files one step's session may hold (`None`: the schema role's
    /// `temp_file_limit`, 1 GiB); needs a superuser operator, like that one.
    pub max_temp_mb: Option<u64>,
    /// Most MiB one step may grow its schema by (its tables, indexes, TOAST, temporary tables
    /// and large objects, as their files' sizes say), checked between its statements and
    /// before its ledger row; needs a superuser operator, like the object guard.
    pub max_write_mb: u64,
    /// Most bytes of log messages, and of stdout/stderr, kept per step.
    pub max_log_bytes: usize,
    /// Server-side timeouts of the schema role's session.
    pub session: crate::control::SessionLimits,
}

impl Limits {
    /// Sets the memory limit to `mb` MiB, capped at [`MAX_MEMORY_CEILING`].
    pub fn set_memory_mb(&mut self, mb: u64) {
        self.memory_bytes = usize::try_from(mb.saturating_mul(1 << 20))
            .unwrap_or(MAX_MEMORY_CEILING)
            .min(MAX_MEMORY_CEILING);
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            step_timeout: Duration::from_secs(15 * 60),
            max_result_rows: 100_000,
            max_result_bytes: 64 << 20,
            max_statements: 100_000,
            max_locks: None,
            max_temp_mb: None,
            max_write_mb: DEFAULT_WRITE_MB,
            max_log_bytes: 1 << 20,
            session: crate::control::SessionLimits::default(),
        }
    }
}

/// The default `max_write_mb`: as much as the schema role's default `temp_file_limit`.
pub const DEFAULT_WRITE_MB: u64 = 1024;

/// The largest per-plugin memory limit the engine can grant.
pub const MAX_MEMORY_CEILING: usize = 4 << 30;

/// Epoch tick; deadlines are counted in ticks.
const TICK: Duration = Duration::from_millis(10);

/// Which of a plugin's output streams [`StepCtx::flush_output`] logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// The call returned: log both.
    Both,
    /// The call trapped: stderr goes into the error instead.
    StdoutOnly,
}

/// The state of one store (one plugin instance running one call).
pub struct StepCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The SQL session, absent while reading the manifest.
    pub sql: Option<sql::SqlSession>,
    /// `plugin@schema`, prefixed to log lines.
    pub label: String,
    log_bytes: usize,
    max_log_bytes: usize,
    memory_cap: usize,
    memory_denied: bool,
    stdout: CappedPipe,
    stderr: CappedPipe,
}

impl ResourceLimiter for StepCtx {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            // Refuse the growth (the guest sees allocation failure) and remember why, so the
            // resulting trap is reported as the memory limit rather than a bare abort.
            self.memory_denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

impl StepCtx {
    /// Turns a failed call into one operator-readable line naming the limit that was hit,
    /// or the plugin's own panic message from its stderr.
    pub fn describe_failure(&self, e: &wasmtime::Error, limits: &Limits) -> String {
        if self.memory_denied {
            return format!(
                "the plugin hit its memory limit of {} MiB and was stopped",
                limits.memory_bytes >> 20
            );
        }
        // Rust's panic handler ends with advice to set RUST_BACKTRACE, which a plugin in
        // wasmig cannot use: leave it out.
        let tail = self.stderr.tail(600);
        let tail: Vec<&str> = tail
            .split(" | ")
            .filter(|l| !l.starts_with("note: run with `RUST_BACKTRACE=1`"))
            .collect();
        let stderr = crate::text::inert(&tail.join(" | "), 600);
        let said = if stderr.is_empty() {
            String::new()
        } else {
            format!("; the plugin wrote: {stderr}")
        };
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => format!(
                "the step exceeded its time limit of {}s and was stopped",
                limits.step_timeout.as_secs_f64()
            ),
            Some(wasmtime::Trap::UnreachableCodeReached) => {
                format!("the plugin panicked or aborted (wasm `unreachable` trap){said}")
            }
            Some(t) => format!("the plugin trapped: {t}{said}"),
            None => format!("the plugin failed: {e:#}{said}"),
        }
    }

    /// Logs what the plugin printed on stdout/stderr (capped), prefixed with its label.
    /// After a trap, stderr is left to [`StepCtx::describe_failure`], which puts its tail in
    /// the step's error: printed once, not also line by line.
    pub fn flush_output(&self, outcome: Flush) {
        let pipes: &[(&str, &CappedPipe)] = match outcome {
            Flush::Both => &[("stdout", &self.stdout), ("stderr", &self.stderr)],
            Flush::StdoutOnly => &[("stdout", &self.stdout)],
        };
        for &(name, pipe) in pipes {
            let (text, dropped) = pipe.contents();
            for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
                let line = crate::text::inert(line, crate::text::MAX_LOG_LINE_CHARS);
                tracing::info!("[{}] {name}: {line}", self.label);
            }
            if dropped > 0 {
                tracing::warn!(
                    "[{}] {name}: {dropped} more byte(s) dropped (output limit)",
                    self.label
                );
            }
        }
    }
}

impl WasiView for StepCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The engine, the linker and the limits; build once per process.
pub struct Runtime {
    engine: Engine,
    cache: cache::CompileCache,
    linker: Linker<StepCtx>,
    limits: Limits,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Builds the engine (pooling allocator, epoch interruption) and links the capability.
    pub fn new(limits: Limits) -> wasmtime::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        // The pool's per-memory reservation is the ceiling; each store's limiter enforces the
        // plugin's own (smaller or equal) cap.
        pool.total_component_instances(256)
            .total_core_instances(2048)
            .total_memories(512)
            .total_tables(512)
            .max_memory_size(MAX_MEMORY_CEILING.max(limits.memory_bytes));
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .concurrency_support(false)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::MigrationPlugin::add_to_linker::<StepCtx, HasSelf<StepCtx>>(&mut linker, |s| s)?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (e, stop) = (engine.clone(), stop_ticker.clone());
        std::thread::Builder::new()
            .name("wasmig-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    e.increment_epoch();
                }
            })?;
        Ok(Runtime {
            engine,
            cache: cache::CompileCache::from_env(),
            linker,
            limits,
            stop_ticker,
        })
    }

    /// The default limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A fresh store for one call. WASI grants nothing: no filesystem, environment,
    /// arguments or sockets (the builder's defaults); stdout/stderr go to capped buffers.
    /// Memory is capped by the limiter, time by the epoch deadline.
    pub fn store(
        &self,
        label: String,
        sql: Option<sql::SqlSession>,
        limits: &Limits,
    ) -> Store<StepCtx> {
        let stdout = CappedPipe::new(limits.max_log_bytes);
        let stderr = CappedPipe::new(limits.max_log_bytes);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        let ctx = StepCtx {
            wasi,
            table: ResourceTable::new(),
            sql,
            label,
            log_bytes: 0,
            max_log_bytes: limits.max_log_bytes,
            memory_cap: limits.memory_bytes,
            memory_denied: false,
            stdout,
            stderr,
        };
        let mut store = Store::new(&self.engine, ctx);
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        // Every epoch tick the guest yields to the executor, so a CPU-bound plugin never
        // starves the other schemas of the run; past the step deadline the tick traps instead.
        let deadline = std::time::Instant::now() + limits.step_timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if std::time::Instant::now() >= deadline {
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        store
    }
}

impl bindings::wasmig::plugin0_1_0::types::Host for StepCtx {}

impl bindings::wasmig::plugin0_1_0::log::Host for StepCtx {
    async fn log(
        &mut self,
        level: bindings::wasmig::plugin0_1_0::log::Level,
        message: String,
    ) -> wasmtime::Result<()> {
        use bindings::wasmig::plugin0_1_0::log::Level;
        if self.log_bytes >= self.max_log_bytes {
            return Ok(());
        }
        self.log_bytes += message.len();
        // One line per message, escapes visible: a plugin cannot forge or hide host output.
        let mut message = crate::text::inert(&message, crate::text::MAX_LOG_LINE_CHARS);
        if self.log_bytes >= self.max_log_bytes {
            message.push_str(" … (log limit reached; further messages from this step are dropped)");
        }
        let label = &self.label;
        match level {
            Level::Trace => tracing::trace!("[{label}] {message}"),
            Level::Debug => tracing::debug!("[{label}] {message}"),
            Level::Info => tracing::info!("[{label}] {message}"),
            Level::Warn => tracing::warn!("[{label}] {message}"),
            Level::Error => tracing::error!("[{label}] {message}"),
        }
        Ok(())
    }
}
