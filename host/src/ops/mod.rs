//! Operations: one function per command, each taking validated options. Shared setup
//! (connecting, loading plugins, reading the registry) lives here.

pub mod health;
pub mod history;
pub mod init;
pub mod ledger;
pub mod metrics;
pub mod migrate;
pub mod pin;
pub mod status;
pub mod tenant;
pub mod verify;
pub mod wait;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use tokio_postgres::Client;

use crate::config::{FileSettings, LimitOverride, LockFile, parse_duration};
use crate::control::{self, ManagedSchema};
use crate::db::connect::{DbTarget, Sources};
use crate::names::SchemaName;
use crate::plan::{PluginSpec, order_plugins};
use crate::plugin::{Limits, LoadedPlugin, Runtime};

/// Which database a command acts on, and why that one: printed once on stderr before a
/// command touches it, so that no one migrates prod believing it is dev.
#[derive(Debug, Clone)]
pub struct DatabaseBanner {
    /// `database postgres://u@h:5432/db (environment prod of ./wasmig.toml)`.
    pub line: String,
    /// Settings that were given but lost to a source that comes first.
    pub overridden: Vec<String>,
}

/// The order in which database settings win, as README and `--help` give it.
pub const DATABASE_PRECEDENCE: &str =
    "--database-url, then the config file's environment, then DATABASE_URL, then PG*";

impl DatabaseBanner {
    fn new(
        target: &DbTarget,
        config: Option<&std::path::Path>,
        file: &FileSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let origin = target.origin();
        let from = match (origin, config, &file.env_name) {
            ("the config file", Some(path), Some(name)) => {
                format!("environment `{name}` of {}", path.display())
            }
            ("the config file", Some(path), None) => format!("from {}", path.display()),
            (o, _, Some(name)) => format!("from {o}; environment `{name}`"),
            (o, _, None) => format!("from {o}"),
        };
        let set = |k: &str| env(k).is_some_and(|v| !v.is_empty());
        let mut overridden = Vec::new();
        if origin != "DATABASE_URL" && origin != "the PG* variables" && set("DATABASE_URL") {
            overridden.push("DATABASE_URL".to_owned());
        }
        let pg: Vec<&str> = ["PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"]
            .into_iter()
            .filter(|k| set(k))
            .collect();
        if origin != "the PG* variables" && !pg.is_empty() {
            overridden.push(pg.join(", "));
        }
        DatabaseBanner {
            line: format!("database {target} ({from})"),
            overridden,
        }
    }

    /// The banner (and what it overrode), as printed on stderr before the first connection.
    pub fn text(&self, target: &DbTarget) -> String {
        let mut text = format!("wasmig: {}", self.line);
        if !self.overridden.is_empty() {
            text += &format!(
                "\nwasmig: note: {} {} set but not used: {} comes first (order: {DATABASE_PRECEDENCE})",
                self.overridden.join(" and "),
                if self.overridden.len() == 1 && !self.overridden[0].contains(',') {
                    "is"
                } else {
                    "are"
                },
                target.origin()
            );
        }
        text
    }
}

