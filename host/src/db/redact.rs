//! Passwords out of text: every message, log line and stored argument that may hold a
//! connection string goes through [`redact`] first.

/// Replaces every password in `text` with `***`: the user-info password of a URL, even a
/// malformed one (`postgres//u:pw@h`, `u:pw@h/db`, `postgresql:u:pw@h`), and the value of
/// any `password=` / `sslpassword=` pair (URL query or libpq key/value string, quoted or
/// bare). Used on everything that may carry a connection string: parse errors, run
/// arguments, log lines. Redacting too much is harmless; too little is not.
pub fn redact(text: &str) -> String {
    redact_password_pairs(&redact_userinfo(text))
}

/// `user:password@` before the last `@` of each whitespace-separated word.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(word_end);
        out.push_str(&redact_word(word));
        let ws_end = tail
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(tail.len());
        out.push_str(&tail[..ws_end]);
        rest = &tail[ws_end..];
    }
    out
}

fn redact_word(word: &str) -> String {
    // The driver takes everything up to the last `@` as user info, so a password may itself
    // contain `/`, `?`, `:` or `@`.
    let Some(at) = word.rfind('@') else {
        return word.to_owned();
    };
    let head = &word[..at];
    // Where the user info starts: after `//` (with or without the scheme's colon), else after
    // a scheme such as `postgresql:`, else after a `key=` (a libpq pair such as `user=u:pw@h`).
    let start = if let Some(i) = head.find("//") {
        i + 2
    } else if let Some(i) = head
        .find(':')
        .filter(|&i| {
            i > 0
                && head[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        })
        .filter(|&i| head[..i].to_ascii_lowercase().starts_with("postgres"))
    {
        i + 1
    } else {
        head.find('=').map_or(0, |i| i + 1)
    };
    match head[start..].find(':') {
        Some(colon) => format!("{}***{}", &word[..start + colon + 1], &word[at..]),
        None => word.to_owned(),
    }
}

/// The value of every `password=` / `sslpassword=` pair (keys matched case-insensitively,
/// spaces around `=` allowed, values bare or single-quoted with backslash escapes).
fn redact_password_pairs(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(found) = lower[i..].find("password") {
        let key_end = i + found + "password".len();
        let after = &text[key_end..];
        let eq = after.len() - after.trim_start().len();
        if !after[eq..].starts_with('=') {
            out.push_str(&text[i..key_end]);
            i = key_end;
            continue;
        }
        let value_start = key_end + eq + 1;
        let v = &text[value_start..];
        let lead = v.len() - v.trim_start().len();
        let body = &v[lead..];
        let len = if let Some(quoted) = body.strip_prefix('\'') {
            let mut escaped = false;
            quoted
                .char_indices()
                .find(|&(_, c)| {
                    let end = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    end
                })
                .map_or(body.len(), |(j, _)| j + 2)
        } else {
            body.find(|c: char| c.is_whitespace() || c == '&' || c == '#')
                .unwrap_or(body.len())
        };
        out.push_str(&text[i..value_start + lead]);
        out.push_str("***");
        i = value_start + lead + len;
    }
    out.push_str(&text[i..]);
    out
}
