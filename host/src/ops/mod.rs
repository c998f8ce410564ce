//! Operations: one function per command, each taking validated options. Shared setup
//! (connecting, loading plugins, reading the registry) lives here.

pub mod init;
pub mod migrate;
pub mod status;
pub mod tenant;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use tokio_postgres::Client;

use crate::control::{self, ManagedSchema};
use crate::db::connect::{DbTarget, Sources};
use crate::names::SchemaName;
use crate::plan::{PluginSpec, order_plugins};
use crate::plugin::{Limits, LoadedPlugin, Runtime};

/// Settings every command shares, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the database is.
    pub target: DbTarget,
    /// Plugins directory.
    pub plugins_dir: PathBuf,
    /// Shared schema.
    pub shared_schema: SchemaName,
    /// Parallel tenants.
    pub jobs: usize,
    /// Print progress lines.
    pub quiet: bool,
}

impl Settings {
    /// Validates the global flags (no I/O).
    pub fn from_global(g: &crate::cli::Global) -> Result<Self> {
        let env = |k: &str| std::env::var(k).ok();
        let target = DbTarget::resolve(&Sources {
            flag: g.database_url.as_deref(),
            env: &env,
        })?;
        let shared_schema = SchemaName::parse_shared(&g.shared_schema)
            .with_context(|| "invalid --shared-schema / WASMIG_SHARED_SCHEMA")?;
        let jobs = match g.jobs {
            Some(0) => anyhow::bail!("--jobs must be at least 1"),
            Some(n) => n,
            None => std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, 8),
        };
        Ok(Settings {
            target,
            plugins_dir: g.plugins.clone(),
            shared_schema,
            jobs,
            quiet: g.quiet,
        })
    }

    /// Connects as the operator and checks `wasmig init` ran.
    pub async fn connect_initialised(&self) -> Result<Client> {
        let client = self.target.connect().await?;
        control::check_initialised(&client).await?;
        Ok(client)
    }
}

/// Loaded, ordered plugins.
pub struct Plugins {
    /// The runtime they were loaded into.
    pub runtime: Runtime,
    /// Loaded plugins.
    pub loaded: Vec<LoadedPlugin>,
    /// Their specs (same order).
    pub specs: Vec<PluginSpec>,
    /// Run order (indexes).
    pub order: Vec<usize>,
}

/// Loads every plugin of the directory and orders them; any bad plugin refuses the run.
pub async fn load_plugins(s: &Settings) -> Result<Plugins> {
    let runtime = Runtime::new(Limits::default())
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("starting the WebAssembly engine")?;
    let loaded = runtime.load_dir(&s.plugins_dir).await?;
    let specs: Vec<PluginSpec> = loaded.iter().map(|p| p.spec.clone()).collect();
    let mut seen: HashMap<&str, &LoadedPlugin> = HashMap::new();
    for p in &loaded {
        if let Some(first) = seen.insert(&p.spec.name, p) {
            return Err(crate::plan::PlanError::DuplicatePlugin {
                name: p.spec.name.clone(),
                first: first.path.display().to_string(),
                second: p.path.display().to_string(),
            }
            .into());
        }
    }
    let order = order_plugins(&specs)?;
    Ok(Plugins {
        runtime,
        loaded,
        specs,
        order,
    })
}

/// The registry, checked to contain the shared schema.
pub async fn registry(client: &Client, s: &Settings) -> Result<Vec<ManagedSchema>> {
    let schemas = control::list_schemas(client).await?;
    if !schemas.iter().any(|m| m.schema == s.shared_schema) {
        anyhow::bail!(
            "the shared schema `{}` is not registered; run `wasmig init` (with the same --shared-schema)",
            s.shared_schema
        );
    }
    Ok(schemas)
}
