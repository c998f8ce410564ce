//! The one audited place that quotes identifiers and literals, and that splits SQL scripts
//! into statements (for transaction-control checks and non-transactional steps).

/// Quotes an identifier for PostgreSQL: `"name"` with inner quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal: `'text'` with inner quotes doubled. Only for places PostgreSQL
/// cannot take a bound parameter (utility statements such as `ALTER ROLE ... PASSWORD`).
/// Refuses NUL, which PostgreSQL cannot store anyway.
pub fn literal(text: &str) -> Option<String> {
    if text.contains('\0') {
        return None;
    }
    Some(format!("'{}'", text.replace('\'', "''")))
}

/// Splits a script into statements at top-level `;`, honouring quotes, dollar quotes and
/// comments. Returned statements are trimmed; empty ones (and comment-only ones) are dropped.
pub fn split_statements(script: &str) -> Vec<&str> {
    let b = script.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    fn push<'a>(out: &mut Vec<&'a str>, s: &'a str) {
        if has_code(s) {
            out.push(s.trim());
        }
    }
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => i = skip_quoted(b, i, b[i]),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && !is_newline(b[i]) {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            b'$' => i = skip_dollar(b, i),
            b';' => {
                push(&mut out, &script[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    push(&mut out, &script[start..]);
    out
}

/// PostgreSQL's lexer ends a `--` comment at either of these (`newline [\n\r]` in scan.l).
fn is_newline(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

fn has_code(s: &str) -> bool {
    !strip_leading_comments(s).is_empty()
}

fn strip_leading_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.find(['\n', '\r']).map_or("", |n| &rest[n..]);
        } else if s.starts_with("/*") {
            let end = skip_block_comment(s.as_bytes(), 0);
            s = &s[end..];
        } else {
            return s;
        }
    }
}

fn skip_quoted(b: &[u8], mut i: usize, q: u8) -> usize {
    i += 1;
    while i < b.len() {
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        // E'' strings use backslash escapes; skipping the escaped byte is harmless elsewhere.
        if q == b'\'' && b[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
    i
}

fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    i
}

fn skip_dollar(b: &[u8], i: usize) -> usize {
    // A dollar quote is $tag$ where tag is empty or an identifier; `$1` is a parameter.
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    if j >= b.len() || b[j] != b'$' || b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return i + 1;
    }
    let tag = &b[i..=j];
    let mut k = j + 1;
    while k + tag.len() <= b.len() {
        if &b[k..k + tag.len()] == tag {
            return k + tag.len();
        }
        k += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's").as_deref(), Some("'it''s'"));
        assert_eq!(literal("a\0b"), None);
    }

    #[test]
    fn splits_statements_respecting_quotes_and_comments() {
        let s = "CREATE TABLE a (x text default ';');\n-- c; c\nINSERT INTO a VALUES ($$;$$);\
                 /* x; /* y; */ */ SELECT $1; DO $f$ BEGIN PERFORM 1; END $f$;  ;\n-- tail";
        let parts = split_statements(s);
        assert_eq!(parts.len(), 4, "{parts:?}");
        // A carriage return ends a `--` comment, so the `;` after it splits.
        assert_eq!(split_statements("SELECT 1 --\r; SELECT 2").len(), 2);
        assert!(parts[1].ends_with("($$;$$)"));
        assert!(parts[3].starts_with("DO $f$"));
    }
}
