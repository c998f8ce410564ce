//! Operations: one function per command, each taking validated options. Shared setup
//! (connecting, loading plugins, reading the registry) lives here.

pub mod adopt;
pub mod author;
pub mod baseline;
pub mod diff;
pub mod health;
pub mod history;
pub mod hold;
pub mod init;
pub mod ledger;
pub mod metrics;
pub mod migrate;
pub mod pin;
pub mod report;
pub mod revert;
pub mod rollout;
pub mod scaffold;
pub mod status;
pub mod tenant;
pub mod verify;
pub mod wait;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use tokio_postgres::Client;

use crate::Exit;
use crate::config::{LimitOverride, LockFile};
use crate::control::{self, ManagedSchema};
use crate::db::connect::DbTarget;
use crate::labels::Selector;
use crate::names::SchemaName;
use crate::plan::{PluginSpec, order_plugins};
use crate::plugin::{Limits, LoadedPlugin, Runtime};

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
    /// Further attempts of a step that lost a lock conflict, a deadlock or a serialization
    /// failure (each attempt its own transaction).
    pub retries: u32,
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
    /// The waves `migrate` rolls out in, from the config file (`--waves` overrides them).
    pub rollout: Option<Vec<crate::rollout::Wave>>,
    /// The config file's `backup_dir` and `backup_keep_days` (flags override them).
    pub backup: (Option<PathBuf>, Option<u32>),
    /// The config file's `notify` (the `--notify` flag overrides it).
    pub notify: Option<crate::notify::Notify>,
}

impl Settings {
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
    if let Some(problem) = policy_problems(s, &plugins)?.into_iter().next() {
        anyhow::bail!(problem);
    }
    Ok(plugins)
}

/// [`load_plugins`] for commands that only read (`status`, `verify`, `health`, `metrics`): a
/// plugin the trust policy or the lock file would refuse is a problem to report, not a reason
/// to stop reporting on the fleet. Only commands that would run it refuse.
pub async fn load_plugins_to_read(s: &Settings) -> Result<(Plugins, Vec<String>)> {
    let plugins = load_unchecked(s).await?;
    let problems = policy_problems(s, &plugins)?;
    Ok((plugins, problems))
}

