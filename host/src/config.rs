//! Typed settings parsed from text before any I/O: durations (`30s`, `5m`, `250ms`), limit
//! overrides (`PLUGIN:KEY=VALUE`), and the plugin lock file format.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::plugin::Limits;

/// Why a setting was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Not a duration.
    #[error("invalid duration `{0}`: use a number with a unit, e.g. 250ms, 30s, 5m, 1h")]
    Duration(String),
    /// A malformed `--limit`.
    #[error(
        "invalid limit `{0}`: use PLUGIN:KEY=VALUE with KEY one of step_timeout, memory_mb, max_result_rows, max_result_bytes, max_statements"
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

/// One `--limit PLUGIN:KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitOverride {
    /// Plugin name.
    pub plugin: String,
    key: LimitKey,
    value: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LimitKey {
    StepTimeoutMs,
    MemoryMb,
    MaxResultRows,
    MaxResultBytes,
    MaxStatements,
}

impl LimitOverride {
    /// Parses `PLUGIN:KEY=VALUE`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::Limit(s.to_owned());
        let (plugin, kv) = s.split_once(':').ok_or_else(bad)?;
        let (key, value) = kv.split_once('=').ok_or_else(bad)?;
        let (key, value) = match key.trim() {
            "step_timeout" => (
                LimitKey::StepTimeoutMs,
                parse_duration(value).map_err(|_| bad())?.as_millis() as u64,
            ),
            k => {
                let v: u64 = value.trim().parse().map_err(|_| bad())?;
                let key = match k {
                    "memory_mb" => LimitKey::MemoryMb,
                    "max_result_rows" => LimitKey::MaxResultRows,
                    "max_result_bytes" => LimitKey::MaxResultBytes,
                    "max_statements" => LimitKey::MaxStatements,
                    _ => return Err(bad()),
                };
                (key, v)
            }
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
            LimitKey::MemoryMb => {
                limits.memory_bytes = usize::try_from(v.saturating_mul(1 << 20))
                    .unwrap_or(crate::plugin::MAX_MEMORY_CEILING)
                    .min(crate::plugin::MAX_MEMORY_CEILING);
            }
            LimitKey::MaxResultRows => {
                limits.max_result_rows = usize::try_from(v).unwrap_or(usize::MAX)
            }
            LimitKey::MaxResultBytes => {
                limits.max_result_bytes = usize::try_from(v).unwrap_or(usize::MAX)
            }
            LimitKey::MaxStatements => limits.max_statements = u32::try_from(v).unwrap_or(u32::MAX),
        }
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

    #[test]
    fn lock_file_round_trip() {
        let mut lock = LockFile::default();
        lock.plugins.insert("demo-seed".into(), "ab".repeat(32));
        let text = lock.render();
        assert!(text.starts_with("# wasmig.lock"));
        assert_eq!(LockFile::parse(&text).unwrap(), lock);
    }
}
