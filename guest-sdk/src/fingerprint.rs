//! What a step's fingerprint covers. The host records the fingerprint when the step is
//! applied; any later change to it is drift (or, for a repeatable seed step, a re-run).
//!
//! - A SQL step: its SQL text, with line endings and trailing whitespace normalised.
//! - A code step: the closure's source tokens (so comments and formatting do not count),
//!   with the text of log messages blanked (`trace`, `debug`, `info`, `warn` and `error`
//!   calls keep their shape but not their string literals, so rewording a log line is not
//!   a change), plus every value the step declares with [`Step::covers`](crate::Step::covers),
//!   by its `Debug` text. Helper functions and constants the closure calls are not covered
//!   unless declared that way.

/// `kind:<blake3 hex>` of `content` with line endings and trailing whitespace normalised, so
/// that a checkout with CRLF line endings or a trailing newline is not drift.
///
/// ```
/// use wasmig_sdk::fingerprint;
/// assert_eq!(fingerprint("sql", "SELECT 1;\r\n"), fingerprint("sql", "SELECT 1;"));
/// ```
pub fn fingerprint(kind: &str, content: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    for line in content.trim().lines() {
        hasher.update(line.trim_end().as_bytes());
        hasher.update(b"\n");
    }
    format!("{kind}:{}", hasher.finalize().to_hex())
}

/// The fingerprint of a code step, and the one SDKs before log-blanking gave the same
/// source (when it differs and nothing is covered: the host accepts a ledger row that
/// recorded it, so upgrading the SDK is not drift).
pub(crate) fn code(source: &str, covers: &[(&'static str, String)]) -> (String, Option<String>) {
    let blanked = blank_log_text(source);
    let mut content = blanked.clone();
    for (name, value) in covers {
        content.push_str("\n-- covers ");
        content.push_str(name);
        content.push_str(": ");
        content.push_str(value);
    }
    let now = fingerprint("code", &content);
    let before = (covers.is_empty() && blanked != source).then(|| fingerprint("code", source));
    (now, before)
}

const LOG_CALLS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// `source` with the string literals inside log calls replaced by `""`; everything else is
/// left byte for byte as it was.
pub(crate) fn blank_log_text(source: &str) -> String {
    let b = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    // Paren depth inside a log call's arguments (0: not in one).
    let mut depth = 0usize;
    let mut copied = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || (c == b'r' && raw_string_at(b, i).is_some()) {
            let end = string_end(b, i);
            if depth > 0 {
                out.push_str(&source[copied..i]);
                out.push_str("\"\"");
                copied = end;
            }
            i = end;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            if depth == 0 && LOG_CALLS.contains(&&source[start..i]) {
                let mut j = i;
                while j < b.len() && (b[j] == b' ' || b[j] == b'!') {
                    j += 1;
                }
                if j < b.len() && b[j] == b'(' {
                    depth = 1;
                    i = j + 1;
                }
            }
            continue;
        }
        if depth > 0 {
            match c {
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ => {}
            }
        }
        i += 1;
    }
    out.push_str(&source[copied..]);
    out
}

/// The number of `#` of a raw string starting at `i` (`r"`, `r#"`, ...), if one does.
fn raw_string_at(b: &[u8], i: usize) -> Option<usize> {
    // Not the `r` ending an identifier.
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() && b[j] == b'#' {
        j += 1;
    }
    (j < b.len() && b[j] == b'"').then_some(j - i - 1)
}

/// Where the string literal starting at `i` ends (one past its closing quote).
fn string_end(b: &[u8], i: usize) -> usize {
    if let Some(hashes) = raw_string_at(b, i).filter(|_| b[i] == b'r') {
        let mut j = i + 2 + hashes;
        while j < b.len() {
            if b[j] == b'"'
                && b[j + 1..]
                    .iter()
                    .take(hashes)
                    .filter(|&&h| h == b'#')
                    .count()
                    == hashes
            {
                return (j + 1 + hashes).min(b.len());
            }
            j += 1;
        }
        return b.len();
    }
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_and_trailing_space_are_not_changes() {
        let a = fingerprint("sql", "CREATE TABLE t (id int);\nSELECT 1;\n");
        let b = fingerprint("sql", "CREATE TABLE t (id int);  \r\nSELECT 1;");
        assert_eq!(a, b);
        assert!(a.starts_with("sql:"));
        assert_ne!(
            fingerprint("sql", "CREATE TABLE t (id int);"),
            fingerprint("sql", "CREATE TABLE t (id bigint);")
        );
        assert_ne!(fingerprint("sql", "x"), fingerprint("code", "x"));
    }

    #[test]
    fn log_text_is_blanked_and_nothing_else() {
        let src = r#"| db | { wasmig_sdk :: info ("seeding units") ; db . execute ("INSERT INTO t VALUES ('a')" , & []) ? ; warn (& format ! ("{} rows" , n)) ; Ok (()) }"#;
        let blanked = blank_log_text(src);
        assert_eq!(
            blanked,
            r#"| db | { wasmig_sdk :: info ("") ; db . execute ("INSERT INTO t VALUES ('a')" , & []) ? ; warn (& format ! ("" , n)) ; Ok (()) }"#
        );
        // Rewording a log line is not a change; changing the SQL is.
        let reworded = src.replace("seeding units", "now seeding the units");
        assert_eq!(code(src, &[]).0, code(&reworded, &[]).0);
        let other_sql = src.replace("('a')", "('b')");
        assert_ne!(code(src, &[]).0, code(&other_sql, &[]).0);
        // The fingerprint SDKs gave before is offered while nothing is covered.
        assert_eq!(code(src, &[]).1, Some(fingerprint("code", src)));
        assert_eq!(code(src, &[("units", "[1]".into())]).1, None);
        // Source without log text keeps the fingerprint it always had.
        let plain = "| db | db . execute (\"SELECT 1\" , & [])";
        assert_eq!(code(plain, &[]), (fingerprint("code", plain), None));
    }

    #[test]
    fn covered_values_are_part_of_the_fingerprint() {
        let src = "| db | seed (db , UNITS)";
        let a = code(src, &[("UNITS", format!("{:?}", ["kg", "g"]))]).0;
        let b = code(src, &[("UNITS", format!("{:?}", ["kg", "g", "lb"]))]).0;
        assert_ne!(a, b);
        assert_ne!(a, code(src, &[]).0);
    }

    #[test]
    fn raw_strings_and_escapes_do_not_confuse_the_scan() {
        let src = r###"info (r#"a ) " b"#) ; x ("\" info (") ; debug ("q\"uote")"###;
        assert_eq!(
            blank_log_text(src),
            r#"info ("") ; x ("\" info (") ; debug ("")"#
        );
    }
}