/// What the trust policy and the lock file say against the loaded plugins, each with what to
/// do about it.
fn policy_problems(s: &Settings, plugins: &Plugins) -> Result<Vec<String>> {
    let lock = s.read_lock()?;
    let mut problems = Vec::new();
    for p in &plugins.loaded {
        let (name, file) = (&p.spec.name, p.path.display());
        if p.spec.scope == crate::plan::Scope::Shared && !s.trusted.iter().any(|t| t == name) {
            problems.push(format!(
                "plugin `{name}` ({file}) runs in the shared schema but is not trusted; review it, then trust it with --trust {name} (or WASMIG_TRUSTED)"
            ));
        }
        match lock.as_ref().and_then(|l| l.plugins.get(name)) {
            Some(pin) if *pin != p.spec.artifact_checksum => problems.push(format!(
                "plugin `{name}` ({file}) has blake3 {}, but {} pins {pin}; review the new artifact, then run `wasmig pin {name}`",
                p.spec.artifact_checksum,
                s.lock_file.display()
            )),
            None if s.locked => problems.push(format!(
                "plugin `{name}` ({file}) is not pinned in {} and --locked is set; review it, then run `wasmig pin {name}`",
                s.lock_file.display()
            )),
            _ => {}
        }
    }
    Ok(problems)
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

/// Keeps the SQL text of `steps` of `specs` (those a command is about to record), once per
/// distinct checksum, so that a later edit of an applied step can be shown (`wasmig diff`).
pub async fn keep_step_texts(
    client: &Client,
    specs: &[PluginSpec],
    steps: impl IntoIterator<Item = crate::plan::PendingStep>,
) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let rows: Vec<(&str, &str, &str, &str)> = steps
        .into_iter()
        .filter(|p| seen.insert(*p))
        .filter_map(|p| {
            let (pl, st) = (&specs[p.plugin], &specs[p.plugin].steps[p.step]);
            st.sql
                .as_deref()
                .map(|sql| (st.checksum.as_str(), pl.name.as_str(), st.id.as_str(), sql))
        })
        .collect();
    control::store_step_texts(client, &rows).await?;
    Ok(())
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

/// Whether `m` is a tenant picked by the tenants named on the command line (none named: any)
/// and by `--where`.
pub fn picked(m: &ManagedSchema, named: &[SchemaName], selector: Option<&Selector>) -> bool {
    m.scope == crate::plan::Scope::Tenant
        && (named.is_empty() || named.contains(&m.schema))
        && selector.is_none_or(|s| s.matches(&m.labels))
}

/// Which registered schemas a command works on: named ones (tenants or the shared schema), or
/// every tenant; of those, with a selector, only the tenants it picks. A selector alone
/// starts from every tenant.
#[derive(Debug, Clone, Default)]
pub struct SchemaPick {
    /// `--schema` (repeatable).
    pub named: Vec<SchemaName>,
    /// `--all-tenants`.
    pub all_tenants: bool,
    /// `--where`.
    pub selector: Option<Selector>,
}

impl SchemaPick {
    /// Nothing given.
    pub fn is_empty(&self) -> bool {
        self.named.is_empty() && !self.all_tenants && self.selector.is_none()
    }

    /// Whether this may pick more than one schema (commands that change them ask for `--yes`).
    pub fn many(&self) -> bool {
        self.all_tenants || self.selector.is_some() || self.named.len() > 1
    }

    /// The registered schemas picked, in registry order; a name that is not registered is
    /// refused.
    pub fn resolve(&self, reg: &[ManagedSchema]) -> Result<Vec<ManagedSchema>> {
        let all: Vec<ManagedSchema> = if self.named.is_empty() {
            reg.iter()
                .filter(|m| m.scope == crate::plan::Scope::Tenant)
                .cloned()
                .collect()
        } else {
            self.named
                .iter()
                .map(|n| {
                    reg.iter().find(|m| &m.schema == n).cloned().ok_or_else(|| {
                        anyhow::anyhow!(
                            "schema `{n}` is not managed by wasmig (see `wasmig tenant list`; `wasmig tenant adopt` takes over a schema another tool made)"
                        )
                    })
                })
                .collect::<Result<_>>()?
        };
        Ok(match &self.selector {
            Some(sel) => all
                .into_iter()
                .filter(|m| picked(m, &[], Some(sel)))
                .collect(),
            None => all,
        })
    }
}

/// A `--where` that picks no tenant: said on stderr, exit 1 (an unknown key is not an error;
/// it matches nothing).
pub fn nothing_picked(selector: &Selector) -> Exit {
    crate::report::notes::no_tenant_matches(selector);
    Exit::Problems
}

/// The operator's connection and the registered schemas `pick` names; `Err(exit)` when its
/// selector picked none (said, exit 1).
pub(crate) async fn connect_and_pick(
    s: &Settings,
    pick: &SchemaPick,
) -> Result<std::result::Result<(tokio_postgres::Client, Vec<ManagedSchema>), Exit>> {
    let op = s.connect_initialised().await?;
    let reg = registry(&op, s).await?;
    let schemas = pick.resolve(&reg)?;
    if let Some(sel) = &pick.selector
        && schemas.is_empty()
    {
        return Ok(Err(nothing_picked(sel)));
    }
    Ok(Ok((op, schemas)))
}

/// Refuses a tenant name given on the command line that the registry does not hold as a tenant.
pub fn require_tenants<'a>(
    reg: &[ManagedSchema],
    wanted: impl IntoIterator<Item = &'a SchemaName>,
) -> Result<()> {
    for w in wanted {
        if !reg
            .iter()
            .any(|m| m.schema == *w && m.scope == crate::plan::Scope::Tenant)
        {
            anyhow::bail!("tenant `{w}` is not registered (see `wasmig tenant list`)");
        }
    }
    Ok(())
}

