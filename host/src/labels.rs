//! Tenant labels (`region=eu`, `tier=gold`) and the selectors that pick tenants by them
//! (`--where region=eu,tier!=free,beta,!legacy`): parsed and checked before any I/O, matched
//! without any. Labels are stored in the registry as a JSON object (`wasmig.managed_schema.labels`).

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

/// The longest label key or value.
pub const MAX_LABEL_BYTES: usize = 63;

/// A tenant's labels, by key.
pub type Labels = BTreeMap<String, String>;

/// Why a label or a selector was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LabelError {
    /// A key outside the allowed form.
    #[error(
        "label key `{0}` is invalid: 1 to 63 characters, lowercase letters, digits, `_`, `.`, `-` or `/`, starting with a letter or digit"
    )]
    Key(String),
    /// A value outside the allowed form.
    #[error(
        "label value `{0}` is invalid: at most 63 characters, letters, digits, `_`, `.` or `-`"
    )]
    Value(String),
    /// `key=value` expected.
    #[error("`{0}` is not a label: write it as key=value")]
    NotAPair(String),
    /// An empty term in a selector.
    #[error("selector `{0}` has an empty term (terms are separated by single commas)")]
    EmptyTerm(String),
}

fn check_key(key: &str) -> Result<(), LabelError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_LABEL_BYTES
        && key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && key.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-' | b'/')
        });
    if ok {
        Ok(())
    } else {
        Err(LabelError::Key(key.to_owned()))
    }
}

fn check_value(value: &str) -> Result<(), LabelError> {
    let ok = value.len() <= MAX_LABEL_BYTES
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(LabelError::Value(value.to_owned()))
    }
}

/// Parses `key=value`.
pub fn parse_label(raw: &str) -> Result<(String, String), LabelError> {
    let (key, value) = raw
        .split_once('=')
        .ok_or_else(|| LabelError::NotAPair(raw.to_owned()))?;
    check_key(key)?;
    check_value(value)?;
    Ok((key.to_owned(), value.to_owned()))
}

/// Parses a label key (`--remove KEY`).
pub fn parse_key(raw: &str) -> Result<String, LabelError> {
    check_key(raw)?;
    Ok(raw.to_owned())
}

/// One condition of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    /// `key=value`
    Is(String, String),
    /// `key!=value` (also true when the tenant has no such label)
    IsNot(String, String),
    /// `key`
    Has(String),
    /// `!key`
    HasNot(String),
}

/// Which tenants a `--where` picks: every term must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    terms: Vec<Term>,
    text: String,
}

impl Selector {
    /// Parses `key=value,key!=value,key,!key`.
    pub fn parse(raw: &str) -> Result<Selector, LabelError> {
        let terms = raw
            .split(',')
            .map(|t| {
                if t.is_empty() {
                    return Err(LabelError::EmptyTerm(raw.to_owned()));
                }
                if let Some((k, v)) = t.split_once("!=") {
                    check_key(k)?;
                    check_value(v)?;
                    Ok(Term::IsNot(k.to_owned(), v.to_owned()))
                } else if let Some((k, v)) = t.split_once('=') {
                    check_key(k)?;
                    check_value(v)?;
                    Ok(Term::Is(k.to_owned(), v.to_owned()))
                } else if let Some(k) = t.strip_prefix('!') {
                    check_key(k)?;
                    Ok(Term::HasNot(k.to_owned()))
                } else {
                    check_key(t)?;
                    Ok(Term::Has(t.to_owned()))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Selector {
            terms,
            text: raw.to_owned(),
        })
    }

    /// Whether a tenant with `labels` is picked.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.terms.iter().all(|t| match t {
            Term::Is(k, v) => labels.get(k) == Some(v),
            Term::IsNot(k, v) => labels.get(k) != Some(v),
            Term::Has(k) => labels.contains_key(k),
            Term::HasNot(k) => !labels.contains_key(k),
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Labels as `key=value,key=value` (sorted by key), for tables.
pub fn display(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_term_must_hold() {
        let s = Selector::parse("region=eu,tier!=free,beta,!legacy").unwrap();
        assert!(s.matches(&labels(&[("region", "eu"), ("beta", "")])));
        assert!(s.matches(&labels(&[
            ("region", "eu"),
            ("tier", "gold"),
            ("beta", "1")
        ])));
        assert!(
            !s.matches(&labels(&[("region", "us"), ("beta", "")])),
            "region"
        );
        assert!(!s.matches(&labels(&[("region", "eu"), ("tier", "free"), ("beta", "")])));
        assert!(!s.matches(&labels(&[("region", "eu")])), "beta missing");
        let legacy = labels(&[("region", "eu"), ("beta", ""), ("legacy", "yes")]);
        assert!(!s.matches(&legacy), "legacy present");
    }

    #[test]
    fn an_unknown_key_matches_nothing_but_is_not_an_error() {
        let s = Selector::parse("nosuchkey=x").unwrap();
        assert!(!s.matches(&labels(&[("region", "eu")])));
        assert!(
            Selector::parse("!nosuchkey")
                .unwrap()
                .matches(&Labels::new())
        );
    }

    #[test]
    fn malformed_selectors_and_labels_are_refused_by_name() {
        assert_eq!(
            Selector::parse("region=eu,,tier=gold"),
            Err(LabelError::EmptyTerm("region=eu,,tier=gold".into()))
        );
        assert_eq!(
            Selector::parse("Region=eu"),
            Err(LabelError::Key("Region".into()))
        );
        assert_eq!(
            Selector::parse("region=e u"),
            Err(LabelError::Value("e u".into()))
        );
        assert_eq!(
            parse_label("region"),
            Err(LabelError::NotAPair("region".into()))
        );
        assert_eq!(parse_label("region=eu"), Ok(("region".into(), "eu".into())));
        assert!(parse_label(&format!("k={}", "x".repeat(64))).is_err());
        assert!(parse_key("team/payments").is_ok());
    }

    #[test]
    fn labels_display_sorted() {
        assert_eq!(display(&labels(&[("z", "1"), ("a", "2")])), "a=2,z=1");
    }
}
