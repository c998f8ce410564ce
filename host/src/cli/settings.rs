//! From what the user typed to validated [`Settings`]: each setting's layers (a flag or its
//! environment variable, then the config file's environment, then its `[defaults]`, then the
//! built-in value; for the database [`DATABASE_PRECEDENCE`]) are resolved here, once, so
//! operations never see the argument parser, the process environment or the config file.

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use super::Global;
use crate::config::{FileSettings, LimitOverride, parse_duration};
use crate::db::connect::{DbTarget, Sources};
use crate::names::SchemaName;
use crate::ops::{Invocation, NameRef, Settings};
use crate::plan::Tier;
use crate::plugin::Limits;

/// The first layer that gives a value: the flag (or its environment variable), else the
/// config file (its environment's section over its `[defaults]`, see [`FileSettings`]).
fn layer<T: Clone>(flag: &Option<T>, file: &Option<T>) -> Option<T> {
    flag.clone().or_else(|| file.clone())
}

/// [`layer`] for lists, where an empty flag means "not given".
fn layer_list(flag: &[String], file: &Option<Vec<String>>) -> Vec<String> {
    let given = if flag.is_empty() {
        file.clone().unwrap_or_default()
    } else {
        flag.to_vec()
    };
    given
        .iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The config file (`--config`, else `./wasmig.toml` when it exists) and its layer for the
/// selected environment.
fn config_file(g: &Global, process: &Invocation) -> Result<(Option<PathBuf>, FileSettings)> {
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
    Ok((config_path, file))
}

/// Validates the global flags and the config file into the settings every command shares.
pub fn settings(g: &Global, process: &Invocation) -> Result<Settings> {
    let env = |k: &str| process.var(k);
    let (config_path, file) = config_file(g, process)?;
    let config_name = config_path
        .as_deref()
        .map_or_else(String::new, |p| p.display().to_string());
    let target = database(g, &file, config_path.as_deref(), &env)?;
    let shared_raw = layer(
        &g.shared_schema,
        &file
            .value(|e| &e.shared_schema)
            .map(toml::Spanned::into_inner),
    )
    .unwrap_or_else(|| "shared".into());
    let shared_schema = SchemaName::parse_shared(&shared_raw).with_context(
        || "invalid shared schema (--shared-schema / WASMIG_SHARED_SCHEMA / config)",
    )?;
    let jobs = jobs(layer(&g.jobs, &file.value(|e| &e.jobs)))?;
    let retries = layer(&g.retries, &file.value(|e| &e.retries)).unwrap_or(DEFAULT_RETRIES);
    let app_role = app_role(layer(&g.app_role, &file.value(|e| &e.app_role)))?;
    let mut name_refs = Vec::new();
    let mut limit_overrides = file.limits.clone();
    let limits_from = NameOrigin::Config(format!("`limits` in {config_name}"));
    for o in &file.limits {
        name_refs.push(name_ref(&o.plugin, &limits_from));
    }
    for l in &g.limits {
        let o = LimitOverride::parse(l)?;
        name_refs.push(name_ref(&o.plugin, &NameOrigin::Flag("--plugin-limit")));
        limit_overrides.push(o);
    }
    let (trusted, grants) = trust_and_grants(g, &file, &config_name, &mut name_refs)?;
    Ok(Settings {
        // A webhook URL carries its token: recorded (history, the API) as scheme and host.
        args: crate::notify::redact_args(&process.args),
        target,
        name_refs,
        grants,
        plugins_dir: plugins_dir(g, &file),
        shared_schema,
        jobs,
        retries,
        quiet: g.quiet,
        limits: limits(g, &file)?,
        limit_overrides,
        trusted,
        lock_file: layer(&g.lock_file, &file.lock_file)
            .unwrap_or_else(|| PathBuf::from("wasmig.lock")),
        locked: g.locked,
        app_role,
        rollout: file.rollout.clone(),
        backup: (file.backup_dir.clone(), file.value(|e| &e.backup_keep_days)),
        notify: file
            .notify
            .as_deref()
            .map(crate::notify::Notify::parse)
            .transpose()
            .with_context(|| format!("`notify` in {config_name}"))?,
    })
}

/// The plugins directory's default: a folder of built components beside the project, not
/// the source folder of this repository's example plugins.
pub const DEFAULT_PLUGINS_DIR: &str = "wasmig-plugins";

fn plugins_dir(g: &Global, file: &FileSettings) -> PathBuf {
    layer(&g.plugins, &file.plugins).unwrap_or_else(|| PathBuf::from(DEFAULT_PLUGINS_DIR))
}

/// What the commands that need no database take from the flags and the config file: the
/// plugins directory and the plugin limits.
pub fn offline(g: &Global, process: &Invocation) -> Result<crate::ops::author::Offline> {
    let (_, file) = config_file(g, process)?;
    Ok(crate::ops::author::Offline {
        plugins_dir: plugins_dir(g, &file),
        limits: limits(g, &file)?,
    })
}

/// A plugin granted a capability tier.
type Grant = (String, Tier);

/// `--trust` and `--grant` (or their variables, or the config file), with where each name
/// came from added to `name_refs`.
fn trust_and_grants(
    g: &Global,
    file: &FileSettings,
    config_name: &str,
    name_refs: &mut Vec<NameRef>,
) -> Result<(Vec<String>, Vec<Grant>)> {
    let from = |flag_given: bool, from_env: bool, flag, var, key: &str| match (flag_given, from_env)
    {
        (false, _) => NameOrigin::Config(format!("`{key}` in {config_name}")),
        (true, true) => NameOrigin::Env(var),
        (true, false) => NameOrigin::Flag(flag),
    };
    // `--trust` (or WASMIG_TRUSTED) adds to the config file's `trusted`, unless
    // `--trust-only` says the given list is the whole of it.
    let given = layer_list(&g.trusted, &None);
    let from_file = if g.trust_only {
        Vec::new()
    } else {
        layer_list(&[], &file.value(|e| &e.trusted))
    };
    let given_from = from(
        true,
        g.from_env.trusted,
        "--trust",
        "WASMIG_TRUSTED",
        "trusted",
    );
    let file_from = from(false, false, "--trust", "WASMIG_TRUSTED", "trusted");
    name_refs.extend(from_file.iter().map(|t| name_ref(t, &file_from)));
    name_refs.extend(given.iter().map(|t| name_ref(t, &given_from)));
    let mut trusted = from_file;
    for t in given {
        if !trusted.contains(&t) {
            trusted.push(t);
        }
    }
    let grants = layer_list(&g.grants, &file.value(|e| &e.grants))
        .iter()
        .map(|t| parse_grant(t))
        .collect::<Result<Vec<_>>>()?;
    let grants_from = from(
        !g.grants.is_empty(),
        g.from_env.grants,
        "--grant",
        "WASMIG_GRANTS",
        "grants",
    );
    name_refs.extend(grants.iter().map(|(name, _)| name_ref(name, &grants_from)));
    Ok((trusted, grants))
}

/// Further attempts of a step that failed on a lock conflict, a deadlock or a serialization
/// failure, when none is configured.
pub const DEFAULT_RETRIES: u32 = 3;

/// Parallel tenants: as given (at least 1), else the cores, between 2 and 8.
fn jobs(given: Option<usize>) -> Result<usize> {
    Ok(match given {
        Some(0) => anyhow::bail!("jobs must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8),
    })
}

/// The application role, if given, checked to be a plain role name.
fn app_role(given: Option<String>) -> Result<Option<String>> {
    if let Some(app) = &given {
        crate::names::check_plugin_name(&app.replace('-', "_")).map_err(|_| {
            anyhow::anyhow!("invalid application role `{app}`: use a lowercase role name")
        })?;
    }
    Ok(given)
}

/// Where the database is ([`DATABASE_PRECEDENCE`]), announced before the first connection
/// unless `--quiet`.
fn database(
    g: &Global,
    file: &FileSettings,
    config_path: Option<&std::path::Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DbTarget> {
    let target = match (&g.database_url, &file.database_url) {
        (Some(url), _) => DbTarget::parse_with_env(url, "--database-url", env)?,
        (None, Some(url)) => {
            let url = url.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
            DbTarget::parse_with_env(url, "the config file", env)?
        }
        (None, None) => DbTarget::resolve(&Sources { flag: None, env })?,
    };
    if g.quiet {
        return Ok(target);
    }
    let text = DatabaseBanner::new(&target, config_path, file, env).text(&target);
    Ok(target.announce(text))
}

/// The default limits of every plugin, from the flags and the config file.
fn limits(g: &Global, file: &FileSettings) -> Result<Limits> {
    let mut limits = Limits::default();
    if let Some(d) = file.step_timeout {
        limits.step_timeout = d;
    }
    if let Some(t) = &g.step_timeout {
        limits.step_timeout =
            parse_duration(t).context("invalid --step-timeout / WASMIG_STEP_TIMEOUT")?;
    }
    if let Some(mb) = layer(&g.memory_limit_mb, &file.value(|e| &e.memory_limit_mb)) {
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
    Ok(limits)
}

/// Which database a command acts on, and why that one: printed once on stderr before a
/// command touches it, so that no one migrates prod believing it is dev.
#[derive(Debug, Clone)]
struct DatabaseBanner {
    /// `database postgres://u@h:5432/db (environment prod of ./wasmig.toml)`.
    line: String,
    /// Settings that were given but lost to a source that comes first.
    overridden: Vec<String>,
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
    fn text(&self, target: &DbTarget) -> String {
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

/// A [`NameRef`] for `name` given in `origin`.
fn name_ref(name: &str, origin: &NameOrigin) -> NameRef {
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

/// Parses `PLUGIN=TIER` (`--grant`, `WASMIG_GRANTS`, config `grants`).
fn parse_grant(text: &str) -> Result<Grant> {
    let (name, tier) = text.split_once('=').ok_or_else(|| {
        anyhow::anyhow!("invalid grant `{text}`: write PLUGIN=TIER, e.g. demo-seed=schema")
    })?;
    crate::names::check_plugin_name(name.trim())
        .map_err(|e| anyhow::anyhow!("invalid grant `{text}`: {e}"))?;
    let tier = Tier::parse(tier.trim()).ok_or_else(|| {
        anyhow::anyhow!("invalid grant `{text}`: the tier is `data`, `schema` or `full`")
    })?;
    Ok((name.trim().to_owned(), tier))
}