/// Everything that runs plugin steps: the loaded plugins with their limits, and the roles of
/// the registered schemas.
pub fn fleet(
    s: &Settings,
    plugins: Plugins,
    secret: [u8; 32],
    reg: &[ManagedSchema],
    backups: Option<crate::backup::Backups>,
    enforcement: Enforcement,
) -> std::sync::Arc<crate::exec::Fleet> {
    let roles = reg
        .iter()
        .map(|m| (m.schema.clone(), m.role.clone()))
        .collect();
    let run_plugins = crate::exec::RunPlugins::new(
        plugins.loaded,
        plugins.order,
        |p| s.limits_for(&p.name),
        |p| tier_of(s, p, enforcement),
    );
    std::sync::Arc::new(crate::exec::Fleet {
        target: s.target.clone(),
        runtime: plugins.runtime,
        plugins: run_plugins,
        secret,
        roles,
        backups,
        watch: crate::watch::LockWatch::default(),
        retries: s.retries,
        retried: Default::default(),
    })
}

/// Whether the server enforces the tiers below `full` in this database (the object guard,
/// which only a superuser `init` installs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// The object guard is installed: a step runs with exactly its plugin's tier.
    Guarded,
    /// It is not: only plugins granted `full` may run ([`check_tiers_enforced`]), and they run
    /// with it, since nothing could hold them to less.
    Unguarded,
}

/// The tier `p` runs with under these settings: what it declares it needs, within what it
/// was granted (a plugin that needs more is refused by [`check_tiers_granted`] first; were it
/// not, it would run with the lesser grant, never with more). Without the object guard,
/// what it was granted (nothing enforces less; and only `full` grants get that far).
pub fn tier_of(s: &Settings, p: &PluginSpec, enforcement: Enforcement) -> crate::plan::Tier {
    let granted = crate::plan::Tier::granted(p, &s.trusted, &s.grants);
    match enforcement {
        Enforcement::Guarded => crate::plan::Tier::effective(p, granted).unwrap_or(granted),
        Enforcement::Unguarded => granted,
    }
}

/// Refuses, before anything runs, every plugin whose manifest declares a tier above what the
/// operator granted it, naming the grant to give.
pub fn check_tiers_granted(s: &Settings, specs: &[PluginSpec]) -> Result<()> {
    let short: Vec<String> = specs
        .iter()
        .filter_map(|p| {
            let granted = crate::plan::Tier::granted(p, &s.trusted, &s.grants);
            crate::plan::Tier::effective(p, granted).err()
        })
        .map(|e| e.to_string())
        .collect();
    match short.as_slice() {
        [] => Ok(()),
        [one] => anyhow::bail!("{one}"),
        many => anyhow::bail!(
            "{} plugins need more than they were granted:\n  {}",
            many.len(),
            many.join("\n  ")
        ),
    }
}

/// Refuses a run in which a tenant plugin would run with less than `full` rights while the
/// object guard that enforces the lesser tiers is not installed (`init` needs a superuser for
/// it): wasmig never runs a plugin under a promise it cannot keep.
pub async fn check_tiers_enforced(
    op: &Client,
    s: &Settings,
    specs: &[PluginSpec],
) -> Result<Enforcement> {
    let limited: Vec<String> = specs
        .iter()
        .filter(|p| p.scope == crate::plan::Scope::Tenant)
        .map(|p| (p, crate::plan::Tier::granted(p, &s.trusted, &s.grants)))
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
    if control::object_guard_installed(op).await? {
        return Ok(Enforcement::Guarded);
    }
    if limited.is_empty() {
        tracing::warn!(
            "the write bound of steps (max_write_mb) is not enforced in this database: measuring a schema's files needs the control schema installed by a superuser (`wasmig init`)"
        );
        return Ok(Enforcement::Unguarded);
    }
    anyhow::bail!(
        "the object guard that limits tenant plugins to their capability tier is not installed in this database, so wasmig cannot enforce it for {}; run `wasmig init` as a superuser to install it, or, only for plugins you have reviewed, grant them full rights with --trust PLUGIN",
        limited.join(", ")
    )
}
