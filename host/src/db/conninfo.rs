//! The parameters of a connection string, URL or key/value form: read one, or take the TLS
//! ones out before the driver parses the rest.

use super::tls::TlsParams;

/// Takes the TLS keys (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) out of a URL or
/// key/value connection string (the driver knows none of them but `sslmode`, and that without
/// `verify-*`). Returns the rest and the values.
pub fn extract(url: &str) -> (String, TlsParams) {
    let mut p = TlsParams::default();
    let mut take = |key: &str, value: String| {
        let slot = match key {
            "sslmode" => &mut p.mode,
            "sslrootcert" => &mut p.root_cert,
            "sslcert" => &mut p.cert,
            "sslkey" => &mut p.key,
            _ => return false,
        };
        *slot = Some(value);
        true
    };
    let rest = if url.contains("://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        !take(k, percent_decode(v))
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = String::new();
        for (key, value, raw) in kv_pairs(url) {
            if !take(&key, value) {
                if !kept.is_empty() {
                    kept.push(' ');
                }
                kept.push_str(raw);
            }
        }
        kept
    };
    (rest, p)
}

/// The value of parameter `key` in a URL's query string or a key/value connection string,
/// for settings that are not TLS but that wasmig must read itself (`connect_timeout`).
pub fn param(url: &str, key: &str) -> Option<String> {
    if url.contains("://") {
        let (_, query) = url.split_once('?')?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then(|| percent_decode(v))
        })
    } else {
        kv_pairs(url)
            .into_iter()
            .find_map(|(k, v, _)| (k == key).then_some(v))
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| char::from(*c).to_digit(16));
        if b[i] == b'%'
            && let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// libpq key/value pairs: `key = value`, a value either bare (backslash escapes) or in
/// single quotes. Yields the key, the unescaped value and the pair's raw text.
fn kv_pairs(s: &str) -> Vec<(String, String, &str)> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut i = 0;
    let at = |i: usize| chars.get(i).map(|c| c.1);
    while i < chars.len() {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let start = chars[i].0;
        let mut key = String::new();
        while let Some(c) = at(i).filter(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
            i += 1;
        }
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if at(i) == Some('=') {
            i += 1;
        }
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let mut value = String::new();
        if at(i) == Some('\'') {
            i += 1;
            while let Some(c) = at(i) {
                i += 1;
                match c {
                    '\\' => {
                        if let Some(n) = at(i) {
                            value.push(n);
                            i += 1;
                        }
                    }
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = at(i).filter(|c| !c.is_whitespace()) {
                i += 1;
                if c == '\\' {
                    if let Some(n) = at(i) {
                        value.push(n);
                        i += 1;
                    }
                } else {
                    value.push(c);
                }
            }
        }
        let end = chars.get(i).map_or(s.len(), |c| c.0);
        out.push((key, value, &s[start..end]));
    }
    out
}
