//! Typed settings parsed from text before any I/O beyond reading the file: the config file
//! (`wasmig.toml`, named environments, `${VAR}` interpolation), durations (`30s`, `5m`,
//! `250ms`), limit overrides (`PLUGIN:KEY=VALUE`), and the plugin lock file format.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use toml::Spanned;

use crate::plugin::Limits;

/// Why a setting was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Not a duration.
    #[error("invalid duration `{0}`: use a number with a unit, e.g. 250ms, 30s, 5m, 1h")]
    Duration(String),
    /// A malformed `--plugin-limit`.
    #[error(
        "invalid limit `{0}`: use PLUGIN:KEY=VALUE with KEY one of {keys}",
        keys = limit_key_names()
    )]
    Limit(String),
}

/// Parses `250ms`, `30s`, `5m`, `1h` (a bare number means seconds).
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| ConfigError::Duration(s.to_owned()))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(ConfigError::Duration(s.to_owned())),
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 7.0 * 24.0 * 3600.0 {
        return Err(ConfigError::Duration(s.to_owned()));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a window of history: `30m`, `24h`, `7d` (1 minute to 366 days).
pub fn parse_window(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid window `{s}`: use a number with a unit, m, h or d (30m, 24h, 7d), up to 366d"
        )
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit_secs: u64 = match unit {
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(unit_secs).ok_or_else(bad)?;
    if !(60..=366 * 86_400).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
}

/// One `--plugin-limit PLUGIN:KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitOverride {
    /// Plugin name.
    pub plugin: String,
    key: LimitKey,
    value: u64,
}

/// A per-plugin limit (see [`LIMIT_KEYS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKey {
    /// `step_timeout`, in milliseconds.
    StepTimeoutMs,
    /// `memory_mb`.
    MemoryMb,
    /// `max_result_rows`.
    MaxResultRows,
    /// `max_result_bytes`.
    MaxResultBytes,
    /// `max_statements`.
    MaxStatements,
    /// `max_locks`.
    MaxLocks,
    /// `max_temp_mb`.
    MaxTempMb,
    /// `max_write_mb`.
    MaxWriteMb,
}

/// Every per-plugin limit key, as `--plugin-limit` and the config file's `limits` spell it:
/// the one list `--help`, the parse errors and (checked by a test) README name.
pub const LIMIT_KEYS: &[(&str, LimitKey)] = &[
    ("step_timeout", LimitKey::StepTimeoutMs),
    ("memory_mb", LimitKey::MemoryMb),
    ("max_result_rows", LimitKey::MaxResultRows),
    ("max_result_bytes", LimitKey::MaxResultBytes),
    ("max_statements", LimitKey::MaxStatements),
    ("max_locks", LimitKey::MaxLocks),
    ("max_temp_mb", LimitKey::MaxTempMb),
    ("max_write_mb", LimitKey::MaxWriteMb),
];

/// The limit keys, comma-separated.
pub fn limit_key_names() -> String {
    LIMIT_KEYS
        .iter()
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(", ")
}

impl LimitOverride {
    /// Parses `PLUGIN:KEY=VALUE`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::Limit(s.to_owned());
        let (plugin, kv) = s.split_once(':').ok_or_else(bad)?;
        let (key, value) = kv.split_once('=').ok_or_else(bad)?;
        let key = LIMIT_KEYS
            .iter()
            .find(|(k, _)| *k == key.trim())
            .map(|(_, key)| *key)
            .ok_or_else(bad)?;
        let value = match key {
            LimitKey::StepTimeoutMs => parse_duration(value).map_err(|_| bad())?.as_millis() as u64,
            _ => value.trim().parse().map_err(|_| bad())?,
        };
        if plugin.trim().is_empty() || value == 0 {
            return Err(bad());
        }
        Ok(LimitOverride {
            plugin: plugin.trim().to_owned(),
            key,
            value,
        })
    }

    /// Applies this override to `limits`.
    pub fn apply(&self, limits: &mut Limits) {
        let v = self.value;
        match self.key {
            LimitKey::StepTimeoutMs => limits.step_timeout = Duration::from_millis(v),
            LimitKey::MemoryMb => limits.set_memory_mb(v),
            LimitKey::MaxResultRows => {
                limits.max_result_rows = usize::try_from(v).unwrap_or(usize::MAX)
            }
            LimitKey::MaxResultBytes => {
                limits.max_result_bytes = usize::try_from(v).unwrap_or(usize::MAX)
            }
            LimitKey::MaxStatements => limits.max_statements = u32::try_from(v).unwrap_or(u32::MAX),
            LimitKey::MaxLocks => limits.max_locks = Some(v),
            LimitKey::MaxTempMb => limits.max_temp_mb = Some(v),
            LimitKey::MaxWriteMb => limits.max_write_mb = v,
        }
    }
}

