//! Validated names: schema names, plugin names and step ids, parsed once before any I/O so
//! that everything downstream can trust them.

use std::fmt;

use thiserror::Error;

/// The longest identifier PostgreSQL keeps without truncating (NAMEDATALEN - 1).
pub const MAX_IDENT_BYTES: usize = 63;
/// The longest step id a manifest may declare.
pub const MAX_STEP_ID_BYTES: usize = 128;
/// The schema that holds wasmig's own tables.
pub const CONTROL_SCHEMA: &str = "wasmig";

/// Why a name was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    /// Empty name.
    #[error("{what} is empty")]
    Empty {
        /// "schema name", "plugin name" or "step id".
        what: &'static str,
    },
    /// Longer than PostgreSQL keeps.
    #[error("{what} `{name}` is {len} bytes long; the limit is {max}")]
    TooLong {
        /// "schema name", "plugin name" or "step id".
        what: &'static str,
        /// The offending name.
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Characters outside the allowed set.
    #[error("{what} `{name}` is invalid: {rule}")]
    Invalid {
        /// "schema name", "plugin name" or "step id".
        what: &'static str,
        /// The offending name.
        name: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A schema PostgreSQL or wasmig reserves.
    #[error("schema name `{0}` is reserved ({1}); choose another name")]
    Reserved(String, &'static str),
}

fn check_len(what: &'static str, s: &str, max: usize) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { what });
    }
    if s.len() > max {
        return Err(NameError::TooLong {
            what,
            // Shown to people: a hostile name stays on its line and within bounds.
            name: crate::text::inert(s, 200),
            len: s.len(),
            max,
        });
    }
    Ok(())
}

/// A schema name wasmig may manage: a lowercase unquoted identifier (`[a-z_][a-z0-9_]*`, at
/// most 63 bytes) that is not `pg_*`, `information_schema`, `public` or `wasmig*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct SchemaName(String);

impl SchemaName {
    /// Validates `s` as a schema name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_len("schema name", s, MAX_IDENT_BYTES)?;
        let mut chars = s.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(NameError::Invalid {
                what: "schema name",
                // Shown to people: a hostile name stays on its line and within bounds.
                name: crate::text::inert(s, 200),
                rule: "use lowercase letters, digits and `_`, starting with a letter or `_`",
            });
        }
        if s.starts_with("pg_") {
            return Err(NameError::Reserved(
                s.to_owned(),
                "`pg_` is PostgreSQL's prefix",
            ));
        }
        match s {
            "information_schema" => Err(NameError::Reserved(s.to_owned(), "PostgreSQL catalog")),
            "public" => Err(NameError::Reserved(
                s.to_owned(),
                "PostgreSQL's default schema, writable by older defaults",
            )),
            _ if s.starts_with(CONTROL_SCHEMA) => Err(NameError::Reserved(
                s.to_owned(),
                "names starting with `wasmig` belong to wasmig's control schemas and roles",
            )),
            _ => Ok(SchemaName(s.to_owned())),
        }
    }

    /// The shared schema may be `public` (the django-tenants layout); everything else
    /// follows [`SchemaName::parse`].
    pub fn parse_shared(s: &str) -> Result<Self, NameError> {
        if s == "public" {
            return Ok(SchemaName(s.to_owned()));
        }
        Self::parse(s)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A plugin name: `[a-z0-9][a-z0-9_-]*`, at most 63 bytes.
pub fn check_plugin_name(s: &str) -> Result<(), NameError> {
    check_len("plugin name", s, MAX_IDENT_BYTES)?;
    let ok = s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(NameError::Invalid {
            what: "plugin name",
            // Shown to people: a hostile name stays on its line and within bounds.
            name: crate::text::inert(s, 200),
            rule: "use lowercase letters, digits, `_` and `-`, starting with a letter or digit",
        })
    }
}