/// Where a plugin name in the settings came from.
#[derive(Debug, Clone)]
enum NameOrigin {
    /// A command-line flag: a name matching no loaded plugin is an error.
    Flag(&'static str),
    /// An environment variable, often set once for runs over different plugin directories:
    /// a warning.
    Env(&'static str),
    /// The config file, shared by environments and deployments whose plugin directories
    /// differ: a warning.
    Config(String),
}

/// A plugin name given in the settings.
#[derive(Debug, Clone)]
pub struct NameRef {
    /// The name.
    pub name: String,
    /// How it was given, for the message (`` `--trust referense` ``).
    pub given_as: String,
    /// Whether naming no loaded plugin refuses the command (else it is a warning).
    pub fatal: bool,
}

impl NameRef {
    fn new(name: &str, origin: &NameOrigin) -> Self {
        let (given_as, fatal) = match origin {
            NameOrigin::Flag(flag) => (format!("`{flag} {name}`"), true),
            NameOrigin::Env(var) => (format!("`{name}` in {var}"), false),
            NameOrigin::Config(place) => (format!("`{name}` ({place})"), false),
        };
        NameRef {
            name: name.to_owned(),
            given_as,
            fatal,
        }
    }
}

/// Refuses a command-line flag that names no loaded plugin, and warns about such a name in
/// an environment variable or the config file (which serve runs with other plugins too).
fn check_names(s: &Settings, loaded: &[LoadedPlugin]) -> Result<()> {
    let names: Vec<&str> = loaded.iter().map(|p| p.spec.name.as_str()).collect();
    let mut warned = std::collections::HashSet::new();
    for r in &s.name_refs {
        if names.contains(&r.name.as_str()) {
            continue;
        }
        let msg = crate::names::unknown_plugin(&r.given_as, &r.name, &s.plugins_dir, &names);
        if r.fatal {
            anyhow::bail!("{msg}");
        }
        if warned.insert(r.given_as.clone()) {
            tracing::warn!(
                "{msg}; ignored (only a warning, as it is not on the command line: an environment variable or config file may serve runs with other plugins)"
            );
        }
    }
    Ok(())
}

/// What the process was started with: its arguments (after the program name) and its
/// environment. Read once in `main`; operations get it passed in, never read it themselves.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// Arguments, for the run record.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: HashMap<String, String>,
}

impl Invocation {
    /// One variable.
    pub fn var(&self, key: &str) -> Option<String> {
        self.env.get(key).cloned()
    }
}

/// Settings every command shares, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The command line, as the run record keeps it (URLs redacted there).
    pub args: Vec<String>,
    /// Where the database is.
    pub target: DbTarget,
    /// Plugin names given in settings (`--trust`, `--grant`, `--plugin-limit`, the config
    /// file), checked against the loaded plugins.
    pub name_refs: Vec<NameRef>,
    /// Plugins directory.
    pub plugins_dir: PathBuf,
    /// Shared schema.
    pub shared_schema: SchemaName,
    /// Parallel tenants.
    pub jobs: usize,
    /// Print progress lines.
    pub quiet: bool,
    /// Default limits for every plugin.
    pub limits: Limits,
    /// Per-plugin overrides.
    pub limit_overrides: Vec<LimitOverride>,
    /// Plugins trusted to run in the shared schema, and with `full` rights in tenants.
    pub trusted: Vec<String>,
    /// Capability tiers granted to tenant plugins by name.
    pub grants: Vec<(String, crate::plan::Tier)>,
    /// Lock file path (used if it exists).
    pub lock_file: PathBuf,
    /// Every plugin must be pinned.
    pub locked: bool,
    /// Application role.
    pub app_role: Option<String>,
}

impl Settings {
    /// Validates the global flags and the config file. Precedence: flag (or its
    /// environment variable) > the config file's environment > its `[defaults]` > built-in;
    /// for the database: [`DATABASE_PRECEDENCE`].
    pub fn from_global(g: &crate::cli::Global, process: &Invocation) -> Result<Self> {
        let env = |k: &str| process.var(k);
        let config_path = match &g.config {
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from("wasmig.toml")).filter(|p| p.exists()),
        };
        let file = match &config_path {
            Some(path) => FileSettings::load(path, g.env_name.as_deref(), &env)?,
            None if g.env_name.is_some() => anyhow::bail!(
                "--env / WASMIG_ENV `{}` needs a config file: pass --config FILE or create ./wasmig.toml",
                g.env_name.as_deref().unwrap_or_default()
            ),
            None => FileSettings::default(),
        };
        let target = match (&g.database_url, &file.database_url) {
            (Some(url), _) => DbTarget::parse_with_env(url, "--database-url", &env)?,
            (None, Some(url)) => {
                let url = url.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
                DbTarget::parse_with_env(url, "the config file", &env)?
            }
            (None, None) => DbTarget::resolve(&Sources {
                flag: None,
                env: &env,
            })?,
        };
        let database = DatabaseBanner::new(&target, config_path.as_deref(), &file, &env);
        let target = if g.quiet {
            target
        } else {
            let text = database.text(&target);
            target.announce(text)
        };
        let config_name = config_path
            .as_deref()
            .map_or_else(String::new, |p| p.display().to_string());
        let mut name_refs = Vec::new();