/// A config file problem, naming the file, the line and the key.
#[derive(Debug, Error)]
pub enum FileError {
    /// Cannot be read.
    #[error("cannot read config file `{path}`: {reason}")]
    Read {
        /// File.
        path: PathBuf,
        /// OS error.
        reason: String,
    },
    /// Not valid TOML, or an unknown / mistyped key.
    #[error("config file `{path}`{}: {reason}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Parse {
        /// File.
        path: PathBuf,
        /// Line, when known.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// A value that does not validate.
    #[error("config file `{path}`, line {line}, `{key}`: {reason}")]
    Value {
        /// File.
        path: PathBuf,
        /// Line.
        line: usize,
        /// Dotted key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// `--env` names an environment the file does not define.
    #[error(
        "config file `{path}` has no environment `{name}` (it defines: {known}); check --env / WASMIG_ENV"
    )]
    UnknownEnv {
        /// File.
        path: PathBuf,
        /// Requested name.
        name: String,
        /// Defined names.
        known: String,
    },
}

/// One environment's settings (or the `[defaults]` every environment starts from).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSettings {
    /// PostgreSQL URL; `${VAR}` is replaced from the environment.
    pub database_url: Option<Spanned<String>>,
    /// Shared schema.
    pub shared_schema: Option<Spanned<String>>,
    /// Plugins directory (relative to the config file).
    pub plugins: Option<PathBuf>,
    /// Parallel tenants.
    pub jobs: Option<usize>,
    /// Further attempts of a step that lost a lock conflict.
    pub retries: Option<u32>,
    /// Application role.
    pub app_role: Option<String>,
    /// Trusted shared plugins.
    pub trusted: Option<Vec<String>>,
    /// Capability grants, `"PLUGIN=TIER"`.
    pub grants: Option<Vec<String>>,
    /// Lock file (relative to the config file).
    pub lock_file: Option<PathBuf>,
    /// Step wall-clock limit, e.g. `15m`.
    pub step_timeout: Option<Spanned<String>>,
    /// Plugin memory limit, MiB.
    pub memory_limit_mb: Option<u64>,
    /// `lock_timeout` of plugin sessions.
    pub lock_timeout: Option<Spanned<String>>,
    /// Per-plugin limits: `[env.prod.limits.demo-seed] memory_mb = 64`.
    pub limits: Option<BTreeMap<String, BTreeMap<String, Spanned<toml::Value>>>>,
    /// The waves `migrate` rolls out in: `[[env.prod.rollout]] size = "10%"`.
    pub rollout: Option<Vec<crate::rollout::RolloutEntry>>,
    /// Where every command that applies steps dumps each schema first (relative to the
    /// config file).
    pub backup_dir: Option<PathBuf>,
    /// Dumps older than this many days are removed after a run (the newest of each schema
    /// is always kept).
    pub backup_keep_days: Option<u32>,
    /// Where a failed or interrupted run is notified (POST); `${VAR}` is replaced from the
    /// environment (webhook URLs carry secrets).
    pub notify: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    default_env: Option<String>,
    #[serde(default)]
    defaults: EnvSettings,
    #[serde(default)]
    env: BTreeMap<String, EnvSettings>,
}