/// A step id: `[A-Za-z0-9_.-]+`, at most 128 bytes.
pub fn check_step_id(s: &str) -> Result<(), NameError> {
    check_len("step id", s, MAX_STEP_ID_BYTES)?;
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        Ok(())
    } else {
        Err(NameError::Invalid {
            what: "step id",
            // Shown to people: a hostile name stays on its line and within bounds.
            name: crate::text::inert(s, 200),
            rule: "use letters, digits, `_`, `.` and `-`",
        })
    }
}

/// "`--trust referense` names no loaded plugin (loaded from `plugins`: carriers, reference);
/// did you mean `reference`?": the message for a name that matches nothing.
pub fn unknown_plugin(what: &str, name: &str, dir: &std::path::Path, loaded: &[&str]) -> String {
    let mut sorted = loaded.to_vec();
    sorted.sort_unstable();
    if let Some(hint) = file_name_hint(name, &sorted) {
        return format!("{what} names no loaded plugin, but {hint}");
    }
    let closest = sorted
        .iter()
        .map(|l| (edit_distance(name, l), *l))
        .filter(|(d, l)| *d <= 2.max(l.len() / 3))
        .min();
    format!(
        "{what} names no loaded plugin (loaded from `{}`: {}){}",
        dir.display(),
        if sorted.is_empty() {
            "none".to_owned()
        } else {
            sorted.join(", ")
        },
        closest
            .map(|(_, l)| format!("; did you mean `{l}`?"))
            .unwrap_or_default()
    )
}

/// When `name` is a component's file name rather than its plugin's name (cargo names a
/// component after its crate with `-` turned into `_`): which loaded plugin it means.
pub fn file_name_hint(name: &str, loaded: &[&str]) -> Option<String> {
    loaded
        .iter()
        .find(|l| **l != name && l.replace('-', "_") == name.replace('-', "_"))
        .map(|l| {
            format!(
                "`{name}` looks like a component's file name (cargo turns `-` into `_`): the plugin is named `{l}`; use that name"
            )
        })
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        assert!(SchemaName::parse("acme").is_ok());
        assert!(SchemaName::parse("_t1").is_ok());
        assert!(SchemaName::parse(&"a".repeat(63)).is_ok());
        for bad in [
            "",
            "Acme",
            "a-b",
            "1abc",
            "a\"b",
            "pg_x",
            "public",
            "wasmig",
            "information_schema",
        ] {
            assert!(SchemaName::parse(bad).is_err(), "{bad} must be refused");
        }
        assert!(matches!(
            SchemaName::parse(&"a".repeat(64)),
            Err(NameError::TooLong { len: 64, .. })
        ));
        assert!(SchemaName::parse_shared("public").is_ok());
    }

    #[test]
    fn plugin_and_step_names() {
        assert!(check_plugin_name("demo-seed").is_ok());
        assert!(check_plugin_name("Demo").is_err());
        assert!(check_plugin_name("").is_err());
        assert!(check_step_id("0001_initial").is_ok());
        assert!(check_step_id("").is_err());
        assert!(check_step_id("a b").is_err());
        assert!(check_step_id(&"x".repeat(129)).is_err());
    }

    #[test]
    fn unknown_names_list_the_loaded_ones_and_the_closest() {
        let dir = std::path::Path::new("plugins");
        let m = unknown_plugin(
            "`--trust referense`",
            "referense",
            dir,
            &["reference", "carriers"],
        );
        assert!(m.contains("carriers, reference"), "{m}");
        assert!(m.ends_with("did you mean `reference`?"), "{m}");
        let m = unknown_plugin("`--trust zzz`", "zzz", dir, &["reference"]);
        assert!(!m.contains("file name"), "{m}");
        let m = unknown_plugin(
            "`--plugin inventory_seed`",
            "inventory_seed",
            dir,
            &["inventory-seed"],
        );
        assert!(
            m.contains("the plugin is named `inventory-seed`; use that name"),
            "{m}"
        );
        assert!(!m.contains("did you mean"), "{m}");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
