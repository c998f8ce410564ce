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
    with_covers(&blanked, covers, Some(source))
}

/// The fingerprint of a SQL step that declares covered values: its text, not blanked, and
/// the values.
pub(crate) fn sql_with_covers(sql: &str, covers: &[(&'static str, String)]) -> String {
    with_covers(sql, covers, None).0
}

fn with_covers(
    blanked: &str,
    covers: &[(&'static str, String)],
    source: Option<&str>,
) -> (String, Option<String>) {
    let blanked = blanked.to_owned();
    let mut content = blanked.clone();
    for (name, value) in covers {
        content.push_str("\n-- covers ");
        content.push_str(name);
        content.push_str(": ");
        content.push_str(value);
    }
    let kind = if source.is_some() { "code" } else { "sql" };
    let now = fingerprint(kind, &content);
    let before = source
        .filter(|s| covers.is_empty() && blanked != *s)
        .map(|s| fingerprint("code", s));
    (now, before)
}

const LOG_CALLS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// Calls whose string literals are message text when they sit in a log call's arguments.
const FORMAT_CALLS: [&str; 2] = ["format", "format_args"];

/// `source` with the string literals of log messages replaced by `""`: those directly in a
/// log call's arguments, or in a `format!` there, and no others (a literal in any other call
/// inside a log call, such as a query, stays). Everything else is left byte for byte.
pub(crate) fn blank_log_text(source: &str) -> String {
    let b = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut copied = 0;
    // One entry per open parenthesis: whether literals directly inside it are log text.
    let mut frames: Vec<bool> = Vec::new();
    // What the next `(` opens: a log call, a format call, or anything else.
    let mut next: Option<bool> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if let Some(end) = literal_end(b, i) {
            let is_string = b[i] != b'\'';
            if is_string && frames.last() == Some(&true) {
                out.push_str(&source[copied..i]);
                out.push_str("\"\"");
                copied = end;
            }
            i = end;
            next = None;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = &source[start..i];
            let inside_log = frames.last() == Some(&true);
            next = Some(
                (frames.iter().all(|f| !f) && LOG_CALLS.contains(&word))
                    || (inside_log && FORMAT_CALLS.contains(&word)),
            );
            continue;
        }
        match c {
            b'(' => frames.push(next.take().unwrap_or(false)),
            b')' => {
                frames.pop();
                next = None;
            }
            // `info!(` and `info (`: the call is still coming.
            b'!' | b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => next = None,
        }
        i += 1;
    }
    out.push_str(&source[copied..]);
    out
}

/// Where the literal starting at `i` ends (one past it), if a string, byte string, raw
/// string or char literal starts there.
fn literal_end(b: &[u8], i: usize) -> Option<usize> {
    let after_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    let mut j = i;
    if !after_ident && b[j] == b'b' {
        j += 1;
    }
    if !after_ident && j < b.len() && b[j] == b'r' {
        let mut k = j + 1;
        while k < b.len() && b[k] == b'#' {
            k += 1;
        }
        if k < b.len() && b[k] == b'"' {
            let hashes = k - j - 1;
            let mut m = k + 1;
            while m < b.len() {
                if b[m] == b'"' && b[m + 1..].iter().take_while(|&&h| h == b'#').count() >= hashes {
                    return Some((m + 1 + hashes).min(b.len()));
                }
                m += 1;
            }
            return Some(b.len());
        }
    }
    if j < b.len() && b[j] == b'"' && (j == i || !after_ident) {
        let mut m = j + 1;
        while m < b.len() {
            match b[m] {
                b'\\' => m += 2,
                b'"' => return Some(m + 1),
                _ => m += 1,
            }
        }
        return Some(b.len());
    }
    if b[i] == b'\'' {
        // A char literal ('a', '\'', '\u{1F600}', a multi-byte char), not a lifetime.
        let rest = &b[i + 1..];
        if rest.first() == Some(&b'\\') {
            let close = rest.iter().skip(2).position(|&c| c == b'\'')?;
            return Some(i + 1 + 2 + close + 1);
        }
        let ch = std::str::from_utf8(&rest[..rest.len().min(4)])
            .ok()
            .or_else(|| {
                (1..4)
                    .rev()
                    .find_map(|n| std::str::from_utf8(rest.get(..n)?).ok())
            })?
            .chars()
            .next()?;
        let len = ch.len_utf8();
        if rest.get(len) == Some(&b'\'') {
            return Some(i + 1 + len + 1);
        }
    }
    None
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
    fn raw_strings_chars_and_escapes_do_not_confuse_the_scan() {
        let src = r###"info (r#"a ) " b"#) ; x ("\" info (") ; debug ("q\"uote")"###;
        assert_eq!(
            blank_log_text(src),
            r#"info ("") ; x ("\" info (") ; debug ("")"#
        );
        // A quote in a char literal is not a string.
        let src = r#"let q = name . replace ('"' , "\"\"") ; info ("quoted")"#;
        assert_eq!(
            blank_log_text(src),
            r#"let q = name . replace ('"' , "\"\"") ; info ("")"#
        );
        // Byte strings, lifetimes.
        let src = r#"fn f < 'a > (x : & 'a [u8]) { b"(" ; warn (b"x") }"#;
        assert_eq!(
            blank_log_text(src),
            r#"fn f < 'a > (x : & 'a [u8]) { b"(" ; warn ("") }"#
        );
    }

    #[test]
    fn only_log_text_is_blanked_not_sql_called_inside_a_log_call() {
        let src = r#"info (& format ! ("{} gone" , db . execute ("DELETE FROM t" , & []) ?))"#;
        assert_eq!(
            blank_log_text(src),
            r#"info (& format ! ("" , db . execute ("DELETE FROM t" , & []) ?))"#
        );
        // So editing that SQL is a change; rewording the message is not.
        let edited = src.replace("DELETE FROM t", "DELETE FROM u");
        assert_ne!(code(src, &[]).0, code(&edited, &[]).0);
        let reworded = src.replace("{} gone", "{} rows deleted");
        assert_eq!(code(src, &[]).0, code(&reworded, &[]).0);
        // An identifier named like a log call outside a call is left alone.
        let src = r#"let error = "kept" ; CREATE ("x")"#;
        assert_eq!(blank_log_text(src), src);
    }
}