        let shared_raw = g
            .shared_schema
            .clone()
            .or(file.shared_schema.clone())
            .unwrap_or_else(|| "shared".into());
        let shared_schema = SchemaName::parse_shared(&shared_raw).with_context(
            || "invalid shared schema (--shared-schema / WASMIG_SHARED_SCHEMA / config)",
        )?;
        let jobs = match g.jobs.or(file.jobs) {
            Some(0) => anyhow::bail!("jobs must be at least 1"),
            Some(n) => n,
            None => std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, 8),
        };
        let mut limits = Limits::default();
        if let Some(d) = file.step_timeout {
            limits.step_timeout = d;
        }
        if let Some(t) = &g.step_timeout {
            limits.step_timeout =
                parse_duration(t).context("invalid --step-timeout / WASMIG_STEP_TIMEOUT")?;
        }
        if let Some(mb) = g.memory_limit_mb.or(file.memory_limit_mb) {
            if mb == 0 {
                anyhow::bail!(
                    "invalid memory limit 0 MiB (--memory-limit-mb / WASMIG_MEMORY_LIMIT_MB / config): give at least 1"
                );
            }
            limits.set_memory_mb(mb);
        }
        if let Some(d) = file.lock_timeout {
            limits.session.lock_timeout_ms = d.as_millis() as u64;
        }
        if let Some(t) = &g.lock_timeout {
            limits.session.lock_timeout_ms = parse_duration(t)
                .context("invalid --lock-timeout / WASMIG_LOCK_TIMEOUT")?
                .as_millis() as u64;
        }
        // The server stops a statement a little after the host would, so the host's message
        // (naming the step limit) is the one the operator sees.
        limits.session.statement_timeout_ms = limits.step_timeout.as_millis() as u64 + 1000;
        let mut limit_overrides = file.limits.clone();
        let limits_from = NameOrigin::Config(format!("`limits` in {config_name}"));
        for o in &file.limits {
            name_refs.push(NameRef::new(&o.plugin, &limits_from));
        }
        for l in &g.limits {
            let o = LimitOverride::parse(l)?;
            name_refs.push(NameRef::new(&o.plugin, &NameOrigin::Flag("--plugin-limit")));
            limit_overrides.push(o);
        }
        let app_role = g.app_role.clone().or(file.app_role.clone());
        if let Some(app) = &app_role {
            crate::names::check_plugin_name(&app.replace('-', "_")).map_err(|_| {
                anyhow::anyhow!("invalid application role `{app}`: use a lowercase role name")
            })?;
        }
        let trusted = if g.trusted.is_empty() {
            file.trusted.clone().unwrap_or_default()
        } else {
            g.trusted.clone()
        };
        let trusted_from = match (g.trusted.is_empty(), g.from_env.trusted) {
            (true, _) => NameOrigin::Config(format!("`trusted` in {config_name}")),
            (false, true) => NameOrigin::Env("WASMIG_TRUSTED"),
            (false, false) => NameOrigin::Flag("--trust"),
        };
        for t in trusted.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
            name_refs.push(NameRef::new(t, &trusted_from));
        }
        let grant_texts = if g.grants.is_empty() {
            file.grants.clone().unwrap_or_default()
        } else {
            g.grants.clone()
        };
        let grants_from = match (g.grants.is_empty(), g.from_env.grants) {
            (true, _) => NameOrigin::Config(format!("`grants` in {config_name}")),
            (false, true) => NameOrigin::Env("WASMIG_GRANTS"),
            (false, false) => NameOrigin::Flag("--grant"),
        };
        let grants = grant_texts
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .map(parse_grant)
            .collect::<Result<Vec<_>>>()?;
        for (name, _) in &grants {
            name_refs.push(NameRef::new(name, &grants_from));
        }
        Ok(Settings {
            args: process.args.clone(),
            target,
            name_refs,
            grants,
            plugins_dir: g
                .plugins
                .clone()
                .or(file.plugins.clone())
                .unwrap_or_else(|| PathBuf::from("plugins")),
            shared_schema,
            jobs,
            quiet: g.quiet,
            limits,
            limit_overrides,
            trusted: trusted
                .iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
            lock_file: g
                .lock_file
                .clone()
                .or(file.lock_file.clone())
                .unwrap_or_else(|| PathBuf::from("wasmig.lock")),
            locked: g.locked,
            app_role,
        })
    }

    /// The limits of one plugin: defaults plus its overrides.
    pub fn limits_for(&self, plugin: &str) -> Limits {
        let mut l = self.limits.clone();
        for o in self.limit_overrides.iter().filter(|o| o.plugin == plugin) {
            o.apply(&mut l);
        }
        l
    }

    /// The lock file, if it exists.
    pub fn read_lock(&self) -> Result<Option<LockFile>> {
        match std::fs::read_to_string(&self.lock_file) {
            Ok(text) => LockFile::parse(&text)
                .map(Some)
                .with_context(|| format!("invalid lock file `{}`", self.lock_file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e)
                .with_context(|| format!("cannot read lock file `{}`", self.lock_file.display())),
        }
    }

    /// Connects as the operator and checks `wasmig init` ran.
    pub async fn connect_initialised(&self) -> Result<Client> {
        let client = self.target.connect().await?;
        control::check_initialised(&client).await?;
        Ok(client)
    }
}

/// The one way every command that destroys data asks: without `--yes` it refuses, saying
/// what would be lost, before it connects.
pub fn confirm(yes: bool, what: impl FnOnce() -> String) -> Result<()> {
    if yes {
        return Ok(());
    }
    anyhow::bail!("{}; nothing was changed: add --yes to confirm", what())
}