/// The config file's layer for the selected environment: the environment's section over
/// `[defaults]`. Keys used as written are read through [`FileSettings::value`]; the others
/// are resolved here (URL interpolated, paths against the file's directory, durations and
/// limits parsed, each error naming its line and key).
#[derive(Debug, Clone, Default)]
pub struct FileSettings {
    /// The selected environment's section.
    section: Option<EnvSettings>,
    /// `[defaults]`.
    defaults: EnvSettings,
    /// Interpolated database URL, or why it cannot be: a `${VAR}` that is not set fails only
    /// a command that actually uses this URL (not one given `--database-url`).
    pub database_url: Option<Result<String, std::sync::Arc<FileError>>>,
    /// Plugins directory, resolved against the file's directory.
    pub plugins: Option<PathBuf>,
    /// Lock file, resolved against the file's directory.
    pub lock_file: Option<PathBuf>,
    /// Step timeout.
    pub step_timeout: Option<Duration>,
    /// Lock timeout.
    pub lock_timeout: Option<Duration>,
    /// Per-plugin limit overrides.
    pub limits: Vec<LimitOverride>,
    /// The waves `migrate` rolls out in.
    pub rollout: Option<Vec<crate::rollout::Wave>>,
    /// Backup directory, resolved against the file's directory.
    pub backup_dir: Option<PathBuf>,
    /// Notification URL, interpolated.
    pub notify: Option<String>,
    /// The environment used, if any.
    pub env_name: Option<String>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Replaces `${NAME}` with the variable's value; the error names the missing variable.
pub fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "`${` without a closing `}`".to_owned())?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`${{{name}}}` is not a valid variable reference"));
        }
        let value = env(name)
            .ok_or_else(|| format!("uses ${{{name}}}, which is not set in the environment"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl FileSettings {
    /// A key as the file gives it: the environment's section first, then `[defaults]`.
    pub fn value<T: Clone>(&self, key: impl Fn(&EnvSettings) -> &Option<T>) -> Option<T> {
        self.section
            .as_ref()
            .and_then(|s| key(s).clone())
            .or_else(|| key(&self.defaults).clone())
    }

    /// Reads `path` and resolves environment `env_name` (or the file's `default_env`).
    pub fn load(
        path: &Path,
        env_name: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<FileSettings, FileError> {
        let text = std::fs::read_to_string(path).map_err(|e| FileError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::parse(path, &text, env_name, env)
    }

    /// Parses config text (`path` is for messages and relative paths).
    pub fn parse(
        path: &Path,
        text: &str,
        env_name: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<FileSettings, FileError> {
        // Long: every key of a section is resolved here, each with the line its error must name.
        let doc: FileDoc = toml::from_str(text).map_err(|e| FileError::Parse {
            path: path.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
            reason: e.message().to_owned(),
        })?;
        let chosen = env_name.map(str::to_owned).or(doc.default_env.clone());
        let section = match &chosen {
            None => None,
            Some(name) => Some(doc.env.get(name).ok_or_else(|| FileError::UnknownEnv {
                path: path.to_owned(),
                name: name.clone(),
                known: if doc.env.is_empty() {
                    "none".into()
                } else {
                    doc.env.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            })?),
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let prefix = |k: &str, from_env: bool| match (&chosen, from_env) {
            (Some(n), true) => format!("env.{n}.{k}"),
            _ => format!("defaults.{k}"),
        };
        let value_err =
            |key: String, span: std::ops::Range<usize>, reason: String| FileError::Value {
                path: path.to_owned(),
                line: line_of(text, span.start),
                key,
                reason,
            };
        // Environment section over defaults; remember which one gave the value for messages.
        macro_rules! pick {
            ($f:ident) => {
                match section.and_then(|s| s.$f.clone()) {
                    Some(v) => Some((v, true)),
                    None => doc.defaults.$f.clone().map(|v| (v, false)),
                }
            };
        }
        let mut out = FileSettings {
            env_name: chosen.clone(),
            section: section.cloned(),
            defaults: doc.defaults.clone(),
            ..FileSettings::default()
        };
        if let Some((url, from_env)) = pick!(database_url) {
            let span = url.span();
            let value = interpolate(url.get_ref(), env).map_err(|r| {
                std::sync::Arc::new(value_err(prefix("database_url", from_env), span, r))
            });
            out.database_url = Some(value);
        }
        out.plugins = pick!(plugins).map(|(p, _)| base.join(p));
        out.lock_file = pick!(lock_file).map(|(p, _)| base.join(p));
        out.backup_dir = pick!(backup_dir).map(|(p, _)| base.join(p));
        if let Some((url, from_env)) = pick!(notify) {
            let span = url.span();
            out.notify = Some(
                interpolate(url.get_ref(), env)
                    .map_err(|r| value_err(prefix("notify", from_env), span, r))?,
            );
        }
        for (key, slot) in [
            ("step_timeout", &mut out.step_timeout),
            ("lock_timeout", &mut out.lock_timeout),
        ] {
            let v = if key == "step_timeout" {
                pick!(step_timeout)
            } else {
                pick!(lock_timeout)
            };
            if let Some((d, from_env)) = v {
                let span = d.span();
                *slot = Some(
                    parse_duration(d.get_ref())
                        .map_err(|e| value_err(prefix(key, from_env), span, e.to_string()))?,
                );
            }
        }
        if let Some((entries, from_env)) = pick!(rollout) {
            let waves = crate::rollout::from_entries(&entries)
                .map_err(|(key, span, reason)| value_err(prefix(&key, from_env), span, reason))?;
            out.rollout = Some(waves);
        }
        for (from_env, limits) in [
            (false, doc.defaults.limits.as_ref()),
            (true, section.and_then(|s| s.limits.as_ref())),
        ] {
            for (plugin, kv) in limits.into_iter().flatten() {
                for (k, v) in kv {
                    let span = v.span();
                    let raw = match v.get_ref() {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let o = LimitOverride::parse(&format!("{plugin}:{k}={raw}")).map_err(|e| {
                        value_err(
                            prefix(&format!("limits.{plugin}.{k}"), from_env),
                            span,
                            e.to_string(),
                        )
                    })?;
                    out.limits.push(o);
                }
            }
        }
        Ok(out)
    }
}

/// `wasmig.lock`: the blake3 of each pinned plugin artifact, committed with the deploy
/// config. A pinned plugin whose artifact changed is refused until re-pinned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    /// Plugin name -> blake3 hex of its `.wasm`.
    #[serde(default)]
    pub plugins: BTreeMap<String, String>,
}

impl LockFile {
    /// Parses the lock file text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Renders the lock file text.
    pub fn render(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!(
            "# wasmig.lock: blake3 of the plugin artifacts this deployment accepts.\n# Review a changed artifact, then update its pin with `wasmig pin PLUGIN`.\n{body}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        for bad in ["", "s", "10 parsecs", "-1s", "0s", "1e9h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limit_overrides() {
        let mut l = Limits::default();
        LimitOverride::parse("seed:memory_mb=32")
            .unwrap()
            .apply(&mut l);
        LimitOverride::parse("seed:step_timeout=2s")
            .unwrap()
            .apply(&mut l);
        LimitOverride::parse("seed:max_result_rows=10")
            .unwrap()
            .apply(&mut l);
        assert_eq!(l.memory_bytes, 32 << 20);
        assert_eq!(l.step_timeout, Duration::from_secs(2));
        assert_eq!(l.max_result_rows, 10);
        for bad in [
            "seed",
            "seed:memory_mb",
            ":memory_mb=1",
            "seed:colour=1",
            "seed:memory_mb=x",
            "seed:max_statements=0",
        ] {
            assert!(LimitOverride::parse(bad).is_err(), "{bad}");
        }
    }

    fn env(k: &str) -> Option<String> {
        (k == "PROD_PW").then(|| "s3cret".to_owned())
    }

    #[test]
    fn config_file_environments_and_interpolation() {
        let text = r#"
default_env = "dev"
[defaults]
jobs = 2
trusted = ["reference"]
step_timeout = "10m"
[defaults.limits.demo-seed]
memory_mb = 64

[env.dev]
database_url = "postgres://app@localhost/app"

[env.prod]
database_url = "postgres://app:${PROD_PW}@db.internal/app"
jobs = 8
plugins = "deploy/plugins"
"#;
        let p = Path::new("/etc/wasmig/wasmig.toml");
        let dev = FileSettings::parse(p, text, None, &env).unwrap();
        assert_eq!(dev.env_name.as_deref(), Some("dev"));
        assert_eq!(dev.value(|e| &e.jobs), Some(2));
        assert_eq!(
            dev.value(|e| &e.trusted),
            Some(vec!["reference".to_owned()])
        );
        assert_eq!(dev.step_timeout, Some(Duration::from_secs(600)));
        assert_eq!(dev.limits.len(), 1);
        let prod = FileSettings::parse(p, text, Some("prod"), &env).unwrap();
        assert_eq!(
            prod.database_url.clone().unwrap().unwrap(),
            "postgres://app:s3cret@db.internal/app"
        );
        assert_eq!(prod.value(|e| &e.jobs), Some(8), "the section wins");
        assert_eq!(
            prod.plugins,
            Some(PathBuf::from("/etc/wasmig/deploy/plugins"))
        );
        assert_eq!(
            prod.value(|e| &e.trusted),
            Some(vec!["reference".to_string()])
        );

        let e = FileSettings::parse(p, text, Some("uat"), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no environment `uat`") && e.contains("dev, prod"),
            "{e}"
        );
        // An unset variable fails only the use of that URL, not the loading of the file.
        let missing = FileSettings::parse(p, text, Some("prod"), &|_| None)
            .unwrap()
            .database_url
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("line 14")
                && missing.contains("`env.prod.database_url`")
                && missing.contains("${PROD_PW}"),
            "{missing}"
        );
        let bad = FileSettings::parse(p, "[defaults]\njbos = 3\n", None, &env)
            .unwrap_err()
            .to_string();
        assert!(bad.contains("line 2") && bad.contains("jbos"), "{bad}");
        let dur = FileSettings::parse(p, "[defaults]\n\nstep_timeout = \"soon\"\n", None, &env)
            .unwrap_err()
            .to_string();
        assert!(
            dur.contains("line 3")
                && dur.contains("`defaults.step_timeout`")
                && dur.contains("invalid duration"),
            "{dur}"
        );
    }

    #[test]
    fn interpolation() {
        assert_eq!(interpolate("a${PROD_PW}b", &env).unwrap(), "as3cretb");
        assert!(
            interpolate("${NOPE}", &env)
                .unwrap_err()
                .contains("${NOPE}")
        );
        assert!(interpolate("${", &env).is_err());
        assert_eq!(interpolate("no vars", &env).unwrap(), "no vars");
    }

    #[test]
    fn lock_file_round_trip() {
        let mut lock = LockFile::default();
        lock.plugins.insert("demo-seed".into(), "ab".repeat(32));
        let text = lock.render();
        assert!(text.starts_with("# wasmig.lock"));
        assert_eq!(LockFile::parse(&text).unwrap(), lock);
    }
}
