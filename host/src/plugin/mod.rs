//! Plugins: the wasmtime engine and linker ([`Runtime`]), loading and validating component
//! files ([`load`]), the WIT bindings ([`bindings`]), and the `sql`/`log` capability handed to
//! each step ([`sql`]).
//!
//! Architecture invariant: a plugin reaches PostgreSQL only through [`sql::SqlSession`], which
//! runs on the schema role's own connection; WASI grants nothing (no files, env, args,
//! sockets).

pub mod load;
pub mod sql;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use load::{LoadError, LoadedPlugin};

/// Host bindings for `wasmig:plugin@0.1.0`.
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit",
        world: "migration-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

/// WIT package versions this host can run.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.1.0"];

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
    /// Most bytes of log messages kept per step.
    pub max_log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            step_timeout: Duration::from_secs(15 * 60),
            max_result_rows: 100_000,
            max_result_bytes: 64 << 20,
            max_statements: 100_000,
            max_log_bytes: 1 << 20,
        }
    }
}

/// Epoch tick; deadlines are counted in ticks.
const TICK: Duration = Duration::from_millis(10);

/// The state of one store (one plugin instance running one call).
pub struct StepCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// The SQL session, absent while reading the manifest.
    pub sql: Option<sql::SqlSession>,
    /// `plugin@schema`, prefixed to log lines.
    pub label: String,
    log_bytes: usize,
    max_log_bytes: usize,
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
        pool.total_component_instances(256)
            .total_core_instances(2048)
            .total_memories(512)
            .total_tables(512)
            .max_memory_size(limits.memory_bytes);
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
            linker,
            limits,
            stop_ticker,
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A fresh store for one call: deny-by-default WASI, memory cap, deadline.
    pub fn store(&self, label: String, sql: Option<sql::SqlSession>) -> Store<StepCtx> {
        let wasi = WasiCtx::builder().build();
        let ctx = StepCtx {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_bytes)
                .instances(64)
                .tables(64)
                .memories(16)
                .build(),
            sql,
            label,
            log_bytes: 0,
            max_log_bytes: self.limits.max_log_bytes,
        };
        let mut store = Store::new(&self.engine, ctx);
        store.limiter(|s| &mut s.limits);
        let ticks = (self.limits.step_timeout.as_millis() / TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        store
    }
}

impl bindings::wasmig::plugin::types::Host for StepCtx {}

impl bindings::wasmig::plugin::log::Host for StepCtx {
    async fn log(
        &mut self,
        level: bindings::wasmig::plugin::log::Level,
        message: String,
    ) -> wasmtime::Result<()> {
        use bindings::wasmig::plugin::log::Level;
        if self.log_bytes >= self.max_log_bytes {
            return Ok(());
        }
        self.log_bytes += message.len();
        let mut message = message;
        if self.log_bytes >= self.max_log_bytes {
            message.truncate(message.floor_char_boundary(4096));
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