/// Parses `PLUGIN=TIER` (`--grant`, `WASMIG_GRANTS`, config `grants`).
fn parse_grant(text: &str) -> Result<(String, crate::plan::Tier)> {
    let (name, tier) = text.split_once('=').ok_or_else(|| {
        anyhow::anyhow!("invalid grant `{text}`: write PLUGIN=TIER, e.g. demo-seed=schema")
    })?;
    crate::names::check_plugin_name(name.trim())
        .map_err(|e| anyhow::anyhow!("invalid grant `{text}`: {e}"))?;
    let tier = crate::plan::Tier::parse(tier.trim()).ok_or_else(|| {
        anyhow::anyhow!("invalid grant `{text}`: the tier is `data`, `schema` or `full`")
    })?;
    Ok((name.trim().to_owned(), tier))
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

/// Loads every plugin of the directory, applies the trust policy and the lock file, and
/// orders them; any bad plugin refuses the run.
pub async fn load_plugins(s: &Settings) -> Result<Plugins> {
    let plugins = load_unchecked(s).await?;
    let lock = s.read_lock()?;
    for p in &plugins.loaded {
        let (name, file) = (&p.spec.name, p.path.display());
        if p.spec.scope == crate::plan::Scope::Shared && !s.trusted.iter().any(|t| t == name) {
            anyhow::bail!(
                "plugin `{name}` ({file}) runs in the shared schema but is not trusted; review it, then trust it with --trust {name} (or WASMIG_TRUSTED)"
            );
        }
        match lock.as_ref().and_then(|l| l.plugins.get(name)) {
            Some(pin) if *pin != p.spec.artifact_checksum => anyhow::bail!(
                "plugin `{name}` ({file}) has blake3 {}, but {} pins {pin}; review the new artifact, then run `wasmig pin {name}`",
                p.spec.artifact_checksum,
                s.lock_file.display()
            ),
            None if s.locked => anyhow::bail!(
                "plugin `{name}` ({file}) is not pinned in {} and --locked is set; review it, then run `wasmig pin {name}`",
                s.lock_file.display()
            ),
            _ => {}
        }
    }
    Ok(plugins)
}

/// Loads and orders plugins without the trust and lock checks (for `wasmig pin`).
pub async fn load_unchecked(s: &Settings) -> Result<Plugins> {
    let runtime = Runtime::new(s.limits.clone())
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("starting the WebAssembly engine")?;
    let loaded = runtime.load_dir(&s.plugins_dir).await?;
    check_names(s, &loaded)?;
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

/// Everything that runs plugin steps: the loaded plugins with their limits, and the roles of
/// the registered schemas.
pub fn fleet(
    s: &Settings,
    plugins: Plugins,
    secret: [u8; 32],
    reg: &[ManagedSchema],
    backups: Option<crate::backup::Backups>,
) -> std::sync::Arc<crate::exec::Fleet> {
    let roles = reg
        .iter()
        .map(|m| (m.schema.clone(), m.role.clone()))
        .collect();
    let run_plugins = crate::exec::RunPlugins::new(
        plugins.loaded,
        plugins.order,
        |p| s.limits_for(&p.name),
        |p| tier_of(s, p),
    );
    std::sync::Arc::new(crate::exec::Fleet {
        target: s.target.clone(),
        runtime: plugins.runtime,
        plugins: run_plugins,
        secret,
        roles,
        backups,
        watch: crate::watch::LockWatch::default(),
    })
}

/// The tier `p` runs with under these settings.
pub fn tier_of(s: &Settings, p: &PluginSpec) -> crate::plan::Tier {
    crate::plan::Tier::granted(p, &s.trusted, &s.grants)
}

/// Refuses a run in which a tenant plugin would run with less than `full` rights while the
/// object guard that enforces the lesser tiers is not installed (`init` needs a superuser for
/// it): wasmig never runs a plugin under a promise it cannot keep.
pub async fn check_tiers_enforced(op: &Client, s: &Settings, specs: &[PluginSpec]) -> Result<()> {
    let limited: Vec<String> = specs
        .iter()
        .filter(|p| p.scope == crate::plan::Scope::Tenant)
        .map(|p| (p, tier_of(s, p)))
        .filter(|(_, t)| *t < crate::plan::Tier::Full)
        .map(|(p, t)| format!("`{}` ({t})", p.name))
        .collect();
    let temp: Vec<&str> = specs
        .iter()
        .filter(|p| s.limits_for(&p.name).max_temp_mb.is_some())
        .map(|p| p.name.as_str())
        .collect();
    if !temp.is_empty() && !control::operator_is_superuser(op).await? {
        anyhow::bail!(
            "max_temp_mb is set for {} but only a superuser operator can give a step its own temp_file_limit; connect as a superuser or drop the limit",
            temp.join(", ")
        );
    }
    if limited.is_empty() || control::object_guard_installed(op).await? {
        return Ok(());
    }
    anyhow::bail!(
        "the object guard that limits tenant plugins to their capability tier is not installed in this database, so wasmig cannot enforce it for {}; run `wasmig init` as a superuser to install it, or, only for plugins you have reviewed, grant them full rights with --trust PLUGIN",
        limited.join(", ")
    )
}
